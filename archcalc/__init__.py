"""archcalc: what every layer of a CNN produces and costs, computed from a declarative spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from archcalc.analysis import run
from archcalc.errors import SpecError
from archcalc.registry import UnknownModelError, list_models, load
from archcalc.result import CONVENTIONS, Result, Row, Totals
from archcalc.training import TrainResult, TrainRow, TrainTotals, train_step
from archcalc.spec import (
    GELU, AdaptiveAvgPool2d, Auxiliary, AvgPool2d, BatchNorm1d, BatchNorm2d, ChannelPad, ChannelShuffle, Chunk, Concat,
    Conv2d, Dropout, Flatten, Gate, Hardsigmoid, Hardswish, Identity, LayerScale, Linear, LocalResponseNorm, MaxPool2d, Model,
    Node, ReLU, ReLU6, Repeat, Residual, Sequential, Sigmoid, SiLU, Softmax, StochasticDepth, Tanh, Unknown,
)
from archcalc.spec import (
    ClassToken, LayerNorm, MeanTokens, MultiheadAttention, PartitionAttention, PatchMerge, Permute, PositionEmbedding,
    SelectToken, ShiftedWindowAttention, ShiftedWindowAttentionV2, Tokens,
)

__version__ = "0.1.0"


def analyze(
    spec: str | Model | Any,
    *,
    batch: int = 1,
    input: tuple[int, ...] | None = None,
    dtype: str = "float32",
    params: Mapping[str, Any] | None = None,
) -> Result:
    """Per-layer shapes and costs of a built-in name, a YAML path, a Model, or a torch.nn.Module
    (imported first with `from_module` at `input`, which it then needs).

    >>> analyze("alexnet").total.params
    46764746
    """
    if not isinstance(spec, (str, Path, Model)) and hasattr(spec, "named_modules"):  # a torch module: only now is torch imported
        if input is None:
            raise SpecError("a torch module is analysed at an input: give input=(C, H, W)")
        spec = from_module(spec, input=input)
    return run(load(spec, params), batch=batch, input=input, dtype=dtype)


def from_module(module: Any, input: tuple[int, ...], *, name: str | None = None, allow_unknown: bool = False) -> Model:
    """A torch.nn.Module as a Model, traced with torch.fx at `input` (C, H, W) on the meta device
    (archcalc.importer; needs torch). Calls with no archcalc op raise one SpecError naming them all,
    unless allow_unknown keeps them as zero-cost `unknown` placeholders."""
    from archcalc.importer import from_module as convert  # torch is imported only here

    return convert(module, input, name=name, allow_unknown=allow_unknown)


def build_module(spec: str | Model, **options: Any):
    """The spec as a trainable torch.nn.Module named like the calculator's rows (needs torch).

    Options: input, params, device, dtype, init, validate; see archcalc.torchbuild.build_module.
    """
    from archcalc.torchbuild import build_module as build  # torch is imported only here

    return build(spec, **options)


__all__ = [
    "analyze", "from_module", "build_module", "load", "train_step", "TrainResult", "TrainRow", "TrainTotals", "list_models", "SpecError", "UnknownModelError", "Result", "Row", "Totals",
    "CONVENTIONS",
    "Model", "Node", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Linear", "BatchNorm1d", "BatchNorm2d",
    "LocalResponseNorm", "ReLU", "Sigmoid", "Tanh", "Softmax", "Dropout", "Flatten", "ChannelPad",
    "ReLU6", "Hardswish", "Hardsigmoid", "SiLU", "GELU", "Identity", "StochasticDepth", "LayerScale",
    "ChannelShuffle", "Chunk", "Unknown", "Sequential", "Concat", "Residual", "Gate", "Repeat", "Auxiliary", "__version__",
    "Permute", "LayerNorm", "Tokens", "ClassToken", "PositionEmbedding", "SelectToken", "MeanTokens",
    "MultiheadAttention", "ShiftedWindowAttention", "ShiftedWindowAttentionV2", "PartitionAttention", "PatchMerge",
]
