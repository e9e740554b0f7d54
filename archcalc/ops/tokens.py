"""Ops on token sequences (N tokens of width D): making them from a map, class token, position
embedding, and reading one token or their mean."""

from __future__ import annotations

from archcalc.errors import SpecError
from archcalc.ops.common import GLOBAL, Cost, describe_shape, new, spatial
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
