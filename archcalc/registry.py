"""The built-in architectures, and resolving a name, path or spec object to a Model."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Mapping, Union

from archcalc.errors import SpecError, shown
from archcalc.loader import SpecFile, did_you_mean
from archcalc.spec import Model, valid_name


def architectures_dir() -> Path:
    """Where the built-in specs live: inside the installed package, else the repo's architectures/."""
    here = Path(__file__).resolve().parent
    packaged = here / "architectures"
    return packaged if packaged.is_dir() else here.parent / "architectures"


class UnknownModelError(SpecError):
    """A name that is neither a built-in model nor a spec file."""

    def __init__(self, name: str, suggestion: str = "") -> None:
        self.name = name
        super().__init__(f"unknown model {shown(name)}{suggestion}; `archcalc list` shows the built-ins")


@functools.lru_cache(maxsize=None)
def _builtin_paths() -> tuple[Path, ...]:
    return tuple(sorted(architectures_dir().glob("*.yaml")))


@functools.lru_cache(maxsize=None)
def _spec_file(path: Path) -> SpecFile:
    """A built-in file, read and compiled once per process."""
    return SpecFile(path)


@functools.lru_cache(maxsize=None)
def _builtin_files() -> tuple[SpecFile, ...]:
    return tuple(_spec_file(path) for path in _builtin_paths())


@functools.lru_cache(maxsize=None)
def _builtin_index() -> dict[str, SpecFile]:
    index: dict[str, SpecFile] = {}
    for spec_file in _builtin_files():
        for name in spec_file.names:
            if name in index:
                raise SpecError(f"built-in model {shown(name)} is defined twice", file=spec_file.file)
            index[name] = spec_file
    return index


@functools.lru_cache(maxsize=None)
def _builtin(name: str) -> SpecFile | None:
    """The built-in file that defines `name`, parsing only the files whose text mentions it (the file
    named like it first): a command that loads one model then parses one file, not all of them, which
    was most of `archcalc table alexnet`'s start. Found nowhere so: the full index decides. Kept per
    name, as the files are: a warm process reads no file again."""
    if _builtin_index.cache_info().currsize:
        return _builtin_index().get(name)
    mention = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])")
    paths = [path for path in _builtin_paths() if mention.search(path.read_text(encoding="utf-8", errors="replace"))]
    for path in sorted(paths, key=lambda path: not name.startswith(path.stem)):
        spec_file = _spec_file(path)
        if name in spec_file.names:
            return spec_file
    return _builtin_index().get(name)


def list_models(family: str | None = None) -> list[str]:
    """Names of every built-in model (of one family: its file's name, e.g. `efficientnet`), sorted."""
    index = _builtin_index()
    if family is not None and family not in families():
        raise SpecError(f"unknown family {shown(family)}{did_you_mean(family, families())}; "
                        f"the families: {', '.join(families())}")
    return sorted(name for name, spec_file in index.items() if family is None or _family(spec_file) == family)


def families() -> list[str]:
    """The built-in families: one per file under architectures/ (`resnet`, `vit`, ...), sorted."""
    return sorted({_family(spec_file) for spec_file in _builtin_files()})


def family_description(family: str) -> str:
    """What a family's file says it holds (its top-level `description:`)."""
    return next((f.description or "" for f in _builtin_files() if _family(f) == family), "")


def family(name: str) -> str:
    """The family of a built-in model: the name of the file it is written in."""
    return _family(_builtin_index()[builtin_name(name)])


def _family(spec_file: SpecFile) -> str:
    return Path(spec_file.file).stem


def builtin_name(name: str) -> str:
    """A built-in's name as archcalc writes it. torchvision's builder spelling (`efficientnet_b0`,
    `vgg16_bn`) names the same model (`efficientnet-b0`); a name that is a built-in as written is
    that built-in, so `alexnet` and `googlenet` stay the d2l and paper models (torchvision's are
    `alexnet-torchvision` and `googlenet-torchvision`). Anything else comes back unchanged."""
    index = _builtin_index()
    if name in index:
        return name
    dashed = _dashed(name)
    return dashed if dashed in index else name


def _dashed(name: str) -> str:
    """torchvision's builder spelling (`efficientnet_b0`) as archcalc's (`efficientnet-b0`)."""
    return name.replace("_", "-")


SpecLike = Union[str, Path, Model]


def load(spec: SpecLike, params: Mapping[str, Any] | None = None) -> Model:
    """A built-in name, a YAML path (`file.yaml` or `file.yaml:model`), or a Model, as a Model."""
    if params is not None and not isinstance(params, Mapping):
        raise SpecError(f"params must be a mapping of parameter name to value, got {shown(params)}")
    if isinstance(spec, Model):
        if params:
            raise SpecError("parameters can only be set on a spec loaded from YAML")
        return spec
    spec_file, name = _find(spec)
    return spec_file.model(name, params)


def build(spec: str | Path, params: Mapping[str, Any] | None = None) -> Model:
    """A built-in name or YAML path built afresh: `load` keeps a built-in's Model built with its
    defaults, this never does (for timing a build)."""
    spec_file, name = _find(spec)
    return spec_file.build(name, params)


def parameters(spec: str | Path) -> dict[str, Any]:
    """The parameters a built-in name or YAML path accepts (`params=`, `--set`), with their defaults."""
    spec_file, name = _find(spec)
    return spec_file.defaults(name)  # a deep copy: changing it changes no later build


def _find(spec: str | Path) -> tuple[SpecFile, str | None]:
    """The spec file holding a built-in name or `file.yaml[:model]`, and the model's name in it.

    The model's name follows the last `:` (a name holds none), so a path may hold `:` itself.
    """
    if not isinstance(spec, (str, Path)):
        raise SpecError(f"spec must be a built-in name, a path or a Model, got {shown(spec)}")
    text = str(spec)
    if not isinstance(spec, Path) and valid_name(text):
        for name in dict.fromkeys((text, _dashed(text))):  # as written first, as builtin_name has it
            builtin = _builtin(name)
            if builtin is not None:
                return builtin, name
    path, _, name = (text, "", "") if ":" not in text or _exists(text) else text.rpartition(":")
    if path.strip() and (Path(path).suffix in (".yaml", ".yml") or _is_file(path)):
        return SpecFile(path), name or None
    raise UnknownModelError(text, did_you_mean(text, _builtin_index()))


def _exists(path: str) -> bool:
    """Whether something is at `path`; False for a path the system refuses (too long, a NUL in it)."""
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):
        return False


def _is_file(path: str) -> bool:
    try:
        return os.path.isfile(path)
    except (OSError, ValueError):
        return False
