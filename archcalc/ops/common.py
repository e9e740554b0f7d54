"""What every op handler shares: the Cost it returns, shapes, and torch's output-size rule."""

from __future__ import annotations

from typing import Any, NamedTuple

from archcalc.errors import SpecError

Shape = tuple[int, ...]
Window = tuple[Any, Any, Any, Any]  # effective kernel h, w and stride h, w: ints (Fractions after upsampling)
GLOBAL = "global"  # every output element sees every input position
# Costs are made with tuple.__new__, every field given: a named tuple's own __new__ is Python code,
# and with keywords took a third of a batch norm's handler.
new = tuple.__new__


class ChannelsLast(tuple):
    """A feature map laid out H x W x C (after a permute, as Swin and ConvNeXt's blocks do).

    A plain tuple (C, H, W) is channels-first; tokens are (N, D) and flat vectors (F,).
    """

    __slots__ = ()


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


def describe_shape(shape: Shape) -> str:
    """`64x56x56`, `56x56x64 (channels last)`, `197x768 (tokens)`, `1000 (flat)`."""
    text = "x".join(map(str, shape))
    if shape.__class__ is ChannelsLast:
        return text + " (channels last)"
    return text + {1: " (flat)", 2: " (tokens)"}.get(len(shape), "")


def spatial(shape: Shape, op: str) -> tuple[int, int, int]:
    """A channels-first C x H x W input, or the error that says what came instead."""
    if len(shape) != 3 or shape.__class__ is ChannelsLast:
        raise SpecError(f"{op} needs a C x H x W feature map, got {describe_shape(shape)}")
    return shape  # type: ignore[return-value]


def channels(shape: Shape) -> int:
    """The width an op over channels acts on: C of a map (either layout), D of tokens, F of a vector."""
    return shape[0] if len(shape) == 3 and shape.__class__ is not ChannelsLast else shape[-1]


def check_in(given: int | None, actual: int, what: str) -> None:
    if given is not None and given != actual:
        raise SpecError(f"{what} is {given} but the incoming shape has {actual}")
