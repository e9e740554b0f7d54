"""A spec file's layers compiled once into templates, and built into Nodes for each model.

Compiling a YAML layer works out, once per file, all that does not depend on the values of
parameters: its op and Node class, its written arguments (checked), the ones that name a
`$param` (or hold one), and any mistake in how it is written, which is raised when a build
reaches the layer, with the same message and place as if it were found then. A layer that
names no parameter compiles to its Node, which every build shares (Nodes are frozen).
Building a model substitutes the parameters' values, checks them and expands blocks.

Only data the spec file holds is compiled once; data passed in as a parameter from Python is
compiled when it is used.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Mapping, Optional

from archcalc.errors import SpecError, shown
from archcalc.expressions import IN_CHANNELS, BlockInput, Deferred, evaluate, is_expression
from archcalc.spec import (
    LEAF_OPS, Auxiliary, Concat, Gate, Node, Repeat, Residual, Sequential, SpecPath, Where, class_info, spell,
)
from archcalc.yamlfile import LDict, LList

LAYER_KEYS = ("name", "trainable")
COMPOSITE_OPS = ("sequential", "concat", "residual", "gate", "repeat", "auxiliary")
LIST_OPS = ("sequential", "gate", "auxiliary")  # composites whose argument is one list of layers (a `$param` may stand for it)
MAX_SPEC_NODES = 50_000  # layers written out after expanding blocks (repeats stay shared)
MAX_NESTING = 64
# A block argument of one of these types is told apart from another by its value; any other
# (a list or mapping) by the object, which the caller keeps alive while its id is a key.
_PLAIN = frozenset({str, int, float, bool, type(None)})
# How a field gets its value: as written, a `$param`'s value, a container with `$params` in it, substituted,
# or a `${...}` expression's value
LITERAL, REF, NESTED, EXPR = 0, 1, 2, 3
# The scope a piece of layer data resolves its `$params` in; None for data that came out of a
# parameter, which was resolved where it was passed and is used as it is.
Scope = Optional[Mapping[str, Any]]
Field = tuple[str, int, Any, Optional[int]]  # key, how it gets its value (LITERAL, REF, NESTED), the data, its line


def did_you_mean(word: object, choices, prefix: str = "") -> str:
    if not isinstance(word, str) or len(word) > 100:  # nothing is close to that, and difflib would take long
        return ""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def known_ops(blocks) -> str:
    """The ops a spec can use, grouped: `ops: conv/pool: conv2d, ...; composites: ...; blocks: ...`."""
    from archcalc.ops import ops_by_kind

    groups = {**ops_by_kind(), "composites": list(COMPOSITE_OPS), "blocks": list(blocks)}
    return "ops: " + "; ".join(f"{kind}: {', '.join(names)}" for kind, names in groups.items() if names)


def line_of(container, key, default: int | None = None) -> int | None:
    if isinstance(container, (LDict, LList)):
        return container.line_of(key)
    return default


def check_keys(data: Mapping, allowed, what: str, file: str) -> None:
    for key in data:
        if key not in allowed:
            raise SpecError(
                f"unknown key {shown(key)} in {what}{did_you_mean(key, allowed)}", file=file, line=line_of(data, key)
            )


def kind_of(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {shown(value)}"


def containers(data) -> tuple[set[int], set[int]]:
    """ids of every mapping and list under `data`, and of those in which no `$param` appears.

    `data` must outlive the sets (a Compiler keeps it), so no other object can take one of the ids.
    """
    seen: dict[int, bool] = {}  # a YAML alias shares one object between places: visit it once

    def visit(node) -> bool:
        if isinstance(node, str):
            return node.startswith("$")
        if not isinstance(node, (dict, list)):
            return False
        if id(node) in seen:
            return seen[id(node)]
        mentions = False
        for item in node.values() if isinstance(node, dict) else node:
            mentions = visit(item) or mentions
        seen[id(node)] = mentions
        return mentions

    try:
        visit(data)
    except RecursionError:  # YAML aliases that nest too deep: compile nothing ahead, substitute everything
        return set(), set()
    return set(seen), {key for key, mentions in seen.items() if not mentions}


def check_size(value, what: str) -> None:
    """Refuse a value from outside the file (a `--set` or `params=` value) that would expand to more
    than MAX_SPEC_NODES items: a YAML alias bomb is small to write and huge once expanded, and the
    file's own data is guarded by compiling each shared container once, which such a value is not."""
    sizes: dict[int, int] = {}  # id -> expanded size; -1 while being counted (a value holding itself)

    def size(node) -> int:
        if not isinstance(node, (dict, list, tuple)):
            return 1
        known = sizes.get(id(node))
        if known is not None:
            if known < 0:
                raise SpecError(f"{what} holds itself")
            return known
        sizes[id(node)] = -1
        total = 1 + sum(size(item) for item in (node.values() if isinstance(node, dict) else node))
        sizes[id(node)] = total = min(total, MAX_SPEC_NODES + 1)  # past the limit, the count is enough
        return total

    try:
        total = size(value)
    except RecursionError:
        raise SpecError(f"{what} is nested too deeply") from None
    if total > MAX_SPEC_NODES:
        raise SpecError(f"{what} expands to more than {MAX_SPEC_NODES:,} values (YAML aliases?)")


