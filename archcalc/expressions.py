"""`${...}` arithmetic in specs, evaluated safely.

An expression is parsed with Python's `ast` and walked by a whitelist: integer and float
literals, the names of the spec's parameters, `+ - * / // %`, comparisons, `and or not`,
`a if cond else b`, and the calls in FUNCTIONS. Nothing else parses: no attribute access, no
subscripts, no power (`**` makes huge numbers in no time), no other calls, no strings. Every
intermediate value is bounded, so no expression can hang or exhaust memory.

`in_channels` stands for the channels (or token width, or features) coming into the block the
expression is written in. The build does not know shapes, so such an expression stays a
`Deferred` value in the spec until the walk (or the torch builder) reaches the layer.
"""

from __future__ import annotations

import ast
import math
from functools import lru_cache
from typing import Any, Callable, Mapping

from archcalc.errors import SpecError, shown

MAX_LENGTH = 500  # characters of one expression
MAX_INT = 10**18  # no intermediate value beyond this: a layer that size is a mistake anyway
IN_CHANNELS = "in_channels"


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's `_make_divisible` (MobileNet, EfficientNet): round to a multiple of divisor, at
    least min_value (default divisor), never more than 10% below value."""
    if divisor < 1:
        raise SpecError(f"make_divisible needs a positive divisor, got {divisor}")
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _round(value: float, digits: int | None = None):
    return round(value) if digits is None else round(value, digits)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "int": int,  # truncates toward zero, as Python's int(): torchvision's int(...)
    "round": _round,  # Python's round: halves to even
    "ceil": math.ceil,
    "floor": math.floor,
    "make_divisible": make_divisible,
}

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}
_SPELLED = {ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
            ast.MatMult: "@", ast.Attribute: "attribute access", ast.Subscript: "subscripts",
            ast.Lambda: "lambda", ast.ListComp: "comprehensions", ast.Starred: "*args"}


class Expression:
    """One parsed, checked `${...}`: evaluate it with the parameters' values."""

    __slots__ = ("text", "tree", "names")

    def __init__(self, text: str, tree: ast.expr, names: frozenset[str]) -> None:
        self.text, self.tree, self.names = text, tree, names

    def __repr__(self) -> str:
        return "${" + self.text + "}"

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        try:
            return _checked(_eval(self.tree, values))
        except SpecError as err:
            raise SpecError(f"${{{shown(self.text)[1:-1]}}}: {err.reason}") from None
        except ZeroDivisionError:
            raise SpecError(f"${{{shown(self.text)[1:-1]}}} divides by zero") from None
        except (OverflowError, ValueError, TypeError) as err:
            raise SpecError(f"${{{shown(self.text)[1:-1]}}} cannot be evaluated: {err}") from None


def is_expression(value: object) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


@lru_cache(maxsize=4096)  # a file repeats its expressions in every build
def parse(written: str) -> Expression:
    """`${in * 6}` parsed and checked against the whitelist, or a SpecError saying what is not allowed."""
    text = written[2:-1].strip()
    if len(text) > MAX_LENGTH:
        raise SpecError(f"an expression is limited to {MAX_LENGTH} characters, got {len(text):,}")
    if not text:
        raise SpecError("${} is empty")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as err:
        raise SpecError(f"${{{shown(text)[1:-1]}}} does not parse: {err.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise SpecError(f"${{{shown(text)[1:-1]}}} is nested too deeply") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        problem = _not_allowed(node, names)
        if problem:
            raise SpecError(f"${{{shown(text)[1:-1]}}}: {problem} is not allowed in an expression")
    return Expression(text, tree, frozenset(names))


def _not_allowed(node: ast.AST, names: set[str]) -> str | None:
    if isinstance(node, ast.Name):
        names.add(node.id)
        return None
    if isinstance(node, ast.Constant):
        value = node.value
        if value.__class__ in (int, float, bool):
            return None if not isinstance(value, int) or abs(value) <= MAX_INT else f"the literal {shown(value)}"
        return f"the literal {shown(value)}"
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            called = shown(node.func.id) if isinstance(node.func, ast.Name) else "anything but a function by name"
            return f"calling {called} (allowed: {', '.join(FUNCTIONS)})"
        if node.keywords:
            return "a keyword argument"
        return None
    if isinstance(node, ast.BinOp):
        return None if type(node.op) in _BINARY else _SPELLED.get(type(node.op), type(node.op).__name__)
    if isinstance(node, ast.Compare):
        bad = [op for op in node.ops if type(op) not in _COMPARE]
        return type(bad[0]).__name__ if bad else None
    if isinstance(node, (ast.UnaryOp, ast.BoolOp, ast.IfExp, ast.Load, ast.USub, ast.UAdd, ast.Not, ast.And,
                         ast.Or, ast.operator, ast.cmpop)):
        return None
    return _SPELLED.get(type(node), type(node).__name__)


def _checked(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise SpecError(f"a value exceeds {MAX_INT:.0e}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_INT:
            raise SpecError(f"a value exceeds {MAX_INT:.0e}")
        return value
    raise SpecError(f"{shown(value)} is not a number")


def _eval(node: ast.expr, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise SpecError(f"unknown name {node.id!r}")
        value = values[node.id]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{node.id} is {shown(value)}, not a number")
        return value
    if isinstance(node, ast.BinOp):
        return _checked(_BINARY[type(node.op)](_eval(node.left, values), _eval(node.right, values)))
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, values)
        return not operand if isinstance(node.op, ast.Not) else -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.BoolOp):
        result = _eval(node.values[0], values)
        for item in node.values[1:]:
            if bool(result) == isinstance(node.op, ast.Or):
                return result
            result = _eval(item, values)
        return result
    if isinstance(node, ast.Compare):
        left = _eval(node.left, values)
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node, values)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, values) else node.orelse, values)
    if isinstance(node, ast.Call):
        args = [_eval(a, values) for a in node.args]
        return _checked(FUNCTIONS[node.func.id](*args))  # type: ignore[attr-defined]
    raise SpecError(f"{type(node).__name__} is not allowed")  # parse() lets nothing else through


