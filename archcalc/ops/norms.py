"""Normalization layers."""

from __future__ import annotations

from archcalc.ops.common import Cost, Line, check_in, new, spatial, times
from archcalc.spec import BatchNorm2d, LocalResponseNorm


def batchnorm2d(layer: BatchNorm2d, shape) -> Cost:
    c, h, w = spatial(shape, "batchnorm2d")
    check_in(layer.num_features, c, "num_features")
    # fvcore's batchnorm handle: eval with running stats 2 (affine) / 1 per element; batch
    # statistics (track_running_stats false, even in eval) its norm estimate, 5 / 4
    per_element = (2 if layer.affine else 1) if layer.track_running_stats else (5 if layer.affine else 4)
    return new(Cost, (shape, 2 * c if layer.affine else 0, 0, c * h * w * per_element, None))


def localresponsenorm(layer: LocalResponseNorm, shape) -> Cost:
    spatial(shape, "localresponsenorm")
    return new(Cost, (shape, 0, 0, 0, None))


KIND = "norm"  # how `unknown op` errors group these ops
HANDLERS = {BatchNorm2d: batchnorm2d, LocalResponseNorm: localresponsenorm}
DESCRIPTIONS = {LocalResponseNorm: lambda layer: f"localresponsenorm size {layer.size}"}


def explain_batchnorm2d(layer: BatchNorm2d, shape, cost: Cost) -> list[Line]:
    per_element = cost.fvcore // (shape[0] * shape[1] * shape[2])
    lines = [Line("params", times(2, shape[0]), cost.params, "a scale and a shift per channel")] if layer.affine else []
    return lines + [Line("fvcore", times(*shape, per_element), cost.fvcore, "fvcore's batch-norm estimate per element")]


EXPLANATIONS = {BatchNorm2d: explain_batchnorm2d}
