"""Normalization layers."""

from __future__ import annotations

import math

from archcalc.ops.common import Cost, Line, channels, check_in, new, spatial, times
from archcalc.spec import BatchNorm2d, LayerNorm, LocalResponseNorm


def batchnorm2d(layer: BatchNorm2d, shape) -> Cost:
    c, h, w = spatial(shape, "batchnorm2d")
    check_in(layer.num_features, c, "num_features")
    # fvcore's batchnorm handle: eval with running stats 2 (affine) / 1 per element; batch
    # statistics (track_running_stats false, even in eval) its norm estimate, 5 / 4
    per_element = (2 if layer.affine else 1) if layer.track_running_stats else (5 if layer.affine else 4)
    return new(Cost, (shape, 2 * c if layer.affine else 0, 0, c * h * w * per_element, None))


def layernorm(layer: LayerNorm, shape) -> Cost:
    c = channels(shape)
    check_in(layer.normalized_shape, c, "normalized_shape")
    affine = layer.elementwise_affine
    params = (c + (c if layer.bias else 0)) if affine else 0
    # fvcore's layer_norm handle (norm_flop_counter): 5 per element with a weight, 4 without
    return new(Cost, (shape, params, 0, math.prod(shape) * (5 if affine else 4), None))


def localresponsenorm(layer: LocalResponseNorm, shape) -> Cost:
    spatial(shape, "localresponsenorm")
    return new(Cost, (shape, 0, 0, 0, None))


KIND = "norm"  # how `unknown op` errors group these ops
HANDLERS = {BatchNorm2d: batchnorm2d, LayerNorm: layernorm, LocalResponseNorm: localresponsenorm}
DESCRIPTIONS = {LocalResponseNorm: lambda layer: f"localresponsenorm size {layer.size}"}


def explain_batchnorm2d(layer: BatchNorm2d, shape, cost: Cost) -> list[Line]:
    per_element = cost.fvcore // (shape[0] * shape[1] * shape[2])
    lines = [Line("params", times(2, shape[0]), cost.params, "a scale and a shift per channel")] if layer.affine else []
    return lines + [Line("fvcore", times(*shape, per_element), cost.fvcore, "fvcore's batch-norm estimate per element")]


def explain_layernorm(layer: LayerNorm, shape, cost: Cost) -> list[Line]:
    """Over each position's C (or D) values: a weight and a bias per channel; fvcore's 5 (4) per element."""
    c = channels(shape)
    lines = []
    if layer.elementwise_affine:
        lines.append(Line("params", times(2, c) if layer.bias else str(c), cost.params,
                          "a scale and a shift per channel" if layer.bias else "a scale per channel (no bias)"))
    per_element = 5 if layer.elementwise_affine else 4
    return lines + [Line("fvcore", times(*shape, per_element), cost.fvcore,
                         f"fvcore's layer-norm estimate: {per_element} per element")]


EXPLANATIONS = {BatchNorm2d: explain_batchnorm2d, LayerNorm: explain_layernorm}
