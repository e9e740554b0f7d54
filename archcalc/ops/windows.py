"""Ops that slide a window over a C x H x W map: conv2d, max / average pooling, adaptive pooling."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

from archcalc.errors import SpecError
from archcalc.ops import common
from archcalc.ops.common import Bins, Cost, Line, check_in, new, output_size, spatial, subpixel, times
from archcalc.spec import AdaptiveAvgPool2d, AvgPool2d, Conv2d, IntPair, MaxPool2d, pair

if TYPE_CHECKING:
    from fractions import Fraction


def conv2d(layer: Conv2d, shape) -> Cost:
    c, h, w = spatial(shape, "conv2d")
    check_in(layer.in_channels, c, "in_channels")
    g, out_channels = layer.groups, layer.out_channels
    if c % g or out_channels % g:
        raise SpecError(f"groups={g} must divide both in_channels ({c}) and out_channels ({out_channels})")
    (kh, kw), (sh, sw), (dh, dw) = pair(layer.kernel_size), pair(layer.stride), pair(layer.dilation)
    padding = layer.padding
    if padding == "same":
        if sh != 1 or sw != 1:
            raise SpecError("padding='same' needs stride 1 (as in torch)")
        oh, ow = h, w
    else:
        ph, pw = (0, 0) if isinstance(padding, str) else pair(padding)  # "valid"
        oh, ow = output_size(h, kh, sh, ph, dh), output_size(w, kw, sw, pw, dw)
    weights = out_channels * (c // g) * kh * kw
    macs = weights * oh * ow
    window = (dh * (kh - 1) + 1, dw * (kw - 1) + 1, sh, sw)
    return new(Cost, ((out_channels, oh, ow), weights + (out_channels if layer.bias else 0), macs, macs, window))


def _pool(layer: MaxPool2d | AvgPool2d, shape, dilation: IntPair) -> Cost:
    c, h, w = spatial(shape, layer.OP)
    (kh, kw), (ph, pw), (dh, dw) = pair(layer.kernel_size), pair(layer.padding), pair(dilation)
    # torch's pool2d_shape_check: kernel // 2 >= padding, on the kernel before dilation
    for p, k in ((ph, kh), (pw, kw)):
        if 2 * p > k:
            raise SpecError(f"padding {p} is more than half the kernel {k} (torch refuses this)")
    sh, sw = pair(layer.kernel_size if layer.stride is None else layer.stride)
    ceil = layer.ceil_mode
    out = (c, output_size(h, kh, sh, ph, dh, ceil), output_size(w, kw, sw, pw, dw, ceil))
    return new(Cost, (out, 0, 0, 0, (dh * (kh - 1) + 1, dw * (kw - 1) + 1, sh, sw)))


def maxpool2d(layer: MaxPool2d, shape) -> Cost:
    return _pool(layer, shape, layer.dilation)


def avgpool2d(layer: AvgPool2d, shape) -> Cost:
    return _pool(layer, shape, 1)


def _adaptive_window(size: int, out: int) -> tuple[int | Fraction, int | Fraction]:
    """Window and step of torch's adaptive pooling (bin i spans floor(i*n/o) to ceil((i+1)*n/o)), for
    the receptive field, in closed form over all bins.

    With n = q*o + r, every bin is q wide when r = 0; else q + 1, or q + 2 when a bin straddles two
    boundaries, which happens exactly when r > 1 and r does not divide o. Shrinking (o <= n): the
    widest bin, and the largest step between bins, ceil(n/o). Upsampling (o > n): bins step by 0 or 1
    input pixel, n/o on average; the step is that average (a Fraction: with 1 the field would compound
    through every pool-to-1-and-back, as a squeeze-excitation block does), and the window is widened
    by (o - gcd(n, o))/o of a step, what k bins in a row can straddle beyond k * n/o.
    """
    q, r = divmod(size, out)
    widest = q if r == 0 else q + 1 if r == 1 or out % r == 0 else q + 2
    window: int | Fraction
    step: int | Fraction
    if out <= size:
        window, step = widest, -(-size // out)
    else:
        from fractions import Fraction  # only here: `archcalc table` of most models never loads fractions, decimal

        window, step = subpixel(widest + Fraction(out - math.gcd(size, out), out)), subpixel(Fraction(size, out))
    if common._record is not None:
        common._record.append(Bins(size, out, window, step))
    return window, step


def adaptiveavgpool2d(layer: AdaptiveAvgPool2d, shape) -> Cost:
    c, h, w = spatial(shape, "adaptiveavgpool2d")
    oh, ow = pair(layer.output_size)
    (kh, sh), (kw, sw) = _adaptive_window(h, oh), _adaptive_window(w, ow)
    return new(Cost, ((c, oh, ow), 0, 0, c * h * w, (kh, kw, sh, sw)))


def _hw(value) -> str:
    """`3` for 3 or (3, 3), `3x5` for (3, 5)."""
    if value.__class__ is int:
        return str(value)
    return str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"


def kxk(value) -> str:
    """`3x3` for 3, `3x5` for (3, 5)."""
    return f"{value}x{value}" if value.__class__ is int else f"{value[0]}x{value[1]}"


@lru_cache(maxsize=1024)  # a network repeats a few kernel shapes: conv2d 3x3 p1, 1x1, maxpool2d 3x3 /2 ...
def _window(op: str, kernel, stride, padding, dilation, groups: int, ceil_mode: bool) -> str:
    """`conv2d 11x11 /4 p2`: kernel, then whatever is not the default (stride 1, no padding, ...)."""
    text = f"{op} {kxk(kernel)}"
    if stride != 1 and stride != (1, 1):
        text += f" /{_hw(stride)}"
    if padding != 0 and padding != (0, 0):
        text += f" {padding}" if padding.__class__ is str else f" p{_hw(padding)}"
    if dilation != 1 and dilation != (1, 1):
        text += f" d{_hw(dilation)}"
    if groups != 1:
        text += f" g{groups}"
    return text + " ceil" if ceil_mode else text


KIND = "conv/pool"  # how `unknown op` errors group these ops
HANDLERS = {Conv2d: conv2d, MaxPool2d: maxpool2d, AvgPool2d: avgpool2d, AdaptiveAvgPool2d: adaptiveavgpool2d}
DESCRIPTIONS = {
    Conv2d: lambda layer: _window(
        "conv2d", layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.groups, False),
    MaxPool2d: lambda layer: _window("maxpool2d", layer.kernel_size, layer.stride or layer.kernel_size, layer.padding,
                                     layer.dilation, 1, layer.ceil_mode),
    AvgPool2d: lambda layer: _window("avgpool2d", layer.kernel_size, layer.stride or layer.kernel_size, layer.padding,
                                     1, 1, layer.ceil_mode),
    AdaptiveAvgPool2d: lambda layer: f"adaptiveavgpool2d {kxk(layer.output_size)}",
}


def explain_conv2d(layer: Conv2d, shape, cost: Cost) -> list[Line]:
    """Weights per filter (in / groups x kernel), filters, and one multiply-accumulate per weight per output pixel."""
    c, g = shape[0], layer.groups
    (kh, kw), out = pair(layer.kernel_size), cost.output
    per_filter = f"({times(c // g, kh, kw)})"
    grouped = f"groups {g}: each filter sees {c} / {g} = {c // g} input channels" if g != 1 else ""
    lines = []
    if layer.padding == "same":
        lines.append(Line("output H, W", "", out[1], "padding 'same' (stride 1): as the input"))
    bias = f" + {out[0]} bias" if layer.bias else ""
    lines.append(Line("params", f"{times(out[0], per_filter)}{bias}", cost.params, grouped))
    lines.append(Line("MACs", times(out[0], out[1], out[2], per_filter), cost.macs))
    return lines


def _explain_pool(layer: MaxPool2d | AvgPool2d, shape, cost: Cost) -> list[Line]:
    """One window per output position and channel; torch compares or adds inside it, which MACs do not count."""
    (kh, kw), (c, oh, ow) = pair(layer.kernel_size), cost.output
    if isinstance(layer, MaxPool2d):
        what = f"the largest of its {kh}x{kw} inputs"
    else:
        padded = "padding counted" if layer.count_include_pad else "padding not counted"
        what = f"the mean of its {kh}x{kw} inputs ({padded})"
    return [Line("windows", times(c, oh, ow), c * oh * ow, f"one per output value: {what}")]


def explain_adaptiveavgpool2d(layer: AdaptiveAvgPool2d, shape, cost: Cost) -> list[Line]:
    return [Line("fvcore", times(*shape), cost.fvcore, "fvcore counts 1 per input element")]


EXPLANATIONS = {
    Conv2d: explain_conv2d, MaxPool2d: _explain_pool, AvgPool2d: _explain_pool,
    AdaptiveAvgPool2d: explain_adaptiveavgpool2d,
}
