"""A torch module as an archcalc spec (`archcalc import`, `archcalc.from_module`): issue #15.

The module is traced with **torch.fx symbolic tracing**, not torch.export, because:
- fx keeps each torch.nn layer as one `call_module` node named by its module path, so a layer
  maps to one archcalc op with the module's own arguments and name; torch.export lowers every
  layer to aten ops (a conv and its batch norm become aten.convolution and
  aten._native_batch_norm_legit_no_training), whose nn arguments and names would have to be
  recovered from metadata;
- fx runs nothing while tracing (forward is called on proxies) and records each node's module
  stack, with a call count that shows a module called twice; torch.export runs the model under
  fake tensors and specialises guards: on ResNet-50 it took 19 s (28 s on the meta device) where
  this whole import took 0.8 s (torch 2.13, the 2-core machine this was written on, both loaded alike);
- both refuse data-dependent Python control flow; torchvision's classification models all trace
  with fx (its feature_extraction is built on it).
The trace runs in eval mode, the network archcalc counts (each submodule's mode is put back after);
a module with parameters that only training calls (Inception-v3's AuxLogits) is traced on its own and
becomes an `auxiliary`, placed where the training trace calls it. Shapes are propagated on the
meta device: the module's own tensors are never read, moved or changed (a module built under
`torch.device("meta")` imports without allocating its weights); a leaf holding real tensors is
called through torch.func.functional_call with meta stand-ins.
No hook is registered and nothing is patched beyond what fx restores when its trace ends.

The graph is then rebuilt as archcalc layers: each module call with one input and one output
becomes a sequential named after the module (`layer1.0` -> `layer1_0`: a name may not be a bare
number), and within it the data flow is split at its joins: `a + b` -> residual, torch.cat ->
concat, `x * f(x)` -> gate, each branch running from the join's dominating fork (DenseNet's cat of
all earlier features: the previous cat and the newest, inside the layer that made them). Identical
module calls (same class, same layers) become one block, and a run of them a `repeat`; calls that
differ only in their stochastic depth probabilities, one block taking them as arguments (`sd`).
A few torchvision modules are mapped whole from their attributes rather than traced (MaxViT's
PartitionAttentionLayer, whose partition reshapes have no op but `partitionattention` as a whole).
Only this module and the CLI command import torch.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import math
import operator
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
import torch.fx as fx
import torch.nn.functional as F
import yaml
from torch import nn

from archcalc import __version__
from archcalc.errors import SpecError
from archcalc.spec import LEAF_OPS, Model

TRACE_BATCH = 2  # the batch the trace runs at: 2 tells the batch dimension apart from a 1 elsewhere


# ---- what each torch call becomes --------------------------------------------------------

Layer = dict[str, Any]  # one YAML layer: {op: args, name: ...}


class Unmapped(Exception):
    """A call with no archcalc op; `what` names it (torch.fft.rfft2)."""

    def __init__(self, what: str, why: str = "has no archcalc op") -> None:
        self.what, self.why = what, why
        super().__init__(f"{what} {why}")


def _non_default(module: nn.Module | None, args: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The arguments that differ from torch's defaults (the YAML says only what is particular)."""
    out = {}
    for key, value in args.items():
        value = list(value) if isinstance(value, tuple) else value
        if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
            value = value[0]
        default = defaults.get(key, inspect.Parameter.empty)
        if default is inspect.Parameter.empty or value != default:
            out[key] = value
    return out


def _conv(m: nn.Conv2d) -> Layer:
    if m.padding_mode != "zeros":
        raise Unmapped(f"nn.Conv2d(padding_mode={m.padding_mode!r})")
    args = dict(out_channels=m.out_channels, kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                dilation=m.dilation, groups=m.groups, bias=m.bias is not None)
    return {"conv2d": _non_default(m, args, dict(stride=1, padding=0, dilation=1, groups=1, bias=True))}


def _batchnorm(m: nn.BatchNorm1d | nn.BatchNorm2d) -> Layer:
    op = "batchnorm1d" if isinstance(m, nn.BatchNorm1d) else "batchnorm2d"
    if m.momentum is None:
        raise Unmapped(f"nn.{type(m).__name__}(momentum=None)")
    args = dict(eps=m.eps, momentum=m.momentum, affine=m.affine, track_running_stats=m.track_running_stats)
    return {op: _non_default(m, args, dict(eps=1e-5, momentum=0.1, affine=True, track_running_stats=True))}


def _pool_args(kernel_size, stride, padding, **rest) -> dict[str, Any]:
    """Pooling's arguments; its stride left out where it is the kernel size (archcalc's default, and torch's)."""
    if stride is None or stride in ([], ()) or _non_default(None, {"s": stride}, {}) == \
            _non_default(None, {"s": kernel_size}, {}):
        return dict(kernel_size=kernel_size, padding=padding, **rest)
    return dict(kernel_size=kernel_size, stride=stride, padding=padding, **rest)


def _maxpool(kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False) -> Layer:
    if return_indices:
        raise Unmapped("max_pool2d(return_indices=True)")
    args = _pool_args(kernel_size, stride, padding, dilation=dilation, ceil_mode=ceil_mode)
    return {"maxpool2d": _non_default(None, args, dict(padding=0, dilation=1, ceil_mode=False))}