class BlockInput:
    """Stands for the input of one block expansion (or the model's) until the walk reaches it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return IN_CHANNELS


class Deferred:
    """An expression that reads `in_channels`: its parameters bound now, evaluated when the walk
    knows the channels coming into the block (`marker`) it was written in."""

    __slots__ = ("expression", "bound", "marker")

    def __init__(self, expression: Expression | None, bound: Mapping[str, Any], marker: BlockInput) -> None:
        self.expression, self.bound, self.marker = expression, bound, marker  # expression None: in_channels itself

    def __repr__(self) -> str:
        return repr(self.expression) if self.expression is not None else "${in_channels}"

    def value(self, inputs: Mapping[BlockInput, int]) -> Any:
        if self.marker not in inputs:
            raise SpecError("in_channels is only known inside a layer list that the walk reaches")
        if self.expression is None:
            return inputs[self.marker]
        values = {name: v.value(inputs) if isinstance(v, Deferred) else v for name, v in self.bound.items()}
        values[IN_CHANNELS] = inputs[self.marker]
        return self.expression.evaluate(values)


def resolve_value(value: Any, inputs: Mapping[BlockInput, int]) -> Any:
    """A field's value with its Deferred evaluated: the value itself, or an item of a pair like [h, w]."""
    if isinstance(value, Deferred):
        return value.value(inputs)
    if isinstance(value, (list, tuple)):
        return tuple(v.value(inputs) if isinstance(v, Deferred) else v for v in value)
    return value


def markers(value: Any) -> tuple[BlockInput, ...]:
    """The blocks whose in_channels a field's value reads, as resolve_value evaluates it: the value
    itself or the items of a pair, and through the parameters each expression was given."""
    if isinstance(value, (list, tuple)):
        return tuple(m for v in value if isinstance(v, Deferred) for m in _markers(v))
    return _markers(value) if isinstance(value, Deferred) else ()


def _markers(deferred: Deferred) -> tuple[BlockInput, ...]:
    bound = (m for v in deferred.bound.values() if isinstance(v, Deferred) for m in _markers(v))
    return (deferred.marker, *bound)


def has_deferred(value: Any) -> bool:
    """Whether a field's value reads in_channels: as a whole, or as an item of a short list ([h, w]);
    deeper or longer data is never looked into (a YAML alias can make a list of a billion items)."""
    if value.__class__ is Deferred:
        return True
    return isinstance(value, (list, tuple)) and len(value) <= 4 and any(v.__class__ is Deferred for v in value)


def evaluate(written: str, scope: Mapping[str, Any]) -> Any:
    """`${...}` in this scope: its value, or a Deferred when it reads in_channels (directly or
    through a parameter that does)."""
    expression = parse(written)
    bound = {}
    deferred_marker = None
    for name in expression.names:
        if name in FUNCTIONS and name not in scope:
            continue
        if name not in scope:
            raise SpecError(f"{written}: unknown name {name!r}" + (
                f"; its parameters: {', '.join(k for k in scope if k != IN_CHANNELS)}" if len(scope) > 1 else ""))
        value = scope[name]
        if isinstance(value, BlockInput):
            deferred_marker = value
            continue
        if isinstance(value, Deferred) and deferred_marker is None:
            deferred_marker = value.marker
        bound[name] = value
    if deferred_marker is not None:
        return Deferred(expression, bound, deferred_marker)
    return expression.evaluate(bound)
