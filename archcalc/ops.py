"""One handler per leaf op, in one table: (spec, input shape) -> Cost.

Shapes here exclude the batch: (C, H, W) for feature maps, (F,) for vectors.
Counting conventions, stated once:
  macs    multiply-accumulates of conv2d and linear only, bias adds not counted
          (torchvision's published "GFLOPS" and the ResNet paper count this way).
  fvcore  what fvcore's FlopCountAnalysis reports: one fused multiply-add is one flop
          for conv/linear, plus batch_norm (2 per element with affine, 1 without, in
          eval mode; 5 / 4 when track_running_stats is false, since batch statistics are
          then computed even in eval mode) and adaptive_avg_pool2d (1 per input element);
          all else is 0.
  torch   what torch.utils.flop_counter.FlopCounterMode reports: 2 x MACs of
          conv/linear (matmul), nothing else.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import Any, Callable, NamedTuple

from archcalc.errors import SpecError
from archcalc.spec import (
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, ChannelPad, Conv2d, Dropout, Flatten, IntPair,
    Linear, LocalResponseNorm, MaxPool2d, Node, ReLU, Sigmoid, Softmax, Tanh, pair,
)

Shape = tuple[int, ...]
Window = tuple[Any, Any, Any, Any]  # effective kernel h, w and stride h, w: ints (Fractions after upsampling)
GLOBAL = "global"  # every output element sees every input position
SUBPIXEL = 2**16  # fractional receptive-field steps (upsampling adaptive pools) are multiples of 1/SUBPIXEL
# Costs are made with tuple.__new__, every field given: a named tuple's own __new__ is Python code,
# and with keywords took a third of a batch norm's handler.
_new = tuple.__new__


class Cost(NamedTuple):
    """What one leaf op produces and costs for one sample."""

    output: Shape
    params: int = 0
    macs: int = 0
    fvcore: int = 0
    window: Window | str | None = None  # how it widens the receptive field

    @property
    def torch(self) -> int:
        return 2 * self.macs


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil_mode: bool = False) -> int:
    """torch's output length for conv and pooling along one axis."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = span // stride + 1 if not ceil_mode else -(-span // stride) + 1
    # torch drops a last window that would start entirely in the right padding
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    # ceil mode accepts a window wider than the padded input when the stride covers it
    # (torch's pooling_output_shape: a 1x2 max pool, ceil_mode, on 1x1 gives 1x1)
    if out < 1:
        raise SpecError(
            f"kernel {dilation * (kernel - 1) + 1} (dilated) is larger than the padded input "
            f"{size + 2 * padding}: output size would be below 1"
        )
    return out


