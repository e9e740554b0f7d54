"""Turn parsed YAML into spec dataclasses: models, shared blocks and their parameters.

A file holds one model (`name`, `input`, `layers`) or several under `models:`, which
may share `blocks:`. A block has `params` (required), `defaults` and `layers`; it is
used like an op: `- {vgg_stage: {out: 64, convs: 2}, name: stage1}`. Inside a block or
a model, a value written `$param` is replaced by the parameter's value, which is used as
it is (a `$` inside it is not looked up again); a list-valued parameter written as an
item of a list of layers is spliced into it (`- $norm` with `norm: []` adds nothing),
and as an item of concat's list it is one branch. A model may `extends:` another of the
same file, changing `defaults`.
There is no arithmetic and nothing executes.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import AbstractSet, Any, Mapping, Optional

from archcalc.errors import SpecError, shown
from archcalc.spec import (
    LEAF_OPS, Concat, Model, Node, Repeat, Residual, Sequential, SpecPath, Where, class_info, spell,
)
from archcalc.yamlfile import LDict, LList, read

SINGLE_KEYS = ("name", "description", "source", "input", "layers", "blocks", "defaults")
MULTI_KEYS = ("models", "blocks", "description", "source")
MODEL_KEYS = ("name", "description", "source", "input", "layers", "defaults", "extends")
BLOCK_KEYS = ("params", "defaults", "layers", "description")
LAYER_KEYS = ("name", "trainable")
COMPOSITE_OPS = ("sequential", "concat", "residual", "repeat")
MAX_SPEC_NODES = 50_000  # layers written out after expanding blocks (repeats stay shared)
MAX_NESTING = 64
# A block argument of one of these types is told apart from another by its value; any other
# (a list or mapping) by the object, which the caller keeps alive while its id is a key.
_PLAIN = frozenset({str, int, float, bool, type(None)})
_new = tuple.__new__


def did_you_mean(word: object, choices, prefix: str = "") -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def _plain_containers(data) -> set[int]:
    """ids of the mappings and lists under `data` in which no `$param` appears.

    `data` must outlive the set (a SpecFile keeps its parsed YAML), so no other object can take one of the ids.
    """
    plain: set[int] = set()
    visited: dict[int, bool] = {}  # a YAML alias shares one object between places: visit it once

    def visit(node) -> bool:
        if isinstance(node, str):
            return node.startswith("$")
        if not isinstance(node, (dict, list)):
            return False
        if id(node) in visited:
            return visited[id(node)]
        mentions = False
        for item in node.values() if isinstance(node, dict) else node:
            mentions = visit(item) or mentions
        if not mentions:
            plain.add(id(node))
        visited[id(node)] = mentions
        return mentions

    try:
        visit(data)
    except RecursionError:  # YAML aliases that nest too deep: substitute everything, the builder reports it
        plain.clear()
    return plain


def _line(container, key, default: int | None = None) -> int | None:
    if isinstance(container, (LDict, LList)):
        return container.line_of(key)
    return default


def _check_keys(data: Mapping, allowed, what: str, file: str) -> None:
    for key in data:
        if key not in allowed:
            raise SpecError(
                f"unknown key {key!r} in {what}{did_you_mean(key, allowed)}", file=file, line=_line(data, key)
            )


class SpecFile:
    """One YAML spec file: its models and blocks, built into Model objects on demand."""

    def __init__(self, path: Path | str, data: object | None = None) -> None:
        self.path = Path(path)
        self.file = str(path)
        data = read(self.path) if data is None else data
        if not isinstance(data, dict):
            raise SpecError("a spec file is a mapping with name, input and layers (or models:)", file=self.file,
                            line=getattr(data, "line", None))
        if "models" in data:
            _check_keys(data, MULTI_KEYS, "a multi-model file", self.file)
            entries = data["models"]
            if not isinstance(entries, list) or not entries:
                raise SpecError("models: must be a non-empty list", file=self.file, line=_line(data, "models"))
        else:
            _check_keys(data, SINGLE_KEYS, "a spec file", self.file)
            entries = [data]
        self.blocks = self._read_blocks(data.get("blocks"), _line(data, "blocks"))
        self.plain = _plain_containers(data)
        self.entries: dict[str, dict[str, Any]] = {}
        for i, entry in enumerate(entries):
            line = _line(entries, i, data.line if isinstance(data, LDict) else None)
            if not isinstance(entry, dict):
                raise SpecError("a model is a mapping with name, input and layers", file=self.file, line=line)
            if entry is not data:
                _check_keys(entry, MODEL_KEYS, "a model", self.file)
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise SpecError("a model needs a name (a string)", file=self.file, line=line)
            if name in self.entries:
                raise SpecError(f"two models are named {name!r}", file=self.file, line=line)
            self.entries[name] = entry
        # a file's description and citation hold for each of its models that gives none of its own
        self.description = data.get("description", "") if "models" in data else ""
        self.source = data.get("source", "") if "models" in data else ""

    @property
    def names(self) -> list[str]:
        return list(self.entries)

    def _read_blocks(self, blocks, line) -> dict[str, LDict]:
        if blocks is None:
            return {}
        if not isinstance(blocks, dict):
            raise SpecError("blocks: must be a mapping of block name to block", file=self.file, line=line)
        for name, block in blocks.items():
            bline = _line(blocks, name)
            if not isinstance(name, str) or name in LEAF_OPS or name in COMPOSITE_OPS:
                raise SpecError(f"block name {name!r} is taken by a built-in op", file=self.file, line=bline)
            if not isinstance(block, dict):
                raise SpecError(f"block {name!r} must be a mapping with params, defaults and layers",
                                file=self.file, line=bline)
            _check_keys(block, BLOCK_KEYS, f"block {name!r}", self.file)
            params, defaults = block.get("params") or [], block.get("defaults") or {}
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                raise SpecError(f"params of block {name!r} must be a list of names", file=self.file,
                                line=_line(block, "params"))
            if not isinstance(defaults, dict):
                raise SpecError(f"defaults of block {name!r} must be a mapping", file=self.file,
                                line=_line(block, "defaults"))
            if "layers" not in block:
                raise SpecError(f"block {name!r} has no layers", file=self.file, line=bline)
        return dict(blocks)

    def _entry_name(self, name: str | None) -> str:
        """The model `name` names in this file (the only one, if name is None)."""
        if name is None:
            if len(self.entries) != 1:
                raise SpecError(f"holds several models ({', '.join(self.entries)}): name one as FILE:MODEL",
                                file=self.file)
            name = next(iter(self.entries))
        if name not in self.entries:
            raise SpecError(f"has no model {name!r}{did_you_mean(name, self.entries)}", file=self.file)
        return name

    def defaults(self, name: str | None = None) -> dict[str, Any]:
        """A model's parameters (settable with `params`) and their default values."""
        return dict(self._resolved(self._entry_name(name))["defaults"])

    def model(self, name: str | None = None, params: Mapping[str, Any] | None = None) -> Model:
        """Build one model of this file (the only one, if name is None)."""
        name = self._entry_name(name)
        entry = self._resolved(name)
        scope = dict(entry["defaults"])
        for key, value in (params or {}).items():
            if key not in scope:
                have = ", ".join(scope) or "none"
                raise SpecError(f"{name} has no parameter {key!r}{did_you_mean(key, scope)}; its parameters: {have}",
                                file=self.file)
            scope[key] = value
        builder = _Builder(self.file, self.blocks, self.plain)
        try:
            shape = builder.substitute(entry["input"], scope, entry["input_line"])
            built = builder.layers(entry["layers"], scope, entry["layers_line"], (None, "layers"))
            return Model(
                name=name,
                input=shape,
                layers=built,
                description=str(entry["description"] or ""),
                source=str(entry["source"] or ""),
                where=Where(self.file, entry["line"]),
            )
        except SpecError as err:
            raise err.located(file=self.file, line=entry["input_line"]) from None
        except RecursionError:
            raise SpecError("nested too deeply (does something refer to itself?)", file=self.file,
                            line=entry["line"]) from None

    def _resolved(self, name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        """A model entry with `extends` applied: the parent's keys, the child's defaults on top."""
        entry = self.entries[name]
        line = _line(entry, "name", getattr(entry, "line", None))
        parent_name = entry.get("extends")
        if parent_name is None:
            for key in ("input", "layers"):
                if key not in entry:
                    raise SpecError(f"model {name!r} has no {key}", file=self.file, line=line)
            defaults = entry.get("defaults") or {}
            if not isinstance(defaults, dict):
                raise SpecError("defaults must be a mapping of parameter to value", file=self.file,
                                line=_line(entry, "defaults"))
            return {
                "input": entry["input"],
                "layers": entry["layers"],
                "input_line": _line(entry, "input", line),
                "layers_line": _line(entry, "layers", line),
                "defaults": dict(defaults),
                "description": entry.get("description", self.description),
                "source": entry.get("source", self.source),
                "line": line,
            }
        if parent_name in seen or parent_name == name:
            raise SpecError(f"models extend each other in a loop ({' -> '.join((*seen, name, parent_name))})",
                            file=self.file, line=_line(entry, "extends"))
        if parent_name not in self.entries:
            raise SpecError(f"model {name!r} extends unknown model {parent_name!r}"
                            f"{did_you_mean(parent_name, self.entries)}", file=self.file, line=_line(entry, "extends"))
        resolved = self._resolved(parent_name, (*seen, name))
        defaults = entry.get("defaults") or {}
        unknown = [k for k in defaults if k not in resolved["defaults"]]
        if unknown:
            raise SpecError(f"{parent_name} has no parameter {unknown[0]!r}", file=self.file,
                            line=_line(defaults, unknown[0]))
        resolved["defaults"].update(defaults)
        for key in ("input", "layers"):
            if key in entry:
                resolved[key], resolved[f"{key}_line"] = entry[key], _line(entry, key, line)
        resolved["description"] = entry.get("description", resolved["description"])
        resolved["source"] = entry.get("source", resolved["source"])
        resolved["line"] = line
        return resolved


# The scope a piece of layer data resolves its `$params` in; None for data that came out of a
# parameter, which was resolved where it was passed and is used as it is.
Scope = Optional[Mapping[str, Any]]


class _Builder:
    """Converts YAML layer data into Nodes, expanding blocks and resolving `$params` as it goes."""

    def __init__(self, file: str, blocks: Mapping[str, LDict], plain: AbstractSet[int] = frozenset()) -> None:
        self.file = file
        self.blocks = blocks
        self.plain = plain  # ids of the file's containers that mention no parameter: resolved as they are
        self.count = 0  # layers built, shared ones counted wherever they stand
        self.calls: list[str] = []
        # (id of the item, line) -> (item, node); (block, its arguments) -> (arguments, layers, count);
        # each entry holds what its key names by id, so that no other object can take the id.
        self.fixed_leaves: dict[tuple[int, int | None], tuple[Any, Node]] = {}
        self.expansions: dict[tuple, tuple[Any, tuple[Node, ...], int]] = {}

    def error(self, reason: str, line: int | None, path: SpecPath = None, op: str | None = None) -> SpecError:
        return SpecError(reason, file=self.file, line=line, path=spell(path) if path else None, op=op)

    def substitute(self, data, scope: Scope, line: int | None, done: dict[int, Any] | None = None):
        """`data` with every `$param` replaced by its value from scope (a copy where any is).

        `done` maps containers already copied in this call to their copies: a YAML alias
        shares one object between many places, and copying it each time could take forever.
        """
        if scope is None:
            return data
        if isinstance(data, str):
            return self._value(data, scope, line) if data.startswith("$") else data
        if id(data) in self.plain:
            return data
        done = {} if done is None else done
        if id(data) in done:
            return done[id(data)]
        if isinstance(data, LDict):
            new = done[id(data)] = LDict()
            new.line, new.lines = data.line, data.lines
            for key, value in data.items():
                new[key] = self.substitute(value, scope, data.line_of(key), done)
            return new
        if isinstance(data, list):
            items = done[id(data)] = LList()
            items.line, items.lines = getattr(data, "line", line), []
            for i, item in enumerate(data):
                item_line = _line(data, i, line)
                if isinstance(item, str) and item.startswith("$") and isinstance(scope.get(item[1:]), list):
                    spliced = scope[item[1:]]
                    items.extend(spliced)
                    items.lines.extend(_line(spliced, j, item_line) for j in range(len(spliced)))
                else:
                    items.append(self.substitute(item, scope, item_line, done))
                    items.lines.append(item_line)
            return items
        return data

    def _arguments(self, args, scope: Scope, line: int | None):
        """An op's or block's arguments with `$params` replaced; a mapping comes back as a plain dict."""
        if scope is None or not isinstance(args, dict) or id(args) in self.plain:
            return self.substitute(args, scope, line)
        resolved = {}
        for key, value in args.items():
            if isinstance(value, str):
                if value.startswith("$"):
                    if value[1:] not in scope:
                        raise self._unknown(value, scope, _line(args, key, line))  # the line looked up only then
                    value = scope[value[1:]]
            elif isinstance(value, (dict, list)):
                value = self.substitute(value, scope, _line(args, key, line))
            resolved[key] = value
        return resolved

    def _value(self, reference: str, scope: Mapping[str, Any], line: int | None):
        if reference[1:] not in scope:
            raise self._unknown(reference, scope, line)
        return scope[reference[1:]]

    def _unknown(self, reference: str, scope: Mapping[str, Any], line: int | None) -> SpecError:
        return self.error(f"unknown parameter {reference}{did_you_mean(reference[1:], scope, '$')}", line)

    def _resolved(self, data, scope: Scope, line: int | None) -> tuple[Any, Scope]:
        """Data standing in for a list or mapping of layers: a `$param` is replaced (and then final)."""
        if scope is not None and isinstance(data, str) and data.startswith("$"):
            return self._value(data, scope, line), None
        return data, scope

    def layers(self, data, scope: Scope, line: int | None, path: SpecPath) -> tuple[Node, ...]:
        """A list of layers; a list-valued `$param` standing as an item is spliced in."""
        data, scope = self._resolved(data, scope, line)
        if not isinstance(data, list):
            raise self.error(f"{spell(path)} must be a list of layers, got {_kind(data)}", line)
        lines = data.lines if isinstance(data, LList) else ()
        nodes: list[Node] = []
        for i, item in enumerate(data):
            item_line = lines[i] if i < len(lines) else line
            if scope is not None and isinstance(item, str) and item.startswith("$"):
                item = self._value(item, scope, item_line)
                if isinstance(item, list):  # spliced in, as it is
                    for j, spliced in enumerate(item):
                        nodes.append(self.layer(spliced, None, _line(item, j, item_line), (path, len(nodes))))
                else:
                    nodes.append(self.layer(item, None, item_line, (path, len(nodes))))
            else:
                nodes.append(self.layer(item, scope, item_line, (path, len(nodes))))
        return tuple(nodes)

    def layer(self, item, scope: Scope, line: int | None, path: SpecPath) -> Node:
        self.count += 1
        if self.count > MAX_SPEC_NODES:
            raise self.error(f"the spec expands to more than {MAX_SPEC_NODES:,} layers", line, path)
        # A leaf written without `$params` (or passed in one, hence final) is the same node
        # wherever it stands on this line: build it once per model (`relu`, a block's batch norm).
        fixed = scope is None or id(item) in self.plain
        if fixed:
            site = (id(item), line)
            known = self.fixed_leaves.get(site)
            if known is not None:
                return known[1]
        extra: dict[str, Any] = {}
        args: Any = None
        if isinstance(item, str):
            op = item
        elif isinstance(item, dict):
            ops = [key for key in item if key not in LAYER_KEYS]
            if len(ops) != 1:
                raise self.error(
                    f"a layer is one op key (plus optional name: and trainable:), got {', '.join(map(str, ops)) or 'none'}",
                    line, path)
            op, args = ops[0], item[ops[0]]
            if len(item) > 1:
                extra = {k: item[k] if fixed else self.substitute(item[k], scope, _line(item, k, line))
                         for k in LAYER_KEYS if k in item}
        else:
            raise self.error(f"a layer is an op name or a mapping, got {_kind(item)}", line, path)
        where = _new(Where, (self.file, line))  # tuple.__new__: a named tuple's own __new__ is Python code
        try:
            node = self._node(op, args, scope, extra, where, path)
        except SpecError as err:
            raise err.located(file=self.file, line=line, path=spell(path), op=str(op)) from None
        if fixed and op in LEAF_OPS:
            self.fixed_leaves[site] = (item, node)  # keeps item alive: its id stays its own
        return node

    def _node(self, op, args, scope: Scope, extra: dict, where: Where, path: SpecPath) -> Node:
        line = where.line
        if op in LEAF_OPS:
            cls = LEAF_OPS[op]
            written, args = args, {} if args is None else self._arguments(args, scope, line)
            if not isinstance(args, dict):
                raise SpecError(f"arguments must be a mapping, got {_kind(args)}")
            info = class_info(cls)
            for key in args:
                if key not in info.arguments:
                    raise SpecError(f"unknown argument {key!r}{did_you_mean(key, info.arguments)}",
                                    line=_line(written if isinstance(written, dict) else args, key, line))
            for key in info.required:
                if key not in args:
                    raise SpecError(f"missing argument {key}")
            return cls.from_spec({**args, **extra}, where)
        if op in self.blocks:
            return self._block(op, args, self._arguments(args, scope, line), extra, where, path)
        if op == "sequential":
            return Sequential.from_spec({"layers": self.layers(args, scope, line, (path, ".sequential")), **extra}, where)
        args, scope = self._resolved(args, scope, line)
        if op == "concat":
            if not isinstance(args, list) or not args:
                raise SpecError("concat takes a non-empty list of branches, each a list of layers")
            branches = tuple(self.layers(b, scope, _line(args, i, line), ((path, ".concat"), i))
                             for i, b in enumerate(args))
            return Concat.from_spec({"branches": branches, **extra}, where)
        if op == "residual":
            if not isinstance(args, dict) or "body" not in args:
                raise SpecError("residual takes a mapping with body: [layers] and optional shortcut: [layers]")
            _check_keys(args, ("body", "shortcut"), "residual", self.file)
            body = self.layers(args["body"], scope, _line(args, "body", line), (path, ".residual.body"))
            shortcut = args.get("shortcut") or []
            short = self.layers(shortcut, scope, _line(args, "shortcut", line), (path, ".residual.shortcut"))
            return Residual.from_spec({"body": body, "shortcut": short, **extra}, where)
        if op == "repeat":
            if not isinstance(args, dict) or "times" not in args or "layers" not in args:
                raise SpecError("repeat takes a mapping with times: N and layers: [layers]")
            _check_keys(args, ("times", "layers"), "repeat", self.file)
            times = self.substitute(args["times"], scope, _line(args, "times", line))
            if not isinstance(times, int) or isinstance(times, bool) or times < 1:
                raise SpecError(f"repeat times must be a positive integer, got {shown(times)}",
                                line=_line(args, "times", line))
            layers = self.layers(args["layers"], scope, _line(args, "layers", line), (path, ".repeat.layers"))
            return Repeat.from_spec({"times": times, "layers": layers, **extra}, where)
        known = [*LEAF_OPS, *COMPOSITE_OPS, *self.blocks]
        raise SpecError(f"unknown op {op!r}{did_you_mean(op, known)}")

    def _block(self, name: str, written, args, extra: dict, where: Where, path: SpecPath) -> Sequential:
        if len(self.calls) >= MAX_NESTING:
            raise SpecError(f"blocks are nested more than {MAX_NESTING} deep")
        if name in self.calls:
            chain = " -> ".join((*self.calls[self.calls.index(name):], name))
            raise SpecError(f"block {name!r} calls itself ({chain})")
        # The same block with the same arguments builds the same layers: build them once per
        # model and share them, as a repeat's copies are (GoogLeNet's units, ResNet's stages).
        args = {} if args is None else args
        if not isinstance(args, dict):
            raise SpecError(f"arguments of block {name!r} must be a mapping, got {_kind(args)}")
        key = (name, *[(k, v.__class__, v if v.__class__ in _PLAIN else id(v)) for k, v in args.items()])
        known = self.expansions.get(key)
        if known is None:
            known = self.expansions[key] = (args, *self._expand(name, written, args, where, path))
        else:
            self.count += known[2]  # the limit on layers counts each place a shared layer stands
            if self.count > MAX_SPEC_NODES:
                raise SpecError(f"the spec expands to more than {MAX_SPEC_NODES:,} layers")
        return Sequential.from_spec({"layers": known[1], "block": name, **extra}, where)

    def _expand(self, name: str, written, args: dict, where: Where, path: SpecPath) -> tuple[tuple[Node, ...], int]:
        """A block's layers for these arguments, and how many layers were built."""
        block = self.blocks[name]
        params, defaults = block.get("params") or [], block.get("defaults") or {}
        for key in args:
            if key not in params and key not in defaults:
                raise SpecError(f"block {name!r} has no parameter {key!r}{did_you_mean(key, [*params, *defaults])}",
                                line=_line(written if isinstance(written, dict) else args, key, where.line))
        missing = [p for p in params if p not in args]
        if missing:
            raise SpecError(f"block {name!r} needs {', '.join(missing)}")
        self.calls.append(name)
        start = self.count
        try:
            built = self.layers(block["layers"], {**defaults, **args}, _line(block, "layers"), (path, "." + name))
        finally:
            self.calls.pop()
        return built, self.count - start


def _kind(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
