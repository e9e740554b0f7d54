"""Read YAML safely, keeping the line of every mapping, key and list item."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import yaml

from archcalc.errors import SpecError, shown

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The largest spec file read: 36 times the largest built-in (7 KB). PyYAML reads about 0.1 to 0.5 MB a
# second, compiling and analysing such a file (5,000 layers) takes as long again.
MAX_FILE_BYTES = 2**18
MAX_MERGED = 100_000  # keys that merge keys may copy in one file


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
    """A mapping; merge keys (`<<: *base`, `<<: [*a, *b]`) as YAML defines them: the mapping's own
    keys override the merged ones, and of several merged mappings the first listed wins (PyYAML's
    own flattening lets the last one win when the keys are written apart)."""
    data = LDict()
    data.line, data.lines = node.start_mark.line + 1, {}
    yield data
    merged: dict = {}
    merged_lines: dict = {}
    for key_node, value_node in node.value:
        if key_node.tag != "tag:yaml.org,2002:merge":
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source_node in dict.fromkeys(sources):  # a mapping listed twice adds nothing the second time
            source = loader.construct_object(source_node, deep=True)
            if not isinstance(source, dict):
                raise SpecError("a merge key (<<) takes a mapping or a list of mappings",
                                line=source_node.start_mark.line + 1)
            loader.merged = getattr(loader, "merged", 0) + len(source)
            if loader.merged > MAX_MERGED:  # aliases can merge a large mapping again and again
                raise SpecError(f"merge keys (<<) copy more than {MAX_MERGED:,} keys", line=key_node.start_mark.line + 1)
            for key, value in source.items():
                if key not in merged:
                    merged[key], merged_lines[key] = value, getattr(source, "lines", {}).get(key, source_node.start_mark.line + 1)
    data.update(merged)
    data.lines.update(merged_lines)
    own = set()
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise SpecError("a mapping key must be a plain value", line=line)
        if key in own:
            raise SpecError(f"duplicate key {shown(key)}", line=line)
        own.add(key)
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
    except ValueError as err:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        digits = getattr(sys, "get_int_max_str_digits", lambda: 0)()
        reason = f"an integer of more than {digits:,} digits" if "digits" in str(err) else f"a value that cannot be read ({err})"
        raise SpecError(f"YAML holds {reason}", file=file) from None


def read(path: Path) -> object:
    """Read and parse one YAML file: a regular file (not a FIFO or a device, which could block
    or never end) of at most MAX_FILE_BYTES."""
    try:
        with open(path, "rb", opener=_nonblocking) as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise SpecError("is a directory, not a spec file", file=str(path))
            if not stat.S_ISREG(info.st_mode):
                raise SpecError("is not a regular file (a FIFO, socket or device?), not a spec file", file=str(path))
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise SpecError(f"is larger than {MAX_FILE_BYTES // 2**10} KiB: too large for a spec file", file=str(path))
        text = data.decode("utf-8")
    except SpecError:
        raise
    except FileNotFoundError:
        raise SpecError("no such file", file=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a spec file", file=str(path)) from None
    except UnicodeDecodeError:
        raise SpecError("is not UTF-8 text", file=str(path)) from None
    except (OSError, ValueError) as err:  # ValueError: a NUL in the path
        raise SpecError(f"cannot be read: {getattr(err, 'strerror', None) or err}", file=str(path)) from None
    return parse(text, str(path))


def _nonblocking(path, flags: int) -> int:
    """Open without blocking: opening a FIFO for reading otherwise waits for a writer."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
