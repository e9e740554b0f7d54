"""Ops that keep the shape and cost no MACs: activations, softmax, dropout."""

from __future__ import annotations

from archcalc.errors import SpecError
from archcalc.ops.common import GLOBAL, Cost, new
from archcalc.spec import Dropout, Node, ReLU, Sigmoid, Softmax, Tanh


def elementwise(layer: Node, shape) -> Cost:
    return new(Cost, (shape, 0, 0, 0, None))


def softmax(layer: Softmax, shape) -> Cost:
    ndim = len(shape) + 1  # with the batch
    if not -ndim <= layer.dim < ndim or layer.dim % ndim != 1:
        raise SpecError(f"softmax over dim {layer.dim} is not supported: archcalc models dim=1 (channels or features)")
    return new(Cost, (shape, 0, 0, 0, GLOBAL if len(shape) == 1 else None))


KIND = "activations"  # how `unknown op` errors group these ops
HANDLERS = {ReLU: elementwise, Sigmoid: elementwise, Tanh: elementwise, Softmax: softmax, Dropout: elementwise}
DESCRIPTIONS = {Dropout: lambda layer: f"dropout p={layer.p}"}