def _avgpool(kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    if divisor_override is not None:
        raise Unmapped("avg_pool2d(divisor_override=...)")
    args = _pool_args(kernel_size, stride, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    return {"avgpool2d": _non_default(None, args, dict(padding=0, ceil_mode=False, count_include_pad=True))}


def _adaptive(output_size) -> Layer:
    sizes = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size]
    if any(size is None for size in sizes):
        raise Unmapped("adaptive_avg_pool2d with a None output size")
    return {"adaptiveavgpool2d": _non_default(None, {"output_size": output_size}, {})}


def _plain(op: str) -> Callable[..., Layer]:
    return lambda *args, **kwargs: {op: {}}


def _dropout(p=0.5, *rest, **kwargs) -> Layer:
    return {"dropout": _non_default(None, {"p": p}, {"p": 0.5})}


def _gelu(approximate="none") -> Layer:
    return {"gelu": _non_default(None, {"approximate": approximate}, {"approximate": "none"})}


def _softmax(dim=None, *rest, **kwargs) -> Layer:
    return {"softmax": _non_default(None, {"dim": dim}, {"dim": 1})}


def _flatten_module(m: nn.Flatten) -> Layer:
    if (m.start_dim, m.end_dim) != (1, -1):
        raise Unmapped(f"nn.Flatten(start_dim={m.start_dim}, end_dim={m.end_dim})")
    return {"flatten": {}}


def _stochastic_depth(m: nn.Module) -> Layer:
    return {"stochasticdepth": _non_default(m, {"p": m.p, "mode": m.mode}, {"mode": "row"})}


# torch.nn layers (and torchvision's, by qualified class name so that torchvision need not be imported)
MODULES: dict[type, Callable[[Any], Layer]] = {
    nn.Conv2d: _conv,
    nn.Linear: lambda m: {"linear": _non_default(m, {"out_features": m.out_features, "bias": m.bias is not None},
                                                   {"bias": True})},
    nn.BatchNorm2d: _batchnorm,
    nn.BatchNorm1d: _batchnorm,
    nn.MaxPool2d: lambda m: _maxpool(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices),
    nn.AvgPool2d: lambda m: _avgpool(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                     m.divisor_override),
    nn.AdaptiveAvgPool2d: lambda m: _adaptive(m.output_size),
    nn.LocalResponseNorm: lambda m: {"localresponsenorm": _non_default(
        m, dict(size=m.size, alpha=m.alpha, beta=m.beta, k=m.k), dict(alpha=1e-4, beta=0.75, k=1.0))},
    nn.ReLU: _plain("relu"), nn.ReLU6: _plain("relu6"), nn.Sigmoid: _plain("sigmoid"), nn.Tanh: _plain("tanh"),
    nn.Hardswish: _plain("hardswish"), nn.Hardsigmoid: _plain("hardsigmoid"), nn.SiLU: _plain("silu"),
    nn.GELU: lambda m: _gelu(m.approximate), nn.Identity: _plain("identity"),
    nn.Softmax: lambda m: _softmax(m.dim), nn.Dropout: lambda m: _dropout(m.p), nn.Flatten: _flatten_module,
    nn.ChannelShuffle: lambda m: {"channelshuffle": {"groups": m.groups}},
}
# layers whose output is shaped like their input: not run when shapes are propagated (batch norm on the
# meta device runs torch's Python decomposition, 60 ms a layer)
SHAPE_KEEPING = (nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm, nn.LocalResponseNorm, nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Tanh, nn.Hardswish,
                 nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.Identity, nn.Softmax, nn.Dropout, nn.ChannelShuffle)
def _layernorm(m: nn.LayerNorm) -> Layer:
    if len(m.normalized_shape) != 1:
        raise Unmapped(f"nn.LayerNorm over {len(m.normalized_shape)} dims")
    args = dict(eps=m.eps, elementwise_affine=m.elementwise_affine, bias=getattr(m, "bias", None) is not None)
    return {"layernorm": _non_default(m, args, dict(eps=1e-5, elementwise_affine=True, bias=True))}


def _attention(m: nn.MultiheadAttention) -> Layer:
    if not m.batch_first or not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        raise Unmapped("nn.MultiheadAttention (archcalc's takes batch_first=True, no bias_k/add_zero_attn)")
    args = dict(num_heads=m.num_heads, dropout=m.dropout, bias=m.in_proj_bias is not None)
    return {"multiheadattention": _non_default(m, args, dict(dropout=0.0, bias=True))}


def _window_attention(m: Any) -> Layer:
    op = "shiftedwindowattentionv2" if type(m).__name__.endswith("V2") else "shiftedwindowattention"
    args = dict(window_size=list(m.window_size), num_heads=m.num_heads, shift_size=list(m.shift_size),
                qkv_bias=m.qkv.bias is not None, proj_bias=m.proj.bias is not None,
                attention_dropout=m.attention_dropout, dropout=m.dropout)
    return {op: _non_default(m, args, dict(shift_size=0, qkv_bias=True, proj_bias=True, attention_dropout=0.0,
                                           dropout=0.0))}


def _patch_merging(m: Any) -> list[Layer]:
    """torchvision's PatchMerging: 2x2 patches to 4C, layer norm, a linear to 2C (V2: the linear, then the norm)."""
    norm, linear = _layernorm(m.norm), {"linear": {"out_features": m.reduction.out_features, "bias": False}}
    return [{"patchmerge": {}}, *((linear, norm) if type(m).__name__.endswith("V2") else (norm, linear))]


def _module_layers(m: nn.Module) -> list[Layer]:
    """The layers of a torch.nn (or mapped torchvision) module met inside a module mapped as a whole."""
    make = MODULES.get(type(m)) or NAMED_MODULES.get(class_name(type(m)))
    if make is None:
        raise Unmapped(class_name(type(m)))
    made = make(m)
    return made if isinstance(made, list) else [made]


def _partition_attention(m: Any) -> Layer:
    """torchvision's MaxViT PartitionAttentionLayer, as architectures/maxvit.yaml writes it: on the
    channels-last map, `partitionattention` (which partitions, attends with the relative position
    bias, and puts the positions back) between `attn_layer`'s norm and dropout, then `mlp_layer`,
    each through `stochastic_dropout` and added to its input. torchvision runs the norm and the MLP
    on the partitioned tensor; they act on each position alone, so they run alike on the map. Its
    forward (partition, swap for a grid, the two residuals, departition) is torchvision's: the
    module is mapped from its attributes, not traced."""
    size = m.p if m.partition_type == "window" else m.g  # a grid partitions into p = H / size windows, then swaps
    sd = _stochastic_depth(m.stochastic_dropout)
    attention_body: list[Layer] = []
    for index, child in enumerate(m.attn_layer):
        name = f"attn_layer_{index}"
        if class_name(type(child)) != "torchvision.models.maxvit.RelativePositionalMultiHeadAttention":
            attention_body += [{**layer, "name": name} for layer in _module_layers(child)]
            continue
        if child.size != size or child.to_qkv.bias is None or child.merge.bias is None:
            raise Unmapped(f"{class_name(type(child))} over {child.max_seq_len} positions in partitions of "
                           f"{size}x{size}, or without its projections' biases")
        attention_body.append({"partitionattention": {"partition_size": size, "head_dim": child.head_dim,
                                                      "partition_type": m.partition_type}, "name": name})
    mlp_body = [{**layer, "name": f"mlp_layer_{index}"} for index, child in enumerate(m.mlp_layer)
                for layer in _module_layers(child)]
    return {"sequential": [
        {"permute": {"dims": [0, 2, 3, 1]}, "name": "to_channels_last"},
        {"residual": {"body": [*attention_body, {**sd, "name": "stochastic_dropout"}]}, "name": "attn_layer"},
        {"residual": {"body": [*mlp_body, {**sd, "name": "stochastic_dropout"}]}, "name": "mlp_layer"},
        {"permute": {"dims": [0, 3, 1, 2]}, "name": "to_channels_first"}]}


def _partition_grid(m: Any, shape: tuple[int, ...]) -> str | None:
    """Why a PartitionAttentionLayer cannot run on a map of `shape`: torchvision sizes it when it is built."""
    if tuple(shape[-2:]) == tuple(m.grid_size):
        return None
    return (f"it is built for a {m.grid_size[0]}x{m.grid_size[1]} map and this input gives {shape[-2]}x{shape[-1]} "
            "(MaxVit's input_size sets it: build the model for this input)")


# what a layer mapped whole needs of its input, which its forward would check (or fail on) when run
BUILT_FOR: dict[str, Callable[[Any, tuple[int, ...]], str | None]] = {
    "torchvision.models.maxvit.PartitionAttentionLayer": _partition_grid,
}
SHAPE_KEEPING_NAMES = ("torchvision.ops.stochastic_depth.StochasticDepth", "torchvision.models.convnext.LayerNorm2d",
                       *BUILT_FOR)
NAMED_MODULES: dict[str, Callable[[Any], Layer | list[Layer]]] = {
    "torchvision.ops.stochastic_depth.StochasticDepth": _stochastic_depth,
    "torchvision.ops.misc.Permute": lambda m: {"permute": {"dims": list(m.dims)}},
    "torchvision.models.convnext.LayerNorm2d": _layernorm,
    "torchvision.models.swin_transformer.ShiftedWindowAttention": _window_attention,
    "torchvision.models.swin_transformer.ShiftedWindowAttentionV2": _window_attention,
    "torchvision.models.swin_transformer.PatchMerging": _patch_merging,
    "torchvision.models.swin_transformer.PatchMergingV2": _patch_merging,
    "torchvision.models.maxvit.PartitionAttentionLayer": _partition_attention,
}
MODULES.update({nn.LayerNorm: _layernorm, nn.MultiheadAttention: _attention})

# functions, by the function object, each called with the call's arguments after the tensor
FUNCTIONS: dict[Any, Callable[..., Layer]] = {
    **dict.fromkeys((F.relu, F.relu_, torch.relu, torch.relu_), _plain("relu")),
    F.relu6: _plain("relu6"), F.hardswish: _plain("hardswish"), F.hardsigmoid: _plain("hardsigmoid"),
    F.silu: _plain("silu"), F.gelu: _gelu,
    **dict.fromkeys((torch.sigmoid, F.sigmoid), _plain("sigmoid")),
    **dict.fromkeys((torch.tanh, F.tanh), _plain("tanh")),
    F.softmax: _softmax, F.dropout: _dropout,
    F.max_pool2d: _maxpool, F.avg_pool2d: _avgpool, F.adaptive_avg_pool2d: _adaptive,
    F.channel_shuffle: lambda groups: {"channelshuffle": {"groups": groups}},
    torch.channel_shuffle: lambda groups: {"channelshuffle": {"groups": groups}},
}
METHODS: dict[str, Callable[..., Layer]] = {
    "relu": _plain("relu"), "relu_": _plain("relu"), "sigmoid": _plain("sigmoid"), "sigmoid_": _plain("sigmoid"),
    "tanh": _plain("tanh"), "softmax": _softmax,
}
# calls that return their input as it is (to archcalc): dropped from the spec
NO_OPS = {"contiguous", "clone", "detach", "float"}
ADDS = {operator.add, operator.iadd, torch.add, "add", "add_", "__add__", "__iadd__"}
MULS = {operator.mul, operator.imul, torch.mul, "mul", "mul_", "__mul__", "__imul__"}
CATS = {torch.cat, torch.concat, torch.concatenate}
CHUNKS = {torch.chunk, "chunk"}
RESHAPES = {"view", "reshape", torch.reshape, torch.flatten, "flatten"}
MEANS = {torch.mean, "mean"}
TRANSPOSES = {torch.transpose, "transpose"}
PERMUTES = {torch.permute, "permute"}


_NAMESPACES = ("torch", "torch.nn.functional", "torch.fft", "torch.linalg", "torch.special", "operator", "math")
_QUALIFIED: dict[int, str] = {}


def qualified(target: Any) -> str:
    """A function as people write it: `torch.fft.rfft2` rather than `torch._C._fft.fft_rfft2`."""
    if isinstance(target, str):
        return f"Tensor.{target}"
    if not _QUALIFIED:
        import importlib

        for namespace in reversed(_NAMESPACES):  # torch.relu over torch.nn.functional.relu where both hold it
            space = importlib.import_module(namespace)
            for attr in dir(space):
                if not attr.startswith("_"):
                    _QUALIFIED[id(getattr(space, attr))] = f"{namespace}.{attr}"
    return _QUALIFIED.get(id(target)) or f"{getattr(target, '__module__', '?')}.{getattr(target, '__name__', target)}"


def class_name(cls: type) -> str:
    """`nn.Upsample` for torch.nn's layers, the qualified name for the others."""
    if cls.__module__.startswith("torch.nn.modules"):
        return f"nn.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


# ---- the traced graph as steps -----------------------------------------------------------


@dataclass(eq=False)
class Step:
    """One tensor-valued call, or a module call with one input and one output (`inner` steps)."""

    kind: str  # layer | add | mul | cat | input | unknown | partial | call
    inputs: list["Step"]
    shape: tuple[int, ...]
    scope: tuple[tuple[str, str, type], ...]  # the module calls it is inside: (stack key, path, class)
    name: str = ""
    layers: list[Layer] = field(default_factory=list)
    what: str = ""  # what an unknown or partial step is
    index: float = 0  # graph order (an auxiliary: between the step it reads and the next)
    inner: list["Step"] = field(default_factory=list)
    exit: Optional["Step"] = None
    path: str = ""
    cls: Optional[type] = None
    groups: int = 0  # a partial channel shuffle's groups
    module_path: str = ""  # the layer a `call_module` step calls
    users: list[Optional["Step"]] = field(default_factory=list)  # None: the network's output
    folded_into: Optional["Step"] = None  # the call step that stands for it one level up


class _Tracer(fx.Tracer):
    """torch.fx's tracer, keeping every layer archcalc maps as one call."""

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        cls = type(m)
        return cls in MODULES or class_name(cls) in NAMED_MODULES or super().is_leaf_module(m, qualified_name)


class Traced:
    """The traced graph, and the module's layers by path (what a GraphModule would hold; making one
    generates and compiles Python code, a fifth of an import)."""

    def __init__(self, module: nn.Module) -> None:
        try:
            self.graph = _Tracer().trace(module)
        except Exception as err:  # noqa: BLE001 - fx raises anything the forward raises on proxies
            raise SpecError(f"import: torch.fx cannot trace {type(module).__name__}: "
                            f"{type(err).__name__}: {_first_line(err)}") from None
        self.module = module
        self.layers = dict(module.named_modules(remove_duplicate=False))

    def get_submodule(self, path: object) -> nn.Module:
        """The layer a `call_module` node calls (its target is the layer's path)."""
        return self.layers[str(path)]


def trace(module: nn.Module) -> Traced:
    return Traced(module)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else ""


def _meta(value: Any) -> Any:
    return torch.empty_like(value, device="meta") if isinstance(value, torch.Tensor) else value


def propagate(gm: Traced, module: nn.Module, shape: tuple[int, ...]) -> dict[fx.Node, Any]:
    """Every node's value on the meta device, for a batch of TRACE_BATCH inputs of `shape`."""
    on_meta = all(t.is_meta for t in itertools.chain(module.parameters(), module.buffers()))
    values: dict[fx.Node, Any] = {}

    def load(arg):
        return fx.node.map_arg(arg, values.__getitem__)

    with torch.no_grad():
        for node in gm.graph.nodes:
            try:
                if node.op == "placeholder":
                    value = torch.empty((TRACE_BATCH, *shape), device="meta") if not values else None
                elif node.op == "get_attr":
                    value = _meta(operator.attrgetter(node.target)(gm.module))
                elif node.op == "call_function" and node.target in (operator.add, operator.mul, operator.iadd) \
                        and all(isinstance(values.get(a), torch.Tensor) for a in node.args):
                    first, second = load(node.args)  # broadcast: torch's meta add runs a Python decomposition
                    value = torch.empty(torch.broadcast_shapes(first.shape, second.shape), device="meta",
                                        dtype=torch.promote_types(first.dtype, second.dtype))
                elif node.op == "call_function":
                    value = node.target(*load(node.args), **load(node.kwargs))
                elif node.op == "call_method":
                    self_, *rest = load(node.args)
                    value = getattr(self_, node.target)(*rest, **load(node.kwargs))
                elif node.op == "call_module":
                    layer = gm.get_submodule(node.target)
                    args, kwargs = load(node.args), load(node.kwargs)
                    built_for = BUILT_FOR.get(class_name(type(layer)))
                    refused = built_for(layer, tuple(args[0].shape)) if built_for and args else None
                    if refused:
                        raise ValueError(refused)
                    if (isinstance(layer, SHAPE_KEEPING) or class_name(type(layer)) in SHAPE_KEEPING_NAMES) \
                            and len(args) == 1 and not kwargs:
                        value = torch.empty_like(args[0])
                    elif on_meta:
                        value = layer(*args, **kwargs)
                    else:
                        state = {k: _meta(t) for k, t in itertools.chain(layer.named_parameters(),
                                                                          layer.named_buffers())}
                        value = torch.func.functional_call(layer, state, args, kwargs)
                else:
                    value = load(node.args[0])
            except Exception as err:  # noqa: BLE001 - whatever torch raises on the traced shapes
                raise SpecError(f"import: {_where_node(node, gm)}: {_what(node, gm)} fails at the traced shapes: "
                                f"{_first_line(err)}") from None
            values[node] = value
    return values


def _stack(node: fx.Node) -> list[tuple[str, str, type]]:
    return [(key, path, cls) for key, (path, cls) in (node.meta.get("nn_module_stack") or {}).items()]


def _where_node(node: fx.Node, gm: Traced) -> str:
    stack = _stack(node)
    if node.op == "call_module":
        return f"{node.target} ({type(gm.get_submodule(node.target)).__name__})"
    if stack:
        _, path, cls = stack[-1]
        return f"{path} ({cls.__name__}.forward)"
    return f"{type(gm.module).__name__}.forward"


def _what(node: fx.Node, gm: Traced) -> str:
    if node.op == "call_module":
        return class_name(type(gm.get_submodule(node.target)))
    return qualified(node.target)


def _args(node: fx.Node) -> Any:
    """A node's arguments, as the handlers read them (fx's Argument union is too wide to narrow at each use)."""
    return node.args


def _kwargs(node: fx.Node) -> Any:
    return node.kwargs


class _Mapper:
    """fx nodes -> Steps: the layer each call is, the tensors it reads, and what could not be mapped."""

    def __init__(self, gm: Traced, values: dict[fx.Node, Any], module: nn.Module) -> None:
        self.gm, self.values, self.module, self.root = gm, values, module, type(module)
        self.steps: dict[fx.Node, Step] = {}
        self.unmapped: list[tuple[str, Unmapped, Step]] = []
        self.output: Step | None = None
        self.cats: dict[tuple[fx.Node, ...], Step] = {}  # torch.cat's list of tensors -> its step

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        return tuple(self.values[node].shape)

    def tensor(self, arg: Any) -> bool:
        return isinstance(arg, fx.Node) and isinstance(self.values.get(arg), torch.Tensor)

    def run(self) -> None:
        for index, node in enumerate(self.gm.graph.nodes):
            if node.op == "output":
                result = _args(node)[0]
                if not self.tensor(result):
                    raise SpecError(f"import: {self.root.__name__}.forward returns {type(self.values[node]).__name__}, "
                                    "not one tensor: archcalc models have one output")
                self.output = self.steps[result]
                continue
            if node.op == "placeholder":
                if self.values[node] is None:
                    raise SpecError(f"import: {self.root.__name__}.forward takes more than one input "
                                    f"({node.name}): archcalc models have one input")
                self.steps[node] = Step("input", [], self.shape(node), (), name="input", index=-1)
                continue
            attention = node.op == "call_module" and isinstance(self.gm.get_submodule(node.target), nn.MultiheadAttention)
            if not self.tensor(node) and not self._chunks(node) and not attention:
                continue  # sizes, shapes and the arithmetic on them: read by the calls that use them
            scope = tuple(_stack(node))
            if node.op == "call_module":
                scope = scope[:-1]  # the layer itself
            tensors = [self.steps[a] for a in node.all_input_nodes if a in self.steps]
            value = self.values[node]
            shape = tuple(value.shape) if self.tensor(node) else tuple(value[0].shape) if attention else ()
            step = Step("layer", tensors, shape, scope, index=index, name=self._name(node))
            if node.op == "call_module":
                step.module_path = str(node.target)
            try:
                mapped = self.map(node, step)
            except Unmapped as err:
                self.unmapped.append((_where_node(node, self.gm), err, step))
                step.kind, step.what = "unknown", err.what
                mapped = step
            self.steps[node] = mapped
        for node, step in self.steps.items():
            if step.kind == "partial" and step.what:  # a reshape that did not end as a channel shuffle
                self.unmapped.append((_where_node(node, self.gm), Unmapped(step.what.split(" to ")[0],
                                      f"to {step.what.split(' to ')[-1]} has no archcalc op"), step))

    def _chunks(self, node: fx.Node) -> bool:
        value = self.values.get(node)
        return isinstance(value, (tuple, list)) and bool(value) and all(isinstance(v, torch.Tensor) for v in value)

    def _name(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return layer_name(str(node.target))
        target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "call")
        return target.strip("_").rstrip("_") or "call"

    def map(self, node: fx.Node, step: Step) -> Step:
        """The step for a tensor-valued node (or the step it is an alias of)."""
        target = node.target
        tensors = [a for a in _args(node) if self.tensor(a)]
        if node.op == "call_module":
            layer = self.gm.get_submodule(target)
            make = MODULES.get(type(layer)) or NAMED_MODULES.get(class_name(type(layer)))
            if make is None:
                raise Unmapped(class_name(type(layer)))
            if isinstance(layer, nn.MultiheadAttention) and len(set(_args(node)[:3])) != 1:
                raise Unmapped("nn.MultiheadAttention on different query, key and value (archcalc's is self-attention)")
            made = make(layer)
            if isinstance(made, dict) and "sequential" in made:  # a module mapped as a whole: a block like a traced one
                made = {**made, "_class": type(layer), "_path": str(node.target)}
            step.layers = made if isinstance(made, list) else [made]
            step.inputs = step.inputs[:1]
            return step
        if node.op == "get_attr" or (step.inputs and all(i.kind == "constant" for i in step.inputs)):
            step.kind = "constant"  # a parameter, or computed from parameters only: read by the call that uses it
            return step
        key = target if node.op == "call_function" else str(target)
        if key is operator.getitem and isinstance(_args(node)[0], fx.Node):
            if self._chunks(_args(node)[0]):  # a part of x.chunk(...): ShuffleNet's split
                return self._chunk(node, step)
            source = self.steps.get(_args(node)[0])
            if source is not None and source.layers and "multiheadattention" in source.layers[0] \
                    and _args(node)[1] == 0:
                return source  # attention's output (torch's returns it with the weights)
            return self._select(node, step)
        if key in PERMUTES:
            return self._permute(node, step)
        if node.op == "call_method" and key in NO_OPS:
            return self.steps[_args(node)[0]]
        if key in ADDS or key in MULS:
            return self._binary(node, step, "add" if key in ADDS else "mul")
        if key in CATS:
            return self._cat(node, step)
        if key in CHUNKS:
            return self._partial(step, "")  # its items (getitem) are the steps
        if key in RESHAPES:
            return self._reshape(node, step)
        if key in TRANSPOSES:
            return self._transpose(node, step)
        if key in MEANS:
            return self._mean(node, step)
        make = FUNCTIONS.get(target) if node.op == "call_function" else METHODS.get(str(target))
        if make is None or len(tensors) != 1 or _args(node)[0] is not tensors[0]:
            raise Unmapped(qualified(target))
        step.layers = [make(*_args(node)[1:], **{k: v for k, v in _kwargs(node).items() if k != "inplace"})]
        return step

    def _partial(self, step: Step, what: str, groups: int = 0) -> Step:
        step.kind, step.what, step.groups = "partial", what, groups
        return step

    def _binary(self, node: fx.Node, step: Step, kind: str) -> Step:
        args = [a for a in _args(node) if a is not None]
        if len(args) != 2 or not all(self.tensor(a) for a in args) or _kwargs(node).get("alpha", 1) != 1:
            raise Unmapped(f"{qualified(node.target)} with a constant or a parameter")
        steps = [self.steps[a] for a in args]
        constants = [s for s in steps if s.kind == "constant"]
        if len(constants) == 1:
            return self._with_parameter(node, step, kind, [s for s in steps if s.kind != "constant"][0], constants[0])
        step.kind, step.inputs = kind, steps
        return step

    def _with_parameter(self, node: fx.Node, step: Step, kind: str, x: Step, parameter: Step) -> Step:
        """x * a per-channel parameter: layer scale; x + a (1, N, D) parameter: a position embedding."""
        shape, width = x.shape[1:], x.shape[1] if len(x.shape) == 4 else x.shape[-1]
        size = parameter.shape
        if kind == "mul" and size in ((width, 1, 1), (width,), (1, width, 1, 1)):
            step.layers = [{"layerscale": {}}]
        elif kind == "add" and len(shape) == 2 and size == (1, *shape):
            step.layers = [{"positionembedding": {}}]
        else:
            raise Unmapped(f"{qualified(node.target)} with a parameter of shape {list(size)}")
        step.inputs = [x]
        return step

    def _cat(self, node: fx.Node, step: Step) -> Step:
        tensors = _args(node)[0]
        dim = _args(node)[1] if len(_args(node)) > 1 else _kwargs(node).get("dim", 0)
        ndim = len(self.shape(node))
        steps = [self.steps.get(t) for t in tensors]
        if ndim == 3 and dim % 3 == 1 and len(steps) == 2 and steps[0] is not None and steps[0].kind == "constant" \
                and steps[0].shape[1] == 1 and steps[1] is not None:
            step.layers, step.inputs, step.name = [{"classtoken": {}}], [steps[1]], "class_token"
            return step
        if ndim != 4 or dim % ndim != 1 or not all(self.tensor(t) for t in tensors):
            raise Unmapped(f"{qualified(node.target)} on dim {dim} of a {ndim}-d tensor")
        if len(tensors) == 1:
            return self.steps[tensors[0]]  # torch.cat([x]) is x
        inputs = [self.steps[t] for t in tensors]
        earlier = next((k for k in range(len(tensors) - 1, 1, -1) if tuple(tensors[:k]) in self.cats), 0)
        if earlier:  # DenseNet: cat([x0, ..., x(k-1), xk]) is cat(the earlier cat of x0 ... x(k-1), xk)
            inputs = [self.cats[tuple(tensors[:earlier])], *inputs[earlier:]]
        self.cats[tuple(tensors)] = step
        step.kind, step.inputs = "cat", inputs
        if len(inputs) == 2:
            step.scope = self._joined_to_call(step.scope, *inputs)
        return step

    def _joined_to_call(self, scope: tuple, entry: Step, exit_: Step) -> tuple:
        """cat(x, f(x)) where f is one module call: the scope of that call, so that the call is
        x -> concat([x], [f(x)]) (a DenseNet layer, whose output torchvision concatenates in the next
        layer or in its block); otherwise `scope` as it is."""
        common = next((i for i, (a, b) in enumerate(zip(scope, exit_.scope)) if a[0] != b[0]),
                      min(len(scope), len(exit_.scope)))
        if len(exit_.scope) <= common:
            return scope
        inside = exit_.scope[:common + 1]
        members = [s for s in self.steps.values() if s.scope[:common + 1] == inside]
        ids = {id(s) for s in members} | {id(entry)}
        if all(id(i) in ids for s in members for i in s.inputs):
            return inside
        return scope

    def _chunk(self, node: fx.Node, step: Step) -> Step:
        chunk_node, index = _args(node)
        chunks_call = _args(chunk_node)[1:] + tuple(_kwargs(chunk_node).values())
        chunks = chunks_call[0]
        dim = chunks_call[1] if len(chunks_call) > 1 else 0
        source = _args(chunk_node)[0]
        if chunk_node.target not in CHUNKS or len(self.shape(source)) != 4 or dim % 4 != 1:
            raise Unmapped(f"{qualified(chunk_node.target)} on dim {dim}")
        step.inputs = [self.steps[source]]
        step.layers = [{"chunk": {"chunks": chunks, "index": index}}]
        step.name = "chunk"
        return step

    def _reshape(self, node: fx.Node, step: Step) -> Step:
        """flatten; or the view -> transpose(1, 2) -> view of a channel shuffle (torchvision's ShuffleNetV2)."""
        source = _args(node)[0]
        before, after = self.shape(source), self.shape(node)
        prior = self.steps[source]
        if prior.kind == "partial" and prior.what == "transpose" and after == prior.inputs[0].shape:
            step.inputs, step.name = prior.inputs, "channel_shuffle"
            step.layers = [{"channelshuffle": {"groups": prior.groups}}]
            prior.what = ""  # the shuffle is complete
            return step
        if after == (before[0], math.prod(before[1:])):
            step.layers = [{"flatten": {}}]
            return step
        if len(before) == 4 and after == (before[0], before[1], before[2] * before[3]):  # x.flatten(2), then tokens
            return self._partial(step, f"{qualified(node.target)} to {list(after[1:])}", groups=-1)
        if len(before) == 4 and len(after) == 5 and after[0] == before[0] and after[1] * after[2] == before[1] \
                and after[3:] == before[2:]:
            return self._partial(step, f"{qualified(node.target)} to {list(after[1:])}", groups=after[1])
        raise Unmapped(f"{qualified(node.target)} from {list(before[1:])} to {list(after[1:])}")

    def _permute(self, node: fx.Node, step: Step) -> Step:
        dims = _args(node)[1:] if len(_args(node)) > 2 else _args(node)[1]
        dims = [d % len(dims) for d in (dims if dims else _kwargs(node)["dims"])]
        prior = self.steps[_args(node)[0]]
        if prior.kind == "partial" and prior.groups == -1 and dims == [0, 2, 1]:
            return self._tokens(step, prior)
        if dims in ([0, 2, 3, 1], [0, 3, 1, 2]):
            step.layers = [{"permute": {"dims": dims}}]
            return step
        raise Unmapped(f"{qualified(node.target)} {dims}")

    def _tokens(self, step: Step, flattened: Step) -> Step:
        step.inputs, step.name, step.layers = flattened.inputs, "tokens", [{"tokens": {}}]
        flattened.what = ""
        return step

    def _select(self, node: fx.Node, step: Step) -> Step:
        """x[:, i] on tokens: one token."""
        index = _args(node)[1]
        source = self.steps[_args(node)[0]]
        if isinstance(index, tuple) and len(index) == 2 and index[0] == slice(None) and isinstance(index[1], int) \
                and len(source.shape) == 3:
            step.layers, step.name = [{"selecttoken": _non_default(None, {"index": index[1]}, {"index": 0})}], "select"
            return step
        raise Unmapped("operator.getitem (indexing)")

    def _transpose(self, node: fx.Node, step: Step) -> Step:
        prior = self.steps[_args(node)[0]]
        if prior.kind == "partial" and prior.groups == -1 and sorted(d % 3 for d in _args(node)[1:3]) == [1, 2]:
            return self._tokens(step, prior)
        dims = sorted(d % 5 for d in _args(node)[1:3])
        if prior.kind == "partial" and prior.groups and dims == [1, 2]:
            step.inputs = prior.inputs
            prior.what = ""  # continued by the transpose
            return self._partial(step, "transpose", prior.groups)
        raise Unmapped(qualified(node.target))

    def _mean(self, node: fx.Node, step: Step) -> Step:
        source = _args(node)[0]
        dims = _args(node)[1] if len(_args(node)) > 1 else _kwargs(node).get("dim")
        keepdim = _args(node)[2] if len(_args(node)) > 2 else _kwargs(node).get("keepdim", False)
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        if len(self.shape(source)) != 4 or sorted(d % 4 for d in dims) != [2, 3]:
            raise Unmapped(f"{qualified(node.target)} over dims {dims}")
        step.layers = [{"adaptiveavgpool2d": {"output_size": 1}}] + ([] if keepdim else [{"flatten": {}}])
        return step


@contextlib.contextmanager
def _mode(module: nn.Module, training: bool) -> Iterator[None]:
    """Every submodule in training (or eval) mode inside the block, each put back as it was after it."""
    before = [(m, m.training) for m in module.modules()]
    try:
        for m, _ in before:
            m.training = training
        yield
    finally:
        for m, was in before:
            m.training = was


def _map(module: nn.Module, shape: tuple[int, ...]) -> _Mapper:
    """The module traced in eval mode (the network archcalc counts is the one that runs at inference:
    Inception-v3 returns its auxiliary logits only in training), its steps mapped."""
    with _mode(module, False):
        gm = trace(module)
        values = propagate(gm, module, shape)
    mapper = _Mapper(gm, values, module)
    mapper.run()
    _add_training_only(mapper)
    return mapper


def _in(node: fx.Node, path: str) -> bool:
    """Whether `node` runs inside the module at `path`."""
    paths = [p for _, p, _ in _stack(node)] + ([str(node.target)] if node.op == "call_module" else [])
    return any(p == path or p.startswith(f"{path}.") for p in paths)


def _ancestors(path: str) -> list[str]:
    """`a.b.c` -> [`a.b`, `a`]."""
    return [path.rsplit(".", i)[0] for i in range(1, path.count(".") + 1)]


def _add_training_only(mapper: _Mapper) -> None:
    """Modules with parameters that the inference graph never calls. One that the training forward
    calls (Inception-v3's AuxLogits) becomes an `auxiliary` on the tensor it reads there, a pass-through
    step: its parameters count, it costs nothing at inference. One never called is unmapped: its
    parameters would go uncounted."""
    module, graph = mapper.module, mapper.gm.graph
    leaves = {str(n.target) for n in graph.nodes if n.op == "call_module"}  # each runs its own submodules
    called = {p for node in graph.nodes for _, p, _ in _stack(node)} | leaves
    called |= {q for p in called for q in _ancestors(p)}  # a ModuleList's, ...
    idle = [p for p, m in module.named_modules() if p and p not in called and any(True for _ in m.parameters())
            and not leaves.intersection(_ancestors(p))]
    idle = [p for p in idle if not any(p.startswith(f"{q}.") for q in idle)]
    if not idle:
        return
    with _mode(module, True):
        training = _Tracer().trace(module)
    eval_nodes = {node.name: node for node in graph.nodes}
    for path in idle:
        sub = module.get_submodule(path)
        first = next((n for n in training.nodes if _in(n, path)), None)
        reads = [i for i in first.all_input_nodes if not _in(i, path)] if first is not None else []
        source = mapper.steps.get(eval_nodes[reads[0].name]) if reads and reads[0].name in eval_nodes else None
        if source is None or first is None:
            why = "is called neither at inference nor in training" if first is None else \
                "is called in training on a tensor that inference does not compute"
            mapper.unmapped.append((f"{path} ({type(sub).__name__})", Unmapped(
                class_name(type(sub)), f"{why}: its {sum(p.numel() for p in sub.parameters()):,} parameters would "
                "not be counted"), Step("unknown", [], (), ())))
            continue
        try:
            inner = _map(sub, source.shape[1:])
        except SpecError as err:
            raise SpecError(f"import: {path}, called in training only: {str(err).removeprefix('import: ')}") from None
        mapper.unmapped += [(f"{path}.{where}", err, step) for where, err, step in inner.unmapped]
        layers = _prefixed(structure(inner), path)
        scope = tuple(itertools.takewhile(lambda frame: frame[1] != path, _stack(first)))
        aux = Step("layer", [source], source.shape, scope, name=layer_name(path), index=source.index + 0.5,
                   layers=[{"auxiliary": layers}])
        for step in mapper.steps.values():
            step.inputs = [aux if i is source else i for i in step.inputs]
        if mapper.output is source:
            mapper.output = aux
        mapper.steps[first] = aux


def _prefixed(layers: list[Layer], path: str) -> list[Layer]:
    """A submodule's layers, their module paths made the whole network's."""
    for layer in layers:
        if "_path" in layer:
            layer["_path"] = f"{path}.{layer['_path']}"
        for inner in _children(layer):
            _prefixed(inner, path)
    return layers


# ---- steps -> nested layers ------------------------------------------------------------


def layer_name(path: str) -> str:
    """A module path's last part as a layer name: `layer1.0` -> `layer1_0` (a bare number is an index)."""
    parts = path.split(".")
    last = len(parts) - 1
    while last >= 0 and parts[last].isdigit():
        last -= 1
    return "_".join(parts[last:]) if last >= 0 else "layer_" + "_".join(parts)


class _Structure:
    """Nests steps by the module calls they are in, and each call's data flow by its joins."""

    def __init__(self, root: type) -> None:
        self.root = root
        self.seen: set[int] = set()

    def level(self, steps: list[Step], depth: int) -> list[Step]:
        """The steps of one module call, with each module call inside it that has one input and one
        output folded into a `call` step."""
        items: list[Step] = []
        for key, group in itertools.groupby(steps, lambda s: s.scope[depth][0] if len(s.scope) > depth else None):
            run = list(group)
            if key is None:
                items.extend(run)
                continue
            _, path, cls = run[0].scope[depth]
            inner = set(run)
            entries = {i for s in run for i in s.inputs if i not in inner}
            exits = [s for s in run if any(u not in inner for u in s.users)]
            if len(entries) == 1 and len(exits) == 1:
                inner_items = self.level(run, depth + 1)
                call = Step("call", list(entries), exits[0].shape, run[0].scope[:depth], name=layer_name(path),
                            index=run[0].index, inner=inner_items, exit=exits[0], path=path, cls=cls)
                for s in inner_items:
                    s.folded_into = call
                items.append(call)
            else:  # several inputs or outputs: its calls stay in line, in its parent
                items.extend(self.level(run, depth + 1))
        return items

    def layers(self, items: list[Step], entry: Step, exit_: Step, where: str) -> list[Layer]:
        """The layers that compute `exit_` from `entry` through `items`."""
        position = {id(entry): -1, **{id(s): i for i, s in enumerate(items)}}

        def rep(step: Step) -> Step:
            """The item of this level that stands for `step` (the call it is the exit of)."""
            while id(step) not in position:
                outer = getattr(step, "folded_into", None)
                if outer is None:
                    raise SpecError(f"import: {where}: {step.name} comes from outside the module call")
                step = outer
            return step

        dominator: dict[int, Step] = {id(entry): entry}

        def meet(a: Step, b: Step) -> Step:
            while a is not b:
                if position[id(a)] > position[id(b)]:
                    a = dominator[id(a)]
                else:
                    b = dominator[id(b)]
            return a

        for item in items:
            preds = [rep(i) for i in item.inputs]
            if not preds:
                raise SpecError(f"import: {where}: {item.name} reads no tensor of the network (a constant)")
            common = preds[0]
            for p in preds[1:]:
                common = meet(common, p)
            dominator[id(item)] = common

        def chain(start: Step, end: Step) -> list[Layer]:
            out: list[Layer] = []
            step = end
            while step is not start:
                if step is entry:
                    raise SpecError(f"import: {where}: the data flow is not a chain of layers and joins")
                if id(step) in self.seen:
                    raise SpecError(f"import: {where}: {step.name} ({step.kind}) feeds two branches: archcalc's "
                                    "residual, concat and gate join branches that start at one tensor")
                self.seen.add(id(step))
                if step.kind in ("add", "mul", "cat"):
                    fork = dominator[id(step)]
                    out.append(self.join(step, fork, [chain(fork, rep(i)) for i in step.inputs],
                                         [rep(i) is fork for i in step.inputs], where))
                    step = fork
                else:
                    out.extend(reversed(self.leaf(step)))
                    step = rep(step.inputs[0])
            return out[::-1]

        return chain(entry, rep(exit_))

    def join(self, step: Step, fork: Step, branches: list[list[Layer]], direct: list[bool], where: str) -> Layer:
        if step.kind == "cat":
            return {"concat": [branch or [{"identity": {}}] for branch in branches], "name": "concat"}
        if all(direct):
            raise Unmapped(f"x {'+' if step.kind == 'add' else '*'} x", "has no archcalc composite")
        if step.kind == "add":
            body, shortcut = (branches[0], branches[1]) if not direct[0] else (branches[1], branches[0])
            if all("identity" in layer for layer in body) and not all("identity" in layer for layer in shortcut):
                body, shortcut = shortcut, body  # proj(x) + f(x) where proj is an nn.Identity (MaxViT's MBConv)
            return {"residual": {"body": body, **({"shortcut": shortcut} if shortcut else {})}, "name": "residual"}
        if not any(direct):
            raise SpecError(f"import: {where}: a product of two computed tensors has no archcalc composite "
                            "(gate multiplies its input by a function of it)")
        return {"gate": branches[direct.index(False)], "name": "gate"}

    def leaf(self, step: Step) -> list[Layer]:
        if step.kind == "call":
            layers = self.layers(step.inner, step.inputs[0], step.exit, step.path)  # type: ignore[arg-type]
            return [{"sequential": layers, "name": step.name, "_class": step.cls, "_path": step.path}]
        if step.kind == "unknown":
            return [{"unknown": {"what": step.what, "output": list(step.shape[1:])}, "name": step.name}]
        if step.kind == "partial":
            raise SpecError(f"import: {step.what} is not followed by the rest of a channel shuffle")
        named = []
        for i, layer in enumerate(step.layers):
            op = next(iter(layer))
            named.append({**layer, "name": step.name if i == 0 else f"{step.name}_{op}"})
        return named


def structure(mapper: _Mapper) -> list[Layer]:
    steps = [s for s in dict.fromkeys(mapper.steps.values()) if s.kind not in ("input", "constant")]
    for s in steps:
        s.users = []
    entry = next(s for s in mapper.steps.values() if s.kind == "input")
    entry.users = []
    for s in steps:
        for i in s.inputs:
            i.users.append(s)
    assert mapper.output is not None  # run() sets it or raises
    mapper.output.users.append(None)  # read by the network
    builder = _Structure(mapper.root)
    shared = _shared_calls(steps, mapper.module)
    if shared:
        raise SpecError(f"import: {shared}: a module called more than once shares its parameters, but archcalc "
                        "counts a layer's parameters wherever the layer stands, so they would be counted each "
                        "time; give each call its own module to import it")
    items = builder.level(sorted(steps, key=lambda s: s.index), 0)
    return builder.layers(items, entry, mapper.output, mapper.root.__name__)  # type: ignore[arg-type]


def _shared_calls(steps: list[Step], gm: nn.Module) -> str:
    """The outermost modules with parameters that are called more than once (fx numbers their calls
    `path@1`), as `path (Class) is called 2 times`."""
    calls: dict[str, set[str]] = {}
    for s in steps:
        for key, path, cls in s.scope:
            calls.setdefault(path, set()).add(key)
        if s.kind == "layer" and getattr(s, "module_path", None):
            calls.setdefault(s.module_path, set()).add(str(s.index))
    shared = [path for path, keys in calls.items()
              if len(keys) > 1 and any(True for _ in gm.get_submodule(path).parameters())]
    outermost = [p for p in shared if not any(p.startswith(f"{q}.") for q in shared)]
    return ", ".join(f"{p} ({type(gm.get_submodule(p)).__name__}) is called {len(calls[p])} times" for p in outermost)


# ---- blocks, repeats and the YAML text -----------------------------------------------------

_RESERVED = set(LEAF_OPS) | {"sequential", "concat", "residual", "gate", "repeat", "auxiliary"}


def _ramped(layer: Layer) -> list[float]:
    """The stochastic depth probabilities in a module call, in order: torchvision ramps them layer by
    layer (ConvNeXt, EfficientNet, Swin, MaxViT), so calls that differ only in them are one block
    with the probabilities as its arguments."""
    found: list[float] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("stochasticdepth"), dict):
                found.append(value["stochasticdepth"]["p"])
            for inner in value.values():
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(layer)
    return found


