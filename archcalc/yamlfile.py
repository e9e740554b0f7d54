"""Read YAML safely, keeping the line of every mapping, key and list item."""

from __future__ import annotations

from pathlib import Path

import yaml

from archcalc.errors import SpecError

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LDict(dict):
    """A YAML mapping with `line` and the line of each key in `lines`."""

    line: int | None = 0
    lines: dict

    def line_of(self, key) -> int | None:
        return self.lines.get(key, self.line)


class LList(list):
    """A YAML sequence with `line` and the line of each item in `lines`."""

    line: int | None = 0
    lines: list

    def line_of(self, index: int) -> int | None:
        return self.lines[index] if index < len(self.lines) else self.line


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """yaml's safe loader (nothing can run code), with lines and no duplicate keys."""


def _mapping(loader: _Loader, node: yaml.MappingNode):
    data = LDict()
    data.line, data.lines = node.start_mark.line + 1, {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise SpecError("a mapping key must be a plain value", line=line)
        if key in data:
            raise SpecError(f"duplicate key {key!r}", line=line)
        data[key] = loader.construct_object(value_node, deep=True)
        data.lines[key] = line


def _sequence(loader: _Loader, node: yaml.SequenceNode):
    data = LList()
    data.line, data.lines = node.start_mark.line + 1, [item.start_mark.line + 1 for item in node.value]
    yield data
    data.extend(loader.construct_object(item, deep=True) for item in node.value)


_Loader.add_constructor("tag:yaml.org,2002:map", _mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _sequence)


def parse(text: str, file: str) -> object:
    """Parse YAML text; any problem is one SpecError with file and line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a subclass of the safe loader
    except SpecError as err:
        raise err.located(file=file) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        reason = " ".join(filter(None, [err.context, err.problem])) or "not valid YAML"
        raise SpecError(f"YAML does not parse: {reason}", file=file, line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as err:
        raise SpecError(f"YAML does not parse: {err}", file=file) from None
    except RecursionError:
        raise SpecError("YAML is nested too deeply", file=file) from None


def read(path: Path) -> object:
    """Read and parse one YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("no such file", file=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a spec file", file=str(path)) from None
    except UnicodeDecodeError:
        raise SpecError("is not UTF-8 text", file=str(path)) from None
    except OSError as err:
        raise SpecError(f"cannot be read: {err.strerror}", file=str(path)) from None
    return parse(text, str(path))
