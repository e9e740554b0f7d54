"""What every op handler shares: the Cost it returns, shapes, and torch's output-size rule."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

from archcalc.errors import SpecError

if TYPE_CHECKING:  # Fractions arise only past an upsampling adaptive pool, which imports fractions itself
    from fractions import Fraction

Shape = tuple[int, ...]
Window = tuple[Any, Any, Any, Any]  # effective kernel h, w and stride h, w: ints (Fractions after upsampling)
GLOBAL = "global"  # every output element sees every input position
SUBPIXEL = 2**16  # fractional receptive-field steps (upsampling adaptive pools) are multiples of 1/SUBPIXEL
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


# What the arithmetic primitives below did, while `recording()`: `archcalc explain` shows it (None: not recording)
_record: list | None = None


class Axis(NamedTuple):
    """One call of `output_size`: its arguments and result, and whether ceil mode dropped a last window."""

    size: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    ceil_mode: bool
    out: int
    dropped: bool


class Bins(NamedTuple):
    """One axis of adaptive pooling: `size` split into `out` bins, the widest `widest`, starting every `step`."""

    size: int
    out: int
    widest: Any  # an int; a Fraction for an upsampling pool (see windows._adaptive_window)
    step: Any


class Line(NamedTuple):
    """One line of `archcalc explain`: what it gives, the arithmetic with the values put in, the result."""

    what: str  # "params", "MACs", "output H" ...
    formula: str  # e.g. `96 · (1 · 11 · 11) + 96 bias`; "" when the value is not worked out
    value: int
    note: str = ""


def times(*factors: object) -> str:
    """`96 · 54 · 54`: a product as `explain` writes it."""
    return " · ".join(map(str, factors))


def axis_formula(axis: Axis) -> str:
    """torch's output length worked out: `⌊(224 + 2·1 − 11) / 4⌋ + 1` (dilation, ceil mode as torch has them)."""
    text = str(axis.size)
    if axis.padding:
        text += f" + 2·{axis.padding}"
    text += f" − {axis.kernel}" if axis.dilation == 1 else f" − {axis.dilation}·({axis.kernel} − 1) − 1"
    text = f"⌈({text}) / {axis.stride}⌉" if axis.ceil_mode else f"⌊({text}) / {axis.stride}⌋"
    return text + (" + 1 − 1" if axis.dropped else " + 1")


@contextmanager
def recording() -> Iterator[list]:
    """Collect what the primitives compute (Axis, Bins) while a handler runs, in call order."""
    global _record
    outer, _record = _record, []
    try:
        yield _record
    finally:
        _record = outer


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil_mode: bool = False) -> int:
    """torch's output length for conv and pooling along one axis."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = span // stride + 1 if not ceil_mode else -(-span // stride) + 1
    # torch drops a last window that would start entirely in the right padding
    dropped = ceil_mode and (out - 1) * stride >= size + padding
    if dropped:
        out -= 1
    # ceil mode accepts a window wider than the padded input when the stride covers it
    # (torch's pooling_output_shape: a 1x2 max pool, ceil_mode, on 1x1 gives 1x1)
    if out < 1:
        dilated = " (dilated)" if dilation != 1 else ""
        raise SpecError(
            f"kernel {dilation * (kernel - 1) + 1}{dilated} is larger than the padded input "
            f"{size + 2 * padding}: output size would be below 1"
        )
    if _record is not None:
        _record.append(Axis(size, kernel, stride, padding, dilation, ceil_mode, out, dropped))
    return out


def subpixel(value: Fraction) -> Fraction:
    """`value` rounded up to a multiple of 1/SUBPIXEL: the receptive field stays an upper bound, and
    fractions multiplied along a path of upsampling pools keep a small denominator."""
    return value.__class__(-(-value.numerator * SUBPIXEL // value.denominator), SUBPIXEL)


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