# ---- templates: what a layer compiles to ----------------------------------------------


class _Fixed:
    """A layer that names no parameter: its Node, made when compiled and shared by every build."""

    __slots__ = ("node", "inner", "line")

    def __init__(self, node: Node, inner: int, line: int | None) -> None:
        self.node, self.inner, self.line = node, inner, line  # inner: layers under it, for the limit

    def build(self, b: Builder, scope: Scope, path: SpecPath) -> Node:
        if self.inner:
            b.grow(self.inner, self.line, path)
        return self.node


class _Failing:
    """A layer written wrongly: its error, raised where a build reaches it."""

    __slots__ = ("error", "line", "op")

    def __init__(self, error: SpecError, line: int | None, op: str | None) -> None:
        self.error, self.line, self.op = error, line, op

    def build(self, b: Builder, scope: Scope, path: SpecPath) -> Node:
        raise self.error.located(file=b.file, line=self.line, path=spell(path), op=self.op)


class _Leaf:
    """A leaf op whose arguments (or name) come from parameters: filled in and checked per build."""

    __slots__ = ("cls", "op", "line", "where", "written", "extra", "fill", "error", "checks")

    def __init__(self, cls: type[Node], line: int | None, where: Where, written: dict, extra: tuple[Field, ...],
                 fill: tuple[Field, ...], error: SpecError | None, checks: tuple[str, ...]) -> None:
        self.cls, self.op, self.line, self.where = cls, cls.OP, line, where
        self.written = written  # the fields given as they are (checked when compiled, unless in checks)
        self.extra, self.fill = extra, fill  # name / trainable, and arguments, still to substitute
        self.error = error  # a mistake in how the arguments are written: raised once they are substituted
        self.checks = checks  # the fields to check per build (substituted, or written wrongly), in order

    def build(self, b: Builder, scope: Scope, path: SpecPath) -> Node:
        extra = b.fields(self.extra, scope) if self.extra else {}
        try:
            filled = b.fields(self.fill, scope) if self.fill else {}
            if self.error is not None:
                raise self.error.located()  # a copy: the kept one carries no traceback (and its frames)
            return self.cls.from_spec({**self.written, **filled, **extra}, self.where, check=self.checks)
        except SpecError as err:
            raise err.located(file=b.file, line=self.line, path=spell(path), op=self.op) from None


class _Call:
    """A block used like an op: its arguments substituted, then the block expanded (once per build
    for the same arguments)."""

    __slots__ = ("name", "line", "where", "written", "args", "extra", "fixed_extra")

    def __init__(self, name: str, where: Where, written, args: tuple[Field, ...] | None,
                 extra: tuple[Field, ...]) -> None:
        self.name, self.line, self.where, self.written = name, where.line, where, written
        self.args, self.extra = args, extra  # args None: not a mapping as written, substituted whole
        # name / trainable as written (the usual case): the same mapping serves every build
        self.fixed_extra = {f[0]: f[2] for f in extra} if all(f[1] == LITERAL for f in extra) else None

    def build(self, b: Builder, scope: Scope, path: SpecPath) -> Node:
        extra = self.fixed_extra
        if extra is None:
            extra = b.fields(self.extra, scope)
        try:
            if self.args is None:
                args = b.substitute(self.written, scope, self.line)
            else:
                args = b.fields(self.args, scope)
            return b.call(self.name, self.written, args, extra, self.where, path)
        except SpecError as err:
            raise err.located(file=b.file, line=self.line, path=spell(path), op=self.name) from None


