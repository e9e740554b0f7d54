"""One handler per leaf op, grouped by kind, assembled here into one table: (spec, input shape) -> Cost.

Shapes here exclude the batch: (C, H, W) for feature maps (`ChannelsLast` (H, W, C) after a
permute), (N, D) for tokens, (F,) for vectors. Counting conventions, stated once:
  macs    multiply-accumulates of conv2d, linear and attention's matmuls (the four
          projections, and Q K^T and attention x V between activations); bias adds not
          counted (torchvision's published "GFLOPS" and the ResNet paper count this way).
          Swin V2's position-bias MLP runs once per forward whatever the batch (PER_FORWARD).
  fvcore  what fvcore's FlopCountAnalysis reports: one fused multiply-add is one flop
          for conv/linear/matmul, plus batch_norm (2 per element with affine, 1 without, in
          eval mode; 5 / 4 when track_running_stats is false, since batch statistics are
          then computed even in eval mode), layer_norm (5 per element with a weight, 4
          without) and adaptive_avg_pool2d (1 per input element); all else is 0.
  torch   what torch.utils.flop_counter.FlopCounterMode reports: 2 x MACs of
          conv/linear/matmul, nothing else.
Each kind's module has its `HANDLERS` and `DESCRIPTIONS` (op -> `conv2d 11x11 /4 p2`).
"""

from __future__ import annotations

from typing import Any, Callable

from archcalc.ops import attention, channels, elementwise, linear, norms, reshape, tokens, windows
from archcalc.ops.common import GLOBAL, Axis, Bins, ChannelsLast, Cost, Line, Shape, Window, output_size, recording
from archcalc.spec import Node

Handler = Callable[[Any, Shape], Cost]  # each takes its own Node subclass

_KINDS = (windows, linear, norms, elementwise, reshape, channels, tokens, attention)
HANDLERS: dict[type[Node], Handler] = {cls: h for kind in _KINDS for cls, h in kind.HANDLERS.items()}
# The op with its key arguments, per op (the bare op name for the rest)
DESCRIPTIONS: dict[type[Node], Callable[[Any], str]] = {
    cls: d for kind in _KINDS for cls, d in kind.DESCRIPTIONS.items()
}

PER_FORWARD = attention.PER_FORWARD


# How `archcalc explain` works out an op's params and MACs (`(layer, input shape, Cost) -> [Line]`); every
# op without one still gets its numbers from its handler, and its output sizes from `output_size`
EXPLANATIONS: dict[type[Node], Callable[[Any, Shape, Cost], list[Line]]] = {
    cls: e for kind in _KINDS for cls, e in getattr(kind, "EXPLANATIONS", {}).items()
}


def ops_by_kind() -> dict[str, list[str]]:
    """Every leaf op's name, grouped by its kind's module (`KIND`: conv/pool, norm, activations, ...)."""
    return {getattr(kind, "KIND", kind.__name__.rpartition(".")[2]): [cls.OP for cls in kind.HANDLERS] for kind in _KINDS}


def describe(layer: Node) -> str:
    """The op with its key arguments, e.g. `conv2d 11x11 /4 p1`."""
    details = DESCRIPTIONS.get(layer.__class__)
    return details(layer) if details else layer.OP


__all__ = [
    "GLOBAL", "Axis", "Bins", "ChannelsLast", "Cost", "DESCRIPTIONS", "EXPLANATIONS", "HANDLERS", "Line", "PER_FORWARD",
    "Shape", "Window", "describe", "ops_by_kind", "output_size", "recording",
]