def _key(layer: Layer) -> str:
    """What makes two module calls the same block: their class and layers, not their name or paths,
    nor their stochastic depth probabilities (which of them are equal, though)."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {**v, "p": None} if k == "stochasticdepth" else strip(v)
                    for k, v in value.items() if k != "_path"}
        return [strip(v) for v in value] if isinstance(value, list) else value

    ramped = _ramped(layer)
    body = strip({k: v for k, v in layer.items() if k != "name"})
    body["_ramp"] = [ramped.index(p) for p in ramped]
    return json.dumps(body, default=lambda v: f"{v.__module__}.{v.__qualname__}", sort_keys=True)


def _with_arguments(layers: list[Layer], arguments: dict[float, str], blocks: set[str]) -> list[Layer]:
    """A block's layers with each stochastic depth probability that varies between its uses (its own,
    or one it passes to a block inside) replaced by the block's argument (`$sd`)."""
    def argument(value: Any) -> Any:
        return f"${arguments[value]}" if isinstance(value, (int, float)) and value in arguments else value

    def put(layers: list[Layer]) -> list[Layer]:
        out = []
        for layer in layers:
            written: Layer = {}
            for key, value in layer.items():
                if key == "stochasticdepth":
                    written[key] = {**value, "p": argument(value["p"])}
                elif key in blocks:
                    written[key] = {name: argument(v) for name, v in value.items()}
                elif key == "repeat":
                    written[key] = {**value, "layers": put(value["layers"])}
                else:
                    written[key] = _map_children(value, put)
            out.append(written)
        return out

    return put(layers)


