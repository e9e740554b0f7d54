"""Ops that keep the shape and cost no MACs: activations, softmax, dropout, stochastic depth, identity."""

from __future__ import annotations

from archcalc.errors import SpecError
from archcalc.ops.common import GLOBAL, Cost, new
from archcalc.spec import (
    GELU, Dropout, Hardsigmoid, Hardswish, Identity, Node, ReLU, ReLU6, Sigmoid, SiLU, Softmax, StochasticDepth, Tanh,
)


def elementwise(layer: Node, shape) -> Cost:
    return new(Cost, (shape, 0, 0, 0, None))


def softmax(layer: Softmax, shape) -> Cost:
    ndim = len(shape) + 1  # with the batch
    if not -ndim <= layer.dim < ndim or layer.dim % ndim != 1:
        raise SpecError(f"softmax over dim {layer.dim} is not supported: archcalc models dim=1 (channels or features)")
    return new(Cost, (shape, 0, 0, 0, GLOBAL if len(shape) == 1 else None))


KIND = "activations"  # how `unknown op` errors group these ops
HANDLERS = {
    **dict.fromkeys(
        (ReLU, ReLU6, Hardswish, Hardsigmoid, SiLU, GELU, Sigmoid, Tanh, Identity, Dropout, StochasticDepth), elementwise
    ),
    Softmax: softmax,
}
DESCRIPTIONS = {
    Dropout: lambda layer: f"dropout p={layer.p}",
    StochasticDepth: lambda layer: f"stochasticdepth p={layer.p} {layer.mode}",
    GELU: lambda layer: "gelu" if layer.approximate == "none" else f"gelu {layer.approximate}",
}