class _Composite:
    """sequential, gate, concat, residual or repeat holding something to substitute: its layer lists
    (and repeat's times) built per build."""

    __slots__ = ("cls", "op", "line", "where", "lists", "times", "extra")

    def __init__(self, cls: type[Node], where: Where, lists: dict[str, Any], times: Field | None,
                 extra: tuple[Field, ...]) -> None:
        self.cls, self.op, self.line, self.where = cls, cls.OP, where.line, where
        self.lists = lists  # field -> its list template, or (for concat's branches) a tuple of them
        self.times, self.extra = times, extra

    def build(self, b: Builder, scope: Scope, path: SpecPath) -> Node:
        extra = b.fields(self.extra, scope) if self.extra else {}
        try:
            args: dict[str, Any] = {}
            if self.times is not None:
                args["times"] = _times(b.fields((self.times,), scope)["times"], self.times[3])
            for key, lists in self.lists.items():
                if key == "branches":
                    args[key] = tuple(t.build(b, scope, ((path, ".concat"), i)) for i, t in enumerate(lists))
                else:
                    args[key] = lists.build(b, scope, (path, _PARTS[self.op, key]))
            return self.cls.from_spec({**args, **extra}, self.where, check=extra)  # the lists are built valid
        except SpecError as err:
            raise err.located(file=b.file, line=self.line, path=spell(path), op=self.op) from None


class _Late:
    """A layer whose whole argument is a `$param` (or a list holding some): compiled per build, once substituted."""

    __slots__ = ("op", "args", "line", "extra")

    def __init__(self, op: str, args, line: int | None, extra: tuple[Field, ...]) -> None:
        self.op, self.args, self.line, self.extra = op, args, line, extra

    def build(self, b: Builder, scope: Scope, path: SpecPath) -> Node:
        extra = b.fields(self.extra, scope) if self.extra else {}
        try:
            args = b.substitute(self.args, scope, self.line)
        except SpecError as err:
            raise err.located(file=b.file, line=self.line, path=spell(path), op=self.op) from None
        literal = tuple((key, LITERAL, value, self.line) for key, value in extra.items())
        return b.compiler.op(self.op, args, False, self.line, literal).build(b, None, path)


class _List:
    """A list of layers; `- $param` items are spliced in per build."""

    __slots__ = ("items", "line", "nodes", "size")

    def __init__(self, items: list, line: int | None) -> None:
        self.items, self.line = tuple(items), line  # templates, and (param, line) for `- $param`
        fixed = all(isinstance(t, _Fixed) for t in items)
        self.nodes = tuple(t.node for t in items) if fixed else None  # every build's, if all are fixed
        # the layers written here, counted once per build (with those under them, if all are fixed)
        self.size = sum(1 + t.inner for t in items) if fixed else sum(not isinstance(t, tuple) for t in items)

    def build(self, b: Builder, scope: Scope, path: SpecPath) -> tuple[Node, ...]:
        b.grow(self.size, self.line, path)
        if self.nodes is not None:
            return self.nodes
        nodes: list[Node] = []
        for t in self.items:
            if t.__class__ is tuple:  # `- $param`: a list is spliced in, as it is
                param, line = t
                spliced = b.compiler.spliced(b.value("$" + param, scope, line), line)
                b.grow(len(spliced), line, (path, len(nodes)))
                for template in spliced:
                    nodes.append(template.build(b, None, (path, len(nodes))))
            else:
                nodes.append(t.build(b, scope, (path, len(nodes))))
        return tuple(nodes)


class _ListRef:
    """A list of layers given as a `$param`: compiled from its value per build."""

    __slots__ = ("param", "line")

    def __init__(self, param: str, line: int | None) -> None:
        self.param, self.line = param, line

    def build(self, b: Builder, scope: Scope, path: SpecPath) -> tuple[Node, ...]:
        value = b.value("$" + self.param, scope, self.line)
        return b.compiler.layers(value, False, self.line).build(b, None, path)


class _NotLayers:
    """Something that should be a list of layers and is not."""

    __slots__ = ("kind", "line")

    def __init__(self, kind: str, line: int | None) -> None:
        self.kind, self.line = kind, line

    def build(self, b: Builder, scope: Scope, path: SpecPath) -> tuple[Node, ...]:
        raise b.error(f"{spell(path)} must be a list of layers, got {self.kind}", self.line)