def _snake(name: str) -> str:
    """`_DenseLayer` -> `dense_layer`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower().lstrip("_") or "block"


class _Blocks:
    """Module calls that occur more than once, as blocks; runs of the same block, as repeats."""

    def __init__(self, layers: list[Layer]) -> None:
        self.count: dict[str, int] = {}
        self.ramps: dict[str, list[list[float]]] = {}  # key -> each call's distinct stochastic depth probabilities
        self._count(layers)
        self.blocks: dict[str, tuple[str, list[Layer], str]] = {}  # key -> (block name, layers, comment)
        self.params: dict[str, list[str]] = {}  # block name -> its arguments (sd, sd2, ...)
        self.varying: dict[str, list[int]] = {}  # block name -> which of a call's probabilities they are
        self.uses: dict[str, list[str]] = {}  # block name -> module paths that use it
        self.inline: set[str] = set()  # keys of calls written out where they stand

    def write(self, layers: list[Layer]) -> list[Layer]:
        """`emit`, with a block that ends up used once (and not as a repeat) written where it is used."""
        while True:
            self.blocks, self.uses, self.params, self.varying = {}, {}, {}, {}
            top = self.emit(layers)
            counts: dict[str, list[int]] = {name: [0, 0] for name in self.uses}
            for block_layers in [top, *(b[1] for b in self.blocks.values())]:
                _count_references(block_layers, counts, False)
            once = {key for key, (name, _, _) in self.blocks.items() if counts[name] == [1, 0]}
            if not once:
                return top
            self.inline |= once

    def _count(self, layers: list[Layer]) -> None:
        for layer in layers:
            if "_class" in layer:
                key = _key(layer)
                self.count[key] = self.count.get(key, 0) + 1
                self.ramps.setdefault(key, []).append(list(dict.fromkeys(_ramped(layer))))
            for inner in _children(layer):
                self._count(inner)

    def emit(self, layers: list[Layer]) -> list[Layer]:
        """The layers with repeated calls replaced by their block, consecutive ones by a repeat."""
        out: list[Layer] = []
        for layer in layers:
            layer = self.one(layer)
            previous = out[-1] if out else None
            op = next(k for k in layer if k != "name")
            if previous is not None and op in self.uses and op not in self.inline:
                if "repeat" in previous and previous["repeat"]["layers"][0] == {op: layer[op]}:
                    previous["repeat"]["times"] += 1
                    previous["name"] = f"{previous['name'].split('-')[0]}-{layer['name']}"
                    continue
                if op in previous and previous[op] == layer[op]:
                    out[-1] = {"name": f"{previous['name']}-{layer['name']}",
                               "repeat": {"times": 2, "layers": [{op: layer[op]}]}}
                    continue
            out.append(layer)
        return _unique_names(out)

    def one(self, layer: Layer) -> Layer:
        if "_class" in layer:
            key = _key(layer)
            if self.count[key] > 1 and key not in self.inline:
                name = self.block(key, layer)
                self.uses[name].append(layer["_path"])
                ramp = list(dict.fromkeys(_ramped(layer)))
                return {"name": layer["name"], name: {param: ramp[i] for param, i in
                                                      zip(self.params[name], self.varying[name])}}
            inner = self.emit(layer["sequential"])
            if len(inner) == 1:  # a module holding one layer (or one residual, gate...): that layer, named after it
                return {"name": layer["name"], **{k: v for k, v in inner[0].items() if k != "name"}}
            return {"name": layer["name"], "sequential": inner}
        return {k: _map_children(v, self.emit) for k, v in layer.items()}

    def block(self, key: str, layer: Layer) -> str:
        if key not in self.blocks:
            base = _snake(layer["_class"].__name__)
            base = f"{base}_block" if base in _RESERVED else base
            taken = {name for name, _, _ in self.blocks.values()}
            name = base if base not in taken else next(f"{base}_{i}" for i in itertools.count(2)
                                                       if f"{base}_{i}" not in taken)
            self.uses[name] = []
            ramps = self.ramps[key]
            self.varying[name] = [i for i in range(len(ramps[0])) if len({ramp[i] for ramp in ramps}) > 1]
            self.params[name] = [f"sd{n + 1 if n else ''}" for n in range(len(self.varying[name]))]
            self.blocks[key] = (name, [], class_name(layer["_class"]))
            first = list(dict.fromkeys(_ramped(layer)))
            arguments = {first[i]: param for param, i in zip(self.params[name], self.varying[name])}
            inside = self.emit(layer["sequential"])
            self.blocks[key][1].extend(_with_arguments(inside, arguments, set(self.uses) - {name}))
        return self.blocks[key][0]


def _count_references(layers: list[Layer], counts: dict[str, list[int]], repeated: bool) -> None:
    """counts[block] += [uses, uses as a repeat's layers]."""
    for layer in layers:
        for key, value in layer.items():
            if key in counts:
                counts[key][1 if repeated else 0] += 1
            elif key == "repeat":
                _count_references(value["layers"], counts, True)
        for inner in _children(layer):
            _count_references(inner, counts, False)


def _children(layer: Layer) -> list[list[Layer]]:
    lists = []
    for key, value in layer.items():
        if key in ("sequential", "gate", "auxiliary"):
            lists.append(value)
        elif key == "concat":
            lists.extend(value)
        elif key == "residual":
            lists.extend(value.values())
    return lists


def _map_children(value: Any, emit: Callable[[list[Layer]], list[Layer]]) -> Any:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return emit(value)
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return [emit(v) for v in value]
    if isinstance(value, dict) and ("body" in value or "shortcut" in value):
        return {k: emit(v) for k, v in value.items()}
    return value


def _unique_names(layers: list[Layer]) -> list[Layer]:
    seen: dict[str, int] = {}
    for layer in layers:
        name = layer.get("name")
        if name in seen:
            seen[name] += 1
            layer["name"] = f"{name}_{seen[name]}"
        elif name is not None:
            seen[name] = 0
    return layers


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "null"}


