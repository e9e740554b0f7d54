"""Ops on token sequences (N tokens of width D): making them from a map, class token, position
embedding, and reading one token or their mean."""

from __future__ import annotations

from archcalc.errors import SpecError
from archcalc.ops.common import GLOBAL, Cost, Line, describe_shape, new, spatial, times
from archcalc.spec import ClassToken, MeanTokens, PositionEmbedding, SelectToken, Tokens


def sequence(shape, op: str) -> tuple[int, int]:
    """An N x D token input, or the error that says what came instead."""
    if len(shape) != 2:
        raise SpecError(f"{op} needs tokens (N x D), got {describe_shape(shape)}: add a `tokens` layer before it")
    return shape  # type: ignore[return-value]


def tokens(layer: Tokens, shape) -> Cost:
    c, h, w = spatial(shape, "tokens")
    return new(Cost, ((h * w, c), 0, 0, 0, None))


def classtoken(layer: ClassToken, shape) -> Cost:
    n, d = sequence(shape, "classtoken")
    return new(Cost, ((n + 1, d), d, 0, 0, None))


def positionembedding(layer: PositionEmbedding, shape) -> Cost:
    n, d = sequence(shape, "positionembedding")
    return new(Cost, (shape, n * d, 0, 0, None))


def selecttoken(layer: SelectToken, shape) -> Cost:
    n, d = sequence(shape, "selecttoken")
    if not -n <= layer.index < n:
        raise SpecError(f"token index {layer.index} is out of range for {n} tokens")
    return new(Cost, ((d,), 0, 0, 0, None))


def meantokens(layer: MeanTokens, shape) -> Cost:
    n, d = sequence(shape, "meantokens")
    return new(Cost, ((d,), 0, 0, 0, GLOBAL))


KIND = "tokens"  # how `unknown op` errors group these ops
HANDLERS = {
    Tokens: tokens, ClassToken: classtoken, PositionEmbedding: positionembedding, SelectToken: selecttoken,
    MeanTokens: meantokens,
}
DESCRIPTIONS = {SelectToken: lambda layer: f"selecttoken {layer.index}"}


def explain_tokens(layer: Tokens, shape, cost: Cost) -> list[Line]:
    c, h, w = shape
    return [Line("tokens N", times(h, w), h * w, f"one per position of the {h}x{w} map, its {c} channels its width D")]


def explain_classtoken(layer: ClassToken, shape, cost: Cost) -> list[Line]:
    n, d = shape
    return [Line("tokens N", f"{n} + 1", n + 1, "the learned class token put first"),
            Line("params", "", cost.params, f"the class token: one vector of D = {d}")]


def explain_positionembedding(layer: PositionEmbedding, shape, cost: Cost) -> list[Line]:
    n, d = shape
    return [Line("params", times(n, d), cost.params, "a learned D-wide vector per token, added to it")]


def explain_selecttoken(layer: SelectToken, shape, cost: Cost) -> list[Line]:
    n, d = shape
    return [Line("output", "", d, f"token {layer.index} of {n}: its D features")]


def explain_meantokens(layer: MeanTokens, shape, cost: Cost) -> list[Line]:
    n, d = shape
    return [Line("output", "", d, f"each of the D features averaged over the {n} tokens (adds: no MACs)")]


EXPLANATIONS = {
    Tokens: explain_tokens, ClassToken: explain_classtoken, PositionEmbedding: explain_positionembedding,
    SelectToken: explain_selecttoken, MeanTokens: explain_meantokens,
}