class _Block:
    """A block's parameters, defaults and compiled layers."""

    __slots__ = ("params", "defaults", "known", "settable", "layers")

    def __init__(self, block: Mapping, compiler: Compiler) -> None:
        self.params, self.defaults = block.get("params") or [], block.get("defaults") or {}
        self.known = [*self.params, *self.defaults]  # the parameters a call may set
        self.settable = frozenset(self.known)
        self.layers = compiler.layers(block["layers"], True, line_of(block, "layers"))


# where each composite's layer lists stand in a spec path
_PARTS = {("sequential", "layers"): ".sequential", ("gate", "layers"): ".gate", ("auxiliary", "layers"): ".auxiliary",
          ("residual", "body"): ".residual.body", ("residual", "shortcut"): ".residual.shortcut",
          ("repeat", "layers"): ".repeat.layers"}


def _times(times, line: int | None) -> int:
    if isinstance(times, Deferred):
        raise SpecError("repeat times cannot depend on in_channels (only a leaf op's arguments can)", line=line)
    if not isinstance(times, int) or isinstance(times, bool) or times < 0:
        raise SpecError(f"repeat times must be a non-negative integer, got {shown(times)}", line=line)
    return times


# ---- compiling ------------------------------------------------------------------------


class Compiler:
    """Compiles a file's layer data into templates, keeping those of the data the file holds."""

    def __init__(self, file: str, data, blocks: Mapping[str, LDict],
                 imported: Mapping[str, Compiler] | None = None) -> None:
        self.file = file
        self.data = data  # the parsed file, kept alive: no other object can take the id of a container in it
        self.blocks = blocks
        self.imported = imported or {}  # block name -> the compiler of the file (`import:`) that defines it
        # ids of the containers the file holds (their templates are kept), and of those that mention no parameter
        self.owned, self.plain = containers(data)
        # (layer, layers or spliced, id of the data or the string itself, line, whether `$params` are
        # looked up) -> template; ("block", name) -> _Block
        self.kept: dict[tuple | None, Any] = {}

    def _key(self, what: str, data, scoped: bool, line: int | None) -> tuple | None:
        """The key a template is kept under, or None for data the file does not hold (compiled per use)."""
        if isinstance(data, str):
            return (what, data, line, scoped)
        if id(data) in self.owned:
            return (what, id(data), line, scoped)
        return None

    def how(self, value, scoped: bool) -> int:
        """How a field written as `value` gets its value in a build."""
        if not scoped:
            return LITERAL
        if isinstance(value, str):
            return (EXPR if is_expression(value) else REF) if value.startswith("$") else LITERAL
        if isinstance(value, (dict, list)) and id(value) not in self.plain:
            return NESTED
        return LITERAL

    def fields(self, data: Mapping, keys, scoped: bool, line: int | None) -> tuple[Field, ...]:
        return tuple(
            (key, how, data[key][1:] if how == REF else data[key], line_of(data, key, line))
            for key in keys
            for how in (self.how(data[key], scoped),)
        )

    def _compiled(self, what: str, data, scoped: bool, line: int | None, compile: Callable):
        key = self._key(what, data, scoped, line)
        template = self.kept.get(key)
        if template is None:
            template = compile(data, scoped, line)
            if key is not None:
                self.kept[key] = template
        return template

    def layers(self, data, scoped: bool, line: int | None):
        """A list of layers (a `$param` standing for one, when scoped)."""
        return self._compiled("layers", data, scoped, line, self._layers)

    def _layers(self, data, scoped: bool, line: int | None):
        if scoped and isinstance(data, str) and data.startswith("$"):
            return _ListRef(data[1:], line)
        if not isinstance(data, list):
            return _NotLayers(kind_of(data), line)
        lines = data.lines if isinstance(data, LList) else ()
        items: list = []
        for i, item in enumerate(data):
            item_line = lines[i] if i < len(lines) else line
            if scoped and isinstance(item, str) and item.startswith("$"):
                items.append((item[1:], item_line))
            else:
                items.append(self.layer(item, scoped, item_line))
        return _List(items, line)

    def layer(self, item, scoped: bool, line: int | None):
        return self._compiled("layer", item, scoped, line, self._layer)

    def spliced(self, value, line: int | None) -> tuple:
        """The layers a `- $param` item stands for: each of a list's items, or the value as one layer."""
        if not isinstance(value, list):
            return (self.layer(value, False, line),)
        return self._compiled("spliced", value, False, line, self._spliced)

    def _spliced(self, value: list, scoped: bool, line: int | None) -> tuple:
        return tuple(self.layer(item, scoped, line_of(value, j, line)) for j, item in enumerate(value))

    def owner(self, name: str) -> Compiler:
        """The compiler of the file that defines block `name`: this one, or an imported file's."""
        return self if name in self.blocks else self.imported[name]

    def block(self, name: str) -> _Block:
        block = self.kept.get(("block", name))
        if block is None:
            block = self.kept["block", name] = _Block(self.blocks[name], self)
        return block

    def _layer(self, item, scoped: bool, line: int | None):
        if isinstance(item, str):
            return self.op(item, None, scoped, line, ())
        if not isinstance(item, dict):
            return _Failing(SpecError(f"a layer is an op name or a mapping, got {kind_of(item)}"), line, None)
        ops = [key for key in item if key not in LAYER_KEYS]
        if len(ops) != 1:
            reason = f"a layer is one op key (plus optional name: and trainable:), got {', '.join(map(str, ops)) or 'none'}"
            return _Failing(SpecError(reason), line, None)
        extra = self.fields(item, [k for k in LAYER_KEYS if k in item], scoped, line)
        return self.op(ops[0], item[ops[0]], scoped, line, extra)

    def op(self, op, args, scoped: bool, line: int | None, extra: tuple[Field, ...]):
        """The template of one layer: `op` with its `args` as written, and its name / trainable."""
        if op in LEAF_OPS:
            return self.leaf(LEAF_OPS[op], args, scoped, line, extra)
        if op in self.blocks or op in self.imported:
            if isinstance(args, dict):
                return _Call(op, Where(self.file, line), args, self.fields(args, args, scoped, line), extra)
            return _Call(op, Where(self.file, line), args, None, extra)
        if op in COMPOSITE_OPS:
            if op not in LIST_OPS and scoped and isinstance(args, str) and args.startswith("$"):
                return _Late(op, args, line, extra)
            return self.composite(op, args, scoped, line, extra)
        known = [*LEAF_OPS, *COMPOSITE_OPS, *self.blocks, *self.imported]
        return _Failing(SpecError(f"unknown op {shown(op)}{did_you_mean(op, known)}; {known_ops({**self.blocks, **self.imported})}"), line, str(op))

    def leaf(self, cls: type[Node], args, scoped: bool, line: int | None, extra: tuple[Field, ...]):
        op = cls.OP
        if args is not None and not isinstance(args, dict):
            if self.how(args, scoped) != LITERAL:  # substituted whole, then compiled
                return _Late(op, args, line, extra)
            return _Failing(SpecError(f"arguments must be a mapping, got {kind_of(args)}"), line, op)
        args = {} if args is None else args
        info = class_info(cls)
        fill = self.fields(args, args, scoped, line)
        error = None
        for key in args:
            if key not in info.arguments:
                error = SpecError(f"unknown argument {shown(key)}{did_you_mean(key, info.arguments)}",
                                  line=line_of(args, key, line))
                break
        else:
            missing = [key for key in info.required if key not in args]
            if missing:
                error = SpecError(f"missing argument {missing[0]}")
        written: dict[str, Any] = {}
        checks = []
        for key, how, value, _ in (*fill, *extra):  # in the order Node.from_spec checks them
            if how != LITERAL:
                checks.append(key)
                continue
            rule = info.rules.get(key)
            if rule is not None and value is not rule[0] and not rule[1](value):
                checks.append(key)  # written wrongly: raised by the check, in its turn, showing it as written
                written[key] = value
            else:
                written[key] = tuple(value) if isinstance(value, list) else value
        fill = tuple(f for f in fill if f[1] != LITERAL)
        extra = tuple(f for f in extra if f[1] != LITERAL)
        template = _Leaf(cls, line, Where(self.file, line), written, extra, fill, error, tuple(checks))
        if fill or extra or error is not None or checks:
            return template
        return _Fixed(template.build(_COMPILING, None, None), 0, line)

    def composite(self, op: str, args, scoped: bool, line: int | None, extra: tuple[Field, ...]):
        cls: type[Node] = {
            "sequential": Sequential, "gate": Gate, "concat": Concat, "residual": Residual, "repeat": Repeat,
            "auxiliary": Auxiliary,
        }[op]
        lists: dict[str, Any] = {}
        times = None
        try:
            if op in LIST_OPS:
                lists["layers"] = self.layers(args, scoped, line)
            elif op == "concat":
                if not isinstance(args, list) or not args:
                    raise SpecError("concat takes a non-empty list of branches, each a list of layers")
                lists["branches"] = tuple(self.layers(b, scoped, line_of(args, i, line)) for i, b in enumerate(args))
            elif op == "residual":
                if not isinstance(args, dict) or "body" not in args:
                    raise SpecError("residual takes a mapping with body: [layers] and optional shortcut: [layers]")
                check_keys(args, ("body", "shortcut"), "residual", self.file)
                lists["body"] = self.layers(args["body"], scoped, line_of(args, "body", line))
                shortcut = args.get("shortcut") or []
                lists["shortcut"] = self.layers(shortcut, scoped, line_of(args, "shortcut", line))
            else:
                if not isinstance(args, dict) or "times" not in args or "layers" not in args:
                    raise SpecError("repeat takes a mapping with times: N and layers: [layers]")
                check_keys(args, ("times", "layers", "inline"), "repeat", self.file)
                times = self.fields(args, ("times",), scoped, line)[0]
                if "inline" in args:
                    extra = (*extra, *self.fields(args, ("inline",), scoped, line))
                if times[1] == LITERAL:
                    _times(times[2], times[3])
                lists["layers"] = self.layers(args["layers"], scoped, line_of(args, "layers", line))
        except SpecError as err:
            return _Failing(err, line, op)
        template = _Composite(cls, Where(self.file, line), lists, times, extra)
        parts = [t for value in lists.values() for t in (value if isinstance(value, tuple) else (value,))]
        if all(isinstance(t, _List) and t.nodes is not None for t in parts) and (times is None or times[1] == LITERAL) \
                and all(f[1] == LITERAL for f in extra):
            try:
                node = template.build(_COMPILING, None, None)
            except SpecError as err:
                return _Failing(err, line, op)
            return _Fixed(node, sum(t.size for t in parts), line)
        return template