def _flow(value: Any) -> str:
    """`value` in YAML's flow style (yaml.safe_dump's, written directly: safe_dump takes 2 ms a layer)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str) and _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return value
    if value is None or isinstance(value, (bool, int)):
        return json.dumps(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    return text.removesuffix("\n...")  # floats as YAML reads them back (1.0e-05), strings quoted where needed


def _write_layers(layers: list[Layer], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for layer in layers:
        op = next(k for k in layer if k != "name")
        args = layer[op]
        name = f"name: {_flow(layer['name'])}" if "name" in layer else ""
        if op in ("sequential", "gate", "auxiliary") or (op == "repeat" and len(_flow(args)) > 80):
            lines.append(f"{pad}- {name}" if name else f"{pad}-")
            lines.append(f"{pad}  {op}:")
            if op == "repeat":
                lines.append(f"{pad}    times: {args['times']}")
                lines.append(f"{pad}    layers:")
                lines.extend(_write_layers(args["layers"], indent + 6))
            else:
                lines.extend(_write_layers(args, indent + 4))
        elif op == "residual":
            lines.append(f"{pad}- {name}")
            lines.append(f"{pad}  residual:")
            for part in ("body", "shortcut"):
                if part in args:
                    lines.append(f"{pad}    {part}:")
                    lines.extend(_write_layers(args[part], indent + 6))
        elif op == "concat":
            lines.append(f"{pad}- {name}")
            lines.append(f"{pad}  concat:")
            for branch in args:
                branch_lines = _write_layers(branch, indent + 6)
                lines.append(f"{pad}    - " + branch_lines[0].lstrip())
                lines.extend(branch_lines[1:])
        else:
            flow = {op: args, **({"name": layer["name"]} if "name" in layer else {})}
            comment = "  # a placeholder: not counted" if op == "unknown" else ""
            lines.append(f"{pad}- {_flow(flow)}{comment}")
    return lines


@dataclass(frozen=True)
class Imported:
    """An imported module: its YAML text, the Model it loads as, and the calls kept as placeholders."""

    text: str
    model: Model
    unknown: tuple[str, ...]


def _header(name: str, source: str, shape: tuple[int, ...], unknown: list[str]) -> list[str]:
    size = "x".join(map(str, shape))
    lines = [f"# Imported by archcalc {__version__} (archcalc import) from {source}, traced with torch.fx",
             f"# {torch.__version__} at input {size}. Layer names are the module paths ('.' nests, layer1.0 ->",
             "# layer1 / layer1_0); a block is a module class called more than once with the same layers",
             "# (their stochastic depth probabilities, which torchvision ramps layer by layer, as arguments: sd)."]
    if unknown:
        lines.append(f"# {len(unknown)} call(s) had no archcalc op and are zero-cost `unknown` placeholders "
                     "(not counted): " + "; ".join(unknown))
    return lines


def convert(module: nn.Module, input: tuple[int, ...], *, name: str | None = None, source: str | None = None,
            allow_unknown: bool = False) -> Imported:
    """Trace `module` and write it as an archcalc spec (see the module docstring)."""
    if not isinstance(module, nn.Module):
        raise SpecError(f"import: expected a torch.nn.Module, got {type(module).__name__}")
    shape = tuple(int(v) for v in input)
    root = type(module)
    source = source or f"{root.__module__}.{root.__qualname__}"
    mapper = _map(module, shape)
    unknown = _distinct(mapper.unmapped)
    if unknown and not allow_unknown:
        raise SpecError("import: " + "; ".join(unknown) + " (--allow-unknown keeps them as zero-cost placeholders)")
    try:
        layers = structure(mapper)
    except Unmapped as err:
        raise SpecError(f"import: {root.__name__}: {err}") from None
    blocks = _Blocks(layers)
    top = blocks.write(layers)
    model_name = name or _snake(root.__name__).replace("_", "-")
    size = "x".join(map(str, shape))
    lines = _header(model_name, source, shape, unknown)
    lines += [f"name: {_flow(model_name)}",
              f"description: {_flow(f'{root.__name__} imported from {source} at input {size}')}",
              f"source: {_flow(f'{source}, traced by archcalc import (torch.fx, torch {torch.__version__})')}",
              f"input: {_flow(list(shape))}"]
    if blocks.blocks:
        lines.append("blocks:")
        for block_name, block_layers, cls in blocks.blocks.values():
            uses = blocks.uses[block_name]
            lines.append(f"  # {cls}, at {', '.join(uses[:6])}{', ...' if len(uses) > 6 else ''}")
            lines.append(f"  {block_name}:")
            if blocks.params[block_name]:
                lines.append(f"    params: {_flow(blocks.params[block_name])}  # stochastic depth probabilities")
            lines.append("    layers:")
            lines.extend(_write_layers(block_layers, 6))
    lines.append("layers:")
    lines.extend(_write_layers(top, 2))
    text = "\n".join(lines) + "\n"
    from archcalc.loader import SpecFile
    from archcalc.yamlfile import parse

    label = f"<imported {model_name}>"
    model = SpecFile(label, parse(text, label)).model(model_name, None)
    return Imported(text, model, tuple(unknown))


def _distinct(unmapped: list[tuple[str, Unmapped, Step]]) -> list[str]:
    """Each distinct unmapped call once, where it first occurs: `where: what`, with `(+N more)` for the
    same call of the same class elsewhere (a MaxVit built with nn.Mish: 17 places come to 2)."""
    places: dict[tuple[str, str], list[str]] = {}
    for where, err, _ in unmapped:
        places.setdefault((where[where.find(" ("):], str(err)), []).append(where)
    return [f"{wheres[0]}{f' (+{len(wheres) - 1} more)' if len(wheres) > 1 else ''}: {err}"
            for (_, err), wheres in places.items()]


def from_module(module: nn.Module, input: tuple[int, ...], *, name: str | None = None,
                allow_unknown: bool = False) -> Model:
    """The Model of a torch module (`archcalc.from_module`)."""
    return convert(module, input, name=name, allow_unknown=allow_unknown).model


# ---- MODULE_REF: a callable that builds the module -------------------------------------------


def build_from_ref(ref: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """`pkg.mod:callable` or `path/to/file.py:callable`, called with kwargs on the meta device."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise SpecError(f"import: {ref!r} is not MODULE:CALLABLE or FILE.py:CALLABLE")
    import importlib
    import importlib.util

    try:
        if target.endswith(".py") or os.sep in target:
            path = Path(target)
            if not path.is_file():
                raise SpecError(f"import: {target}: no such file")
            spec = importlib.util.spec_from_file_location(f"_archcalc_import_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        elif target.startswith("torchvision"):
            from archcalc.torchvision_check import import_torchvision

            import_torchvision()
            module = importlib.import_module(target)
        else:
            module = importlib.import_module(target)
    except SpecError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's code may raise anything
        raise SpecError(f"import: {target} cannot be imported: {type(err).__name__}: {_first_line(err)}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise SpecError(f"import: {target} has no callable {attr!r}")
    try:
        built = build_on_meta(factory, kwargs or {})
    except Exception as err:  # noqa: BLE001
        raise SpecError(f"import: {ref}({_flow(kwargs or {})}) raised {type(err).__name__}: {_first_line(err)}") \
            from None
    if not isinstance(built, nn.Module):
        raise SpecError(f"import: {ref} returned {type(built).__name__}, not a torch.nn.Module")
    return built


class _WeightsOnMeta(torch.overrides.TorchFunctionMode):
    """Tensors made empty, zeroed or random (what layers make their weights with) go on the meta
    device; those made from data (torch.arange, torch.tensor) and what is computed from them stay real."""

    FACTORIES = frozenset({torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint})

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = dict(kwargs or {})
        if func in self.FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def build_on_meta(factory: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """factory(**kwargs) with its weights on the meta device, never allocated. Under
    torch.device("meta"); a builder that computes its widths with torch and reads them back (RegNet's
    `.tolist()`) cannot run there, so it runs again with only its weights sent to the meta device."""
    try:
        with torch.device("meta"):
            return factory(**kwargs)
    except Exception as err:  # noqa: BLE001 - retried below; what it raises there is the error
        if "meta" not in str(err):
            raise
    with _WeightsOnMeta():
        return factory(**kwargs)


def write_atomically(path: Path, text: str) -> None:
    """Write all of `text` or nothing: a temporary file beside `path`, then renamed onto it."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