def _spatial(shape: Shape, op: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise SpecError(f"{op} needs a C x H x W input, got a flat vector of {shape[0]} features")
    return shape


def _check_in(given: int | None, actual: int, what: str) -> None:
    if given is not None and given != actual:
        raise SpecError(f"{what} is {given} but the incoming shape has {actual}")


def conv2d(layer: Conv2d, shape: Shape) -> Cost:
    c, h, w = _spatial(shape, "conv2d")
    _check_in(layer.in_channels, c, "in_channels")
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
    return _new(Cost, ((out_channels, oh, ow), weights + (out_channels if layer.bias else 0), macs, macs, window))


def _pool(layer: MaxPool2d | AvgPool2d, shape: Shape, dilation: IntPair) -> Cost:
    c, h, w = _spatial(shape, layer.OP)
    (kh, kw), (ph, pw), (dh, dw) = pair(layer.kernel_size), pair(layer.padding), pair(dilation)
    # torch's pool2d_shape_check: kernel // 2 >= padding, on the kernel before dilation
    for p, k in ((ph, kh), (pw, kw)):
        if 2 * p > k:
            raise SpecError(f"padding {p} is more than half the kernel {k} (torch refuses this)")
    sh, sw = pair(layer.kernel_size if layer.stride is None else layer.stride)
    ceil = layer.ceil_mode
    out = (c, output_size(h, kh, sh, ph, dh, ceil), output_size(w, kw, sw, pw, dw, ceil))
    return _new(Cost, (out, 0, 0, 0, (dh * (kh - 1) + 1, dw * (kw - 1) + 1, sh, sw)))


def maxpool2d(layer: MaxPool2d, shape: Shape) -> Cost:
    return _pool(layer, shape, layer.dilation)


def avgpool2d(layer: AvgPool2d, shape: Shape) -> Cost:
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
    if out <= size:
        return widest, -(-size // out)
    return subpixel(widest + Fraction(out - math.gcd(size, out), out)), subpixel(Fraction(size, out))


def subpixel(value: Fraction) -> Fraction:
    """`value` rounded up to a multiple of 1/SUBPIXEL: the receptive field stays an upper bound, and
    fractions multiplied along a path of upsampling pools keep a small denominator."""
    return Fraction(-(-value.numerator * SUBPIXEL // value.denominator), SUBPIXEL)


def adaptiveavgpool2d(layer: AdaptiveAvgPool2d, shape: Shape) -> Cost:
    c, h, w = _spatial(shape, "adaptiveavgpool2d")
    oh, ow = pair(layer.output_size)
    (kh, sh), (kw, sw) = _adaptive_window(h, oh), _adaptive_window(w, ow)
    return _new(Cost, ((c, oh, ow), 0, 0, c * h * w, (kh, kw, sh, sw)))


def linear(layer: Linear, shape: Shape) -> Cost:
    if len(shape) != 1:
        raise SpecError(f"linear needs a flat input, got {'x'.join(map(str, shape))}: add a flatten before it")
    _check_in(layer.in_features, shape[0], "in_features")
    macs = shape[0] * layer.out_features
    return _new(Cost, ((layer.out_features,), macs + (layer.out_features if layer.bias else 0), macs, macs, GLOBAL))


def batchnorm2d(layer: BatchNorm2d, shape: Shape) -> Cost:
    c, h, w = _spatial(shape, "batchnorm2d")
    _check_in(layer.num_features, c, "num_features")
    # fvcore's batchnorm handle: eval with running stats 2 (affine) / 1 per element; batch
    # statistics (track_running_stats false, even in eval) its norm estimate, 5 / 4
    per_element = (2 if layer.affine else 1) if layer.track_running_stats else (5 if layer.affine else 4)
    return _new(Cost, (shape, 2 * c if layer.affine else 0, 0, c * h * w * per_element, None))


def localresponsenorm(layer: LocalResponseNorm, shape: Shape) -> Cost:
    _spatial(shape, "localresponsenorm")
    return _new(Cost, (shape, 0, 0, 0, None))


def softmax(layer: Softmax, shape: Shape) -> Cost:
    ndim = len(shape) + 1  # with the batch
    if not -ndim <= layer.dim < ndim or layer.dim % ndim != 1:
        raise SpecError(f"softmax over dim {layer.dim} is not supported: archcalc models dim=1 (channels or features)")
    return _new(Cost, (shape, 0, 0, 0, GLOBAL if len(shape) == 1 else None))


def flatten(layer: Flatten, shape: Shape) -> Cost:
    return _new(Cost, ((math.prod(shape),), 0, 0, 0, None))


def channelpad(layer: ChannelPad, shape: Shape) -> Cost:
    c = _spatial(shape, "channelpad")[0]
    if layer.out_channels < c:
        raise SpecError(f"out_channels {layer.out_channels} is fewer than the {c} incoming channels")
    return _new(Cost, ((layer.out_channels, *shape[1:]), 0, 0, 0, None))


def elementwise(layer: Node, shape: Shape) -> Cost:
    return _new(Cost, (shape, 0, 0, 0, None))


Handler = Callable[[Any, Shape], Cost]  # each takes its own Node subclass

HANDLERS: dict[type[Node], Handler] = {
    Conv2d: conv2d,
    MaxPool2d: maxpool2d,
    AvgPool2d: avgpool2d,
    AdaptiveAvgPool2d: adaptiveavgpool2d,
    Linear: linear,
    BatchNorm2d: batchnorm2d,
    LocalResponseNorm: localresponsenorm,
    ReLU: elementwise,
    Sigmoid: elementwise,
    Tanh: elementwise,
    Softmax: softmax,
    Dropout: elementwise,
    Flatten: flatten,
    ChannelPad: channelpad,
}


def _hw(value) -> str:
    """`3` for 3 or (3, 3), `3x5` for (3, 5)."""
    if value.__class__ is int:
        return str(value)
    return str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"


def _kxk(value) -> str:
    return f"{value}x{value}" if value.__class__ is int else f"{value[0]}x{value[1]}"


@lru_cache(maxsize=1024)  # a network repeats a few kernel shapes: conv2d 3x3 p1, 1x1, maxpool2d 3x3 /2 ...
def _window(op: str, kernel, stride, padding, dilation, groups: int, ceil_mode: bool) -> str:
    """`conv2d 11x11 /4 p2`: kernel, then whatever is not the default (stride 1, no padding, ...)."""
    text = f"{op} {_kxk(kernel)}"
    if stride != 1 and stride != (1, 1):
        text += f" /{_hw(stride)}"
    if padding != 0 and padding != (0, 0):
        text += f" {padding}" if padding.__class__ is str else f" p{_hw(padding)}"
    if dilation != 1 and dilation != (1, 1):
        text += f" d{_hw(dilation)}"
    if groups != 1:
        text += f" g{groups}"
    return text + " ceil" if ceil_mode else text


# The op with its key arguments, per op (the bare op name for the rest)
DESCRIPTIONS: dict[type[Node], Callable[[Any], str]] = {
    Conv2d: lambda layer: _window(
        "conv2d", layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.groups, False),
    MaxPool2d: lambda layer: _window("maxpool2d", layer.kernel_size, layer.stride or layer.kernel_size, layer.padding,
                                     layer.dilation, 1, layer.ceil_mode),
    AvgPool2d: lambda layer: _window("avgpool2d", layer.kernel_size, layer.stride or layer.kernel_size, layer.padding,
                                     1, 1, layer.ceil_mode),
    AdaptiveAvgPool2d: lambda layer: f"adaptiveavgpool2d {_kxk(layer.output_size)}",
    Linear: lambda layer: f"linear {layer.out_features}",
    LocalResponseNorm: lambda layer: f"localresponsenorm size {layer.size}",
    Dropout: lambda layer: f"dropout p={layer.p}",
    ChannelPad: lambda layer: f"channelpad to {layer.out_channels}",
}


def describe(layer: Node) -> str:
    """The op with its key arguments, e.g. `conv2d 11x11 /4 p1`."""
    details = DESCRIPTIONS.get(layer.__class__)
    return details(layer) if details else layer.OP
