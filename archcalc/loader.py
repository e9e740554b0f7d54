"""Turn parsed YAML into spec dataclasses: models, shared blocks and their parameters.

A file holds one model (`name`, `input`, `layers`) or several under `models:`, which
may share `blocks:`. A block has `params` (required), `defaults` and `layers`; it is
used like an op: `- {vgg_stage: {out: 64, convs: 2}, name: stage1}`. Inside a block or
a model, a value written `$param` is replaced by the parameter's value, which is used as
it is (a `$` inside it is not looked up again); a list-valued parameter written as an
item of a list of layers is spliced into it (`- $norm` with `norm: []` adds nothing),
and as an item of concat's list it is one branch. A model may `extends:` another of the
same file, changing `defaults`. A value written `${...}` is a whitelisted expression
(archcalc.expressions), and `import:` makes other files' blocks usable. Nothing executes. The
layers are compiled once per file and built per model by `archcalc.templates`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

from archcalc.errors import SpecError, shown
from archcalc.expressions import IN_CHANNELS, BlockInput
from archcalc.spec import LEAF_OPS, NAME_RULE, Model, Where, valid_name
from archcalc.templates import (
    COMPOSITE_OPS, Builder, Compiler, check_keys, check_size, did_you_mean, kind_of, line_of,
)
from archcalc.yamlfile import LDict, read

__all__ = ["SpecFile", "did_you_mean"]

SINGLE_KEYS = ("name", "description", "source", "input", "layers", "blocks", "defaults", "import", "published")
MULTI_KEYS = ("models", "blocks", "description", "source", "import")
MODEL_KEYS = ("name", "description", "source", "input", "layers", "defaults", "extends", "published")
# What a model may say of its published figures, and what each must be
PUBLISHED_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "torchvision": (str, "the name of torchvision's builder, e.g. efficientnet_b0"),
    "params": (int, "an integer"),
    "gflops": ((int, float), "a number (torchvision's GFLOPS: multiply-accumulates, in billions)"),
    "top1": ((int, float), "a number (ImageNet-1K top-1 accuracy, %)"),
    "top5": ((int, float), "a number (ImageNet-1K top-5 accuracy, %)"),
    "weights": (str, "the name of the weights the figures belong to"),
    "source": (str, "where the figures come from"),
}
BLOCK_KEYS = ("params", "defaults", "layers", "description")


class SpecFile:
    """One YAML spec file: its models and blocks, built into Model objects on demand."""

    def __init__(self, path: Path | str, data: object | None = None, importing: tuple[Path, ...] = ()) -> None:
        self.path = Path(path)
        self.file = str(path)
        data = read(self.path) if data is None else data
        if not isinstance(data, dict):
            raise SpecError("a spec file is a mapping with name, input and layers (or models:)", file=self.file,
                            line=getattr(data, "line", None))
        if "models" in data:
            check_keys(data, MULTI_KEYS, "a multi-model file", self.file)
            entries = data["models"]
            if not isinstance(entries, list) or not entries:
                raise SpecError("models: must be a non-empty list", file=self.file, line=line_of(data, "models"))
        else:
            check_keys(data, SINGLE_KEYS, "a spec file", self.file)
            entries = [data]
        self.blocks = self._read_blocks(data.get("blocks"), line_of(data, "blocks"))
        imported = self._read_imports(data.get("import"), line_of(data, "import"), importing)
        self.compiler = Compiler(self.file, data, self.blocks, imported)
        self.entries: dict[str, dict[str, Any]] = {}
        for i, entry in enumerate(entries):
            line = line_of(entries, i, data.line if isinstance(data, LDict) else None)
            if not isinstance(entry, dict):
                raise SpecError("a model is a mapping with name, input and layers", file=self.file, line=line)
            if entry is not data:
                check_keys(entry, MODEL_KEYS, "a model", self.file)
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise SpecError("a model needs a name (a string)", file=self.file, line=line)
            if not valid_name(name):
                raise SpecError(f"a model's name must be {NAME_RULE}, got {shown(name)}", file=self.file,
                                line=line_of(entry, "name", line))
            if name in self.entries:
                raise SpecError(f"two models are named {shown(name)}", file=self.file, line=line)
            self.entries[name] = entry
        # a file's description and citation hold for each of its models that gives none of its own
        self.description = data.get("description", "") if "models" in data else ""
        self.source = data.get("source", "") if "models" in data else ""
        self.built: dict[str, Model] = {}  # each model as its defaults build it (Models are immutable)

    @property
    def names(self) -> list[str]:
        return list(self.entries)

    def _read_blocks(self, blocks, line) -> dict[str, LDict]:
        if blocks is None:
            return {}
        if not isinstance(blocks, dict):
            raise SpecError("blocks: must be a mapping of block name to block", file=self.file, line=line)
        for name, block in blocks.items():
            bline = line_of(blocks, name)
            if not isinstance(name, str) or not valid_name(name):
                raise SpecError(f"a block's name must be {NAME_RULE}, got {shown(name)}", file=self.file, line=bline)
            if name in LEAF_OPS or name in COMPOSITE_OPS:
                raise SpecError(f"block name {shown(name)} is taken by a built-in op", file=self.file, line=bline)
            if not isinstance(block, dict):
                raise SpecError(f"block {shown(name)} must be a mapping with params, defaults and layers",
                                file=self.file, line=bline)
            check_keys(block, BLOCK_KEYS, f"block {shown(name)}", self.file)
            params, defaults = block.get("params") or [], block.get("defaults") or {}
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                raise SpecError(f"params of block {shown(name)} must be a list of names", file=self.file,
                                line=line_of(block, "params"))
            if not isinstance(defaults, dict):
                raise SpecError(f"defaults of block {shown(name)} must be a mapping", file=self.file,
                                line=line_of(block, "defaults"))
            if IN_CHANNELS in params or IN_CHANNELS in defaults:
                raise SpecError(f"block {name!r}: {IN_CHANNELS} is the block's incoming width, not a parameter "
                                "it can take", file=self.file, line=line_of(block, "params"))
            if "layers" not in block:
                raise SpecError(f"block {shown(name)} has no layers", file=self.file, line=bline)
        return dict(blocks)

    def _read_imports(self, imports, line, importing: tuple[Path, ...]) -> dict[str, Compiler]:
        """The blocks of the files `import:` names (built-in family names or paths relative to this
        file), by block name, each with the compiler of the file that defines it."""
        if imports is None:
            return {}
        if not isinstance(imports, list) or not all(isinstance(i, str) and i for i in imports):
            raise SpecError("import: must be a list of built-in family names (e.g. resnet) or .yaml paths",
                            file=self.file, line=line)
        here = self.path.resolve()
        importing = (*importing, here)
        blocks: dict[str, Compiler] = {}
        for i, name in enumerate(imports):
            item_line = line_of(imports, i, line)
            path = self._import_path(name, item_line)
            if path.resolve() in importing:
                chain = " -> ".join(p.name for p in (*importing, path))
                raise SpecError(f"files import each other in a loop ({chain})", file=self.file, line=item_line)
            try:
                other = SpecFile(path, importing=importing)
            except SpecError as err:
                raise err.located(file=self.file, line=item_line) from None
            for block, compiler in {**dict.fromkeys(other.blocks, other.compiler)}.items():
                if block in self.blocks or block in blocks:
                    raise SpecError(f"block {block!r} of {name} is also defined "
                                    f"{'in this file' if block in self.blocks else 'by an earlier import'}",
                                    file=self.file, line=item_line)
                blocks[block] = compiler
        return blocks

    def _import_path(self, name: str, line: int | None) -> Path:
        if name.endswith((".yaml", ".yml")):
            return self.path.parent / name
        from archcalc.registry import architectures_dir  # the registry reads spec files: imported here

        families = sorted(p.stem for p in architectures_dir().glob("*.yaml"))
        if name not in families:
            raise SpecError(f"import {name!r}: no built-in family file of that name{did_you_mean(name, families)} "
                            "(a path must end in .yaml)", file=self.file, line=line)
        return architectures_dir() / f"{name}.yaml"

    def _entry_name(self, name: str | None) -> str:
        """The model `name` names in this file (the only one, if name is None)."""
        if name is None:
            if len(self.entries) != 1:
                raise SpecError(f"holds several models ({', '.join(self.entries)}): name one as FILE:MODEL",
                                file=self.file)
            name = next(iter(self.entries))
        if name not in self.entries:
            raise SpecError(f"has no model {shown(name)}{did_you_mean(name, self.entries)}", file=self.file)
        return name

    def defaults(self, name: str | None = None) -> dict[str, Any]:
        """A model's parameters (settable with `params`) and their default values: a copy, which the
        caller may change without changing the file's models."""
        return copy.deepcopy(self._resolved(self._entry_name(name))["defaults"])

    def model(self, name: str | None = None, params: Mapping[str, Any] | None = None) -> Model:
        """One model of this file (the only one, if name is None): built once with its defaults."""
        name = self._entry_name(name)
        if params:
            return self.build(name, params)
        model = self.built.get(name)
        if model is None:
            model = self.built[name] = self.build(name)
        return model

    def build(self, name: str | None = None, params: Mapping[str, Any] | None = None) -> Model:
        """Build one model of this file (the only one, if name is None), afresh."""
        name = self._entry_name(name)
        entry = self._resolved(name)
        scope = dict(entry["defaults"])
        if IN_CHANNELS in scope:
            raise SpecError(f"{name}: {IN_CHANNELS} is the model's input width, not a parameter it can take",
                            file=self.file, line=entry["line"])
        for key, value in (params or {}).items():
            check_size(value, f"the value of parameter {shown(key)}")
            if key not in scope:
                have = ", ".join(scope) or "none"
                raise SpecError(f"{name} has no parameter {shown(key)}{did_you_mean(key, scope)}; its parameters: {have}",
                                file=self.file)
            scope[key] = value
        builder = Builder(self.compiler)
        scope[IN_CHANNELS] = block_input = BlockInput()
        try:
            shape = builder.substitute(entry["input"], scope, entry["input_line"])
            built = builder.layers(entry["layers"], scope, entry["layers_line"], (None, "layers"))
            return Model(
                name=name,
                input=shape,
                layers=built,
                description=str(entry["description"] or ""),
                source=str(entry["source"] or ""),
                published=self._published(entry),
                where=Where(self.file, entry["line"]),
                block_input=block_input,
            )
        except SpecError as err:
            raise err.located(file=self.file, line=entry["input_line"]) from None
        except RecursionError:
            raise SpecError("nested too deeply (does something refer to itself?)", file=self.file,
                            line=entry["line"]) from None

    def _published(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """A model's own `published:` figures, checked (never inherited: a variant's figures are its own)."""
        published = self.entries[entry["name"]].get("published")
        if published is None:
            return {}
        line = line_of(self.entries[entry["name"]], "published")
        if not isinstance(published, dict):
            raise SpecError("published: must be a mapping (torchvision, params, gflops, top1, top5, weights, source)",
                            file=self.file, line=line)
        check_keys(published, PUBLISHED_KEYS, "published", self.file)
        for key, value in published.items():
            kind, what = PUBLISHED_KEYS[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise SpecError(f"published {key} must be {what}, got {shown(value)}", file=self.file,
                                line=line_of(published, key, line))
        return dict(published)

    def _resolved(self, name: str) -> dict[str, Any]:
        """A model entry with `extends` applied: the parent's keys, the child's defaults on top.

        The chain is followed in a loop, not by recursion: a chain of thousands is only slow to write.
        """
        chain = [name]
        while True:
            entry = self.entries[chain[-1]]
            parent_name = entry.get("extends")
            if parent_name is None:
                break
            if not isinstance(parent_name, str):
                raise SpecError(f"extends takes the name of a model in this file, got {kind_of(parent_name)}",
                                file=self.file, line=line_of(entry, "extends"))
            if parent_name in chain:
                loop = " -> ".join((*chain[chain.index(parent_name):], parent_name))  # names: valid_name()
                raise SpecError(f"models extend each other in a loop ({loop})", file=self.file,
                                line=line_of(entry, "extends"))
            if parent_name not in self.entries:
                raise SpecError(f"model {shown(chain[-1])} extends unknown model {shown(parent_name)}"
                                f"{did_you_mean(parent_name, self.entries)}", file=self.file, line=line_of(entry, "extends"))
            chain.append(parent_name)
        resolved = self._base(chain[-1])
        for child in reversed(chain[:-1]):
            self._extend(resolved, child, str(self.entries[child]["extends"]))
        resolved["name"] = name
        return resolved

    def _base(self, name: str) -> dict[str, Any]:
        """A model that extends none."""
        entry = self.entries[name]
        line = line_of(entry, "name", getattr(entry, "line", None))
        for key in ("input", "layers"):
            if key not in entry:
                raise SpecError(f"model {shown(name)} has no {key}", file=self.file, line=line)
        defaults = entry.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise SpecError("defaults must be a mapping of parameter to value", file=self.file,
                            line=line_of(entry, "defaults"))
        return {
            "input": entry["input"],
            "layers": entry["layers"],
            "input_line": line_of(entry, "input", line),
            "layers_line": line_of(entry, "layers", line),
            "defaults": dict(defaults),
            "description": entry.get("description", self.description),
            "source": entry.get("source", self.source),
            "line": line,
        }

    def _extend(self, resolved: dict[str, Any], name: str, parent_name: str) -> None:
        """`resolved` (the parent's) made the child's: its defaults on top, its own keys."""
        entry = self.entries[name]
        line = line_of(entry, "name", getattr(entry, "line", None))
        defaults = entry.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise SpecError("defaults must be a mapping of parameter to value", file=self.file,
                            line=line_of(entry, "defaults"))
        unknown = [k for k in defaults if k not in resolved["defaults"]]
        if unknown:
            raise SpecError(f"{parent_name} has no parameter {shown(unknown[0])}", file=self.file,
                            line=line_of(defaults, unknown[0]))
        resolved["defaults"].update(defaults)
        for key in ("input", "layers"):
            if key in entry:
                resolved[key], resolved[f"{key}_line"] = entry[key], line_of(entry, key, line)
        resolved["description"] = entry.get("description", resolved["description"])
        resolved["source"] = entry.get("source", resolved["source"])
        resolved["line"] = line
