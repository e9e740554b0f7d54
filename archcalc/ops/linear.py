"""Fully connected layers."""

from __future__ import annotations

from archcalc.errors import SpecError
from archcalc.ops.common import GLOBAL, Cost, Line, check_in, new, times
from archcalc.spec import Linear


def linear(layer: Linear, shape) -> Cost:
    if len(shape) != 1:
        raise SpecError(f"linear needs a flat input, got {'x'.join(map(str, shape))}: add a flatten before it")
    check_in(layer.in_features, shape[0], "in_features")
    macs = shape[0] * layer.out_features
    return new(Cost, ((layer.out_features,), macs + (layer.out_features if layer.bias else 0), macs, macs, GLOBAL))


KIND = "linear"  # how `unknown op` errors group these ops
HANDLERS = {Linear: linear}
DESCRIPTIONS = {Linear: lambda layer: f"linear {layer.out_features}"}


def explain_linear(layer: Linear, shape, cost: Cost) -> list[Line]:
    n_in, n_out = shape[0], layer.out_features
    return [Line("params", times(n_in, n_out) + (f" + {n_out} bias" if layer.bias else ""), cost.params),
            Line("MACs", times(n_in, n_out), cost.macs)]


EXPLANATIONS = {Linear: explain_linear}
