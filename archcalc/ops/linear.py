"""Fully connected layers, over the last dim of a vector, of tokens or of a channels-last map."""

from __future__ import annotations

from archcalc.errors import SpecError
from archcalc.ops.common import GLOBAL, ChannelsLast, Cost, Line, check_in, describe_shape, new, times
from archcalc.spec import Linear


def linear(layer: Linear, shape) -> Cost:
    if len(shape) == 3 and shape.__class__ is not ChannelsLast:
        raise SpecError(
            f"linear acts on the last dim, and a C x H x W map's is W: got {describe_shape(shape)}; "
            "add a flatten (or a permute [0, 2, 3, 1] to channels last) before it"
        )
    check_in(layer.in_features, shape[-1], "in_features")
    out = layer.out_features
    params = shape[-1] * out + (out if layer.bias else 0)
    if len(shape) == 1:  # every output sees every feature
        return new(Cost, ((out,), params, shape[0] * out, shape[0] * out, GLOBAL))
    positions = shape[0] * shape[1] if len(shape) == 3 else shape[0]
    macs = positions * shape[-1] * out
    output = ChannelsLast((*shape[:-1], out)) if len(shape) == 3 else (shape[0], out)
    return new(Cost, (output, params, macs, macs, None))  # each position on its own: widens nothing


KIND = "linear"  # how `unknown op` errors group these ops
HANDLERS = {Linear: linear}
DESCRIPTIONS = {Linear: lambda layer: f"linear {layer.out_features}"}


def explain_linear(layer: Linear, shape, cost: Cost) -> list[Line]:
    n_in, n_out = shape[0], layer.out_features
    return [Line("params", times(n_in, n_out) + (f" + {n_out} bias" if layer.bias else ""), cost.params),
            Line("MACs", times(n_in, n_out), cost.macs)]


EXPLANATIONS = {Linear: explain_linear}