# ---- building -------------------------------------------------------------------------


class Builder:
    """One build of a model from its file's templates: substitutes `$params`, expands blocks,
    and counts the layers written out against the limit."""

    def __init__(self, compiler: Compiler) -> None:
        self.compiler = compiler
        self.file = compiler.file
        self.count = 0  # layers built, shared ones counted wherever they stand
        self.calls: list[tuple[Compiler, str]] = []  # the blocks being expanded, outermost first
        # (file, block, its arguments) -> (arguments, layers, count, what in_channels stands for); each entry holds what its key names
        # by id, so that no other object can take the id
        self.expansions: dict[tuple, tuple[Any, tuple[Node, ...], int, BlockInput]] = {}

    def error(self, reason: str, line: int | None, path: SpecPath = None, op: str | None = None) -> SpecError:
        return SpecError(reason, file=self.file, line=line, path=spell(path) if path else None, op=op)

    def grow(self, layers: int, line: int | None, path: SpecPath) -> None:
        self.count += layers
        if self.count > MAX_SPEC_NODES:
            raise self.error(f"the spec expands to more than {MAX_SPEC_NODES:,} layers", line, path)

    def layers(self, data, scope: Scope, line: int | None, path: SpecPath) -> tuple[Node, ...]:
        return self.compiler.layers(data, scope is not None, line).build(self, scope, path)

    def fields(self, fields: tuple[Field, ...], scope: Scope) -> dict[str, Any]:
        """Each field's value in this build, in order (as written, a `$param`'s value, or substituted)."""
        values = {}
        for key, how, data, line in fields:
            if how == REF:
                try:
                    values[key] = scope[data]  # type: ignore[index]
                except KeyError:
                    raise self.unknown("$" + data, scope, line) from None  # type: ignore[arg-type]
                if isinstance(values[key], BlockInput):
                    values[key] = Deferred(None, {}, values[key])
            elif how == NESTED:
                values[key] = self.substitute(data, scope, line)
            elif how == EXPR:
                values[key] = self.expression(data, scope, line)
            else:
                values[key] = data
        return values

    def substitute(self, data, scope: Scope, line: int | None, done: dict[int, Any] | None = None):
        """`data` with every `$param` replaced by its value from scope (a copy where any is).

        `done` maps containers already copied in this call to their copies: a YAML alias
        shares one object between many places, and copying it each time could take forever.
        """
        if scope is None:
            return data
        if isinstance(data, str):
            return self.value(data, scope, line) if data.startswith("$") else data
        if id(data) in self.compiler.plain:
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
                item_line = line_of(data, i, line)
                if isinstance(item, str) and item.startswith("$") and isinstance(scope.get(item[1:]), list):
                    spliced = scope[item[1:]]
                    items.extend(spliced)
                    items.lines.extend(line_of(spliced, j, item_line) for j in range(len(spliced)))
                else:
                    items.append(self.substitute(item, scope, item_line, done))
                    items.lines.append(item_line)
            return items
        return data

    def value(self, reference: str, scope: Scope, line: int | None):
        if scope is None:
            return reference
        if is_expression(reference):
            return self.expression(reference, scope, line)
        if reference[1:] not in scope:
            raise self.unknown(reference, scope, line)
        value = scope[reference[1:]]
        return Deferred(None, {}, value) if isinstance(value, BlockInput) else value

    def expression(self, written: str, scope: Scope, line: int | None):
        """A `${...}`'s value in this scope (a Deferred if it reads in_channels)."""
        try:
            return evaluate(written, scope or {})
        except SpecError as err:
            raise err.located(file=self.file, line=line) from None

    def unknown(self, reference: str, scope: Mapping[str, Any], line: int | None) -> SpecError:
        return self.error(f"unknown parameter {reference}{did_you_mean(reference[1:], scope, '$')}", line)

    def call(self, name: str, written, args, extra: dict, where: Where, path: SpecPath) -> Sequential:
        """A block's layers for these arguments, as a Sequential written at `where`."""
        line = where.line
        owner = self.compiler.owner(name)
        if len(self.calls) >= MAX_NESTING:
            raise SpecError(f"blocks are nested more than {MAX_NESTING} deep")
        if (owner, name) in self.calls:
            chain = " -> ".join(called for _, called in (*self.calls[self.calls.index((owner, name)):], (owner, name)))
            raise SpecError(f"block {shown(name)} calls itself ({chain})")
        # The same block with the same arguments builds the same layers: build them once per
        # model and share them, as a repeat's copies are (GoogLeNet's units, ResNet's stages).
        args = {} if args is None else args
        if not isinstance(args, dict):
            raise SpecError(f"arguments of block {shown(name)} must be a mapping, got {kind_of(args)}")
        key = (owner, name, *[(k, v.__class__, v if v.__class__ in _PLAIN else id(v)) for k, v in args.items()])
        known = self.expansions.get(key)
        if known is None:
            known = self.expansions[key] = (args, *self._expand(owner, name, written, args, line, path))
        else:
            self.grow(known[2], line, path)  # the limit on layers counts each place a shared layer stands
        return Sequential.from_spec({"layers": known[1], "block": name, "block_input": known[3], **extra}, where,
                                    check=extra)

    def _expand(self, owner: Compiler, name: str, written, args: dict, line: int | None,
                path: SpecPath) -> tuple[tuple[Node, ...], int, BlockInput]:
        """A block's layers for these arguments, how many layers were built, and what `in_channels`
        stands for in them."""
        block = owner.block(name)
        for key in args:
            if key not in block.settable:
                raise SpecError(f"block {shown(name)} has no parameter {shown(key)}{did_you_mean(key, block.known)}",
                                line=line_of(written if isinstance(written, dict) else args, key, line))
        missing = [p for p in block.params if p not in args]
        if missing:
            raise SpecError(f"block {shown(name)} needs {', '.join(missing)}")
        # a block of another file (`import:`) is built by that file's compiler, its errors located there
        builder = self if owner is self.compiler else self.sharing(owner)
        self.calls.append((owner, name))
        start = self.count
        block_input = BlockInput()
        try:
            built = block.layers.build(builder, {**block.defaults, **args, IN_CHANNELS: block_input},
                                       (path, "." + name))
        finally:
            self.calls.pop()
            self.count = builder.count
        return built, self.count - start, block_input

    def sharing(self, compiler: Compiler) -> Builder:
        """A builder for another file's blocks that counts against this build's limit."""
        builder = Builder(compiler)
        builder.count, builder.calls, builder.expansions = self.count, self.calls, self.expansions
        return builder


class _Compiling(Builder):
    """What builds a fixed layer while compiling: no parameters, no limit (the builds count it)."""

    def __init__(self) -> None:
        self.file = None  # type: ignore[assignment]

    def grow(self, layers: int, line: int | None, path: SpecPath) -> None:
        pass


_COMPILING = _Compiling()
