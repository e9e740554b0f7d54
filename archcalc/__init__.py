"""archcalc: what every layer of a CNN produces and costs, computed from a declarative spec."""

from __future__ import annotations

from typing import Any, Mapping

from archcalc.analysis import run
from archcalc.errors import SpecError
from archcalc.registry import UnknownModelError, list_models, load
from archcalc.result import CONVENTIONS, Result, Row, Totals
from archcalc.spec import (
    GELU, AdaptiveAvgPool2d, Auxiliary, AvgPool2d, BatchNorm2d, ChannelPad, ChannelShuffle, Chunk, Concat, Conv2d,
    Dropout, Flatten, Gate, Hardsigmoid, Hardswish, Identity, LayerScale, Linear, LocalResponseNorm, MaxPool2d, Model,
    Node, ReLU, ReLU6, Repeat, Residual, Sequential, Sigmoid, SiLU, Softmax, StochasticDepth, Tanh,
)
from archcalc.spec import (
    ClassToken, LayerNorm, MeanTokens, MultiheadAttention, PatchMerge, Permute, PositionEmbedding, SelectToken,
    ShiftedWindowAttention, ShiftedWindowAttentionV2, Tokens,
)

__version__ = "0.1.0"


def analyze(
    spec: str | Model,
    *,
    batch: int = 1,
    input: tuple[int, ...] | None = None,
    dtype: str = "float32",
    params: Mapping[str, Any] | None = None,
) -> Result:
    """Per-layer shapes and costs of a built-in name, a YAML path or a Model.

    >>> analyze("alexnet").total.params
    46764746
    """
    return run(load(spec, params), batch=batch, input=input, dtype=dtype)


def build_module(spec: str | Model, **options: Any):
    """The spec as a trainable torch.nn.Module named like the calculator's rows (needs torch).

    Options: input, params, device, dtype, init, validate; see archcalc.torchbuild.build_module.
    """
    from archcalc.torchbuild import build_module as build  # torch is imported only here

    return build(spec, **options)


__all__ = [
    "analyze", "build_module", "load", "list_models", "SpecError", "UnknownModelError", "Result", "Row", "Totals",
    "CONVENTIONS",
    "Model", "Node", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Linear", "BatchNorm2d",
    "LocalResponseNorm", "ReLU", "Sigmoid", "Tanh", "Softmax", "Dropout", "Flatten", "ChannelPad",
    "ReLU6", "Hardswish", "Hardsigmoid", "SiLU", "GELU", "Identity", "StochasticDepth", "LayerScale",
    "ChannelShuffle", "Chunk", "Sequential", "Concat", "Residual", "Gate", "Repeat", "Auxiliary", "__version__",
    "Permute", "LayerNorm", "Tokens", "ClassToken", "PositionEmbedding", "SelectToken", "MeanTokens",
    "MultiheadAttention", "ShiftedWindowAttention", "ShiftedWindowAttentionV2", "PatchMerge",
]
