"""Build a trainable torch.nn.Module from a spec, its submodules named by the calculator's row paths.

`build_module("resnet18").get_submodule("layer2.first.residual.shortcut.conv")` is the layer
whose row is named `layer2.first.residual.shortcut.conv` in `archcalc table resnet18`.
The builder does not ask the calculator for shapes: every layer's input channels and
features come from torch itself (a meta-device tensor is pushed through each module as it
is built), so the cross-check compares two independent derivations. torch is imported
here only; `import archcalc` never loads this module.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from archcalc import spec as S
from archcalc.analysis import child_keys, run
from archcalc.errors import SpecError
from archcalc.registry import SpecLike, load
from archcalc.expressions import BlockInput
from archcalc.spec import Layers, Model, Node, pair, resolved


# ---- composite modules ------------------------------------------------------------------


def _add_children(module: nn.Module, children: Mapping[str, nn.Module]) -> None:
    for key, child in children.items():
        try:
            module.add_module(key, child)
        except KeyError:  # a spec may name a layer `training` or `forward`; torch cannot
            raise SpecError(
                f"a layer named {key!r} cannot be a torch submodule ({type(module).__name__} already has an "
                f"attribute {key!r}): rename it to build the network"
            ) from None


class Sequence(nn.Sequential):
    """Layers in order: a spec's `sequential` or block, a repeat's copies, a multi-layer branch."""

    def __init__(self, children: Mapping[str, nn.Module], kind: str = "sequential") -> None:
        super().__init__()
        self.kind = kind
        _add_children(self, children)

    def extra_repr(self) -> str:
        return "" if self.kind == "sequential" else f"kind={self.kind}"


class Concat(nn.Module):
    """Branches `0, 1, ...` on the same input, joined on channels (Inception)."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        _add_children(self, {str(i): b for i, b in enumerate(branches)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], dim=1)


class Residual(nn.Module):
    """`body(x) + shortcut(x)`; without a `shortcut` child the shortcut is the identity."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class Gate(Sequence):
    """`x * layers(x)`, the layers' output broadcast over x (squeeze-and-excitation)."""

    def __init__(self, children: Mapping[str, nn.Module]) -> None:
        super().__init__(children, "gate")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * super().forward(x)


class Auxiliary(Sequence):
    """Layers whose parameters are part of the network but which do not run at inference:
    the input passes through (Inception-v3's auxiliary classifier, a training-time head)."""

    def __init__(self, children: Mapping[str, nn.Module]) -> None:
        super().__init__(children, kind="auxiliary")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ChannelPad(nn.Module):
    """Zero channels appended up to `out_channels` (the CIFAR ResNets' option A shortcut)."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - x.shape[1]))

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}"


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth: in training, zeroes a sample (`row`) or the whole batch with
    probability p and scales the rest by 1 / (1 - p); the identity in eval mode."""

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        keep = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        return x * keep.div_(1.0 - self.p) if self.p < 1.0 else x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class LayerScale(nn.Module):
    """A learned scale per channel: `weight` is C x 1 x 1 on a (batched) 4-d input, read as a
    channels-first map (ConvNeXt's `layer_scale`), else shaped as the last dim (tokens, vectors)."""

    def __init__(self, shape: torch.Size, init_value: float) -> None:
        super().__init__()
        self.init_value = init_value
        self.weight = nn.Parameter(torch.empty((shape[1], 1, 1) if len(shape) == 4 else (shape[-1],)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.fill_(self.init_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class Chunk(nn.Module):
    """`x.chunk(chunks, dim=1)[index]`."""

    def __init__(self, chunks: int, index: int) -> None:
        super().__init__()
        self.chunks, self.index = chunks, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.chunk(self.chunks, dim=1)[self.index]

    def extra_repr(self) -> str:
        return f"chunks={self.chunks}, index={self.index}"


class Network(Sequence):
    """A whole spec as a module; `spec` is the Model it was built from."""

    def __init__(self, children: Mapping[str, nn.Module], spec: Model) -> None:
        self.__dict__["spec"] = spec  # before the children, so that a layer named `spec` is refused
        super().__init__(children, kind=spec.name)


# ---- leaf layers ------------------------------------------------------------------------


def _placeholder(layer: S.Unknown, shape: torch.Size) -> nn.Module:
    raise SpecError(f"{layer.what} is a placeholder of `archcalc import --allow-unknown`: it has no torch module to build",
                    op="unknown")

# layer spec, incoming shape (batch first) -> module
LEAF_BUILDERS: dict[type[Node], Callable[[Any, torch.Size], nn.Module]] = {
    S.Conv2d: lambda s, shape: nn.Conv2d(
        shape[1], s.out_channels, pair(s.kernel_size), pair(s.stride),
        s.padding if isinstance(s.padding, str) else pair(s.padding), pair(s.dilation), s.groups, s.bias,
    ),
    S.MaxPool2d: lambda s, shape: nn.MaxPool2d(
        pair(s.kernel_size), None if s.stride is None else pair(s.stride), pair(s.padding), pair(s.dilation),
        ceil_mode=s.ceil_mode,
    ),
    S.AvgPool2d: lambda s, shape: nn.AvgPool2d(
        pair(s.kernel_size), None if s.stride is None else pair(s.stride), pair(s.padding), s.ceil_mode,
        s.count_include_pad,
    ),
    S.AdaptiveAvgPool2d: lambda s, shape: nn.AdaptiveAvgPool2d(pair(s.output_size)),
    S.Linear: lambda s, shape: nn.Linear(shape[-1], s.out_features, s.bias),
    S.BatchNorm2d: lambda s, shape: nn.BatchNorm2d(shape[1], s.eps, s.momentum, s.affine, s.track_running_stats),
    S.LocalResponseNorm: lambda s, shape: nn.LocalResponseNorm(s.size, s.alpha, s.beta, s.k),
    S.ReLU: lambda s, shape: nn.ReLU(),
    S.Sigmoid: lambda s, shape: nn.Sigmoid(),
    S.Tanh: lambda s, shape: nn.Tanh(),
    S.Softmax: lambda s, shape: nn.Softmax(s.dim),
    S.Dropout: lambda s, shape: nn.Dropout(s.p),
    S.Flatten: lambda s, shape: nn.Flatten(),
    S.ChannelPad: lambda s, shape: ChannelPad(s.out_channels),
    S.ReLU6: lambda s, shape: nn.ReLU6(),
    S.Hardswish: lambda s, shape: nn.Hardswish(),
    S.Hardsigmoid: lambda s, shape: nn.Hardsigmoid(),
    S.SiLU: lambda s, shape: nn.SiLU(),
    S.GELU: lambda s, shape: nn.GELU(s.approximate),
    S.Identity: lambda s, shape: nn.Identity(),
    S.StochasticDepth: lambda s, shape: StochasticDepth(s.p, s.mode),
    S.LayerScale: lambda s, shape: LayerScale(shape, s.init_value),
    S.ChannelShuffle: lambda s, shape: nn.ChannelShuffle(s.groups),
    S.Chunk: lambda s, shape: Chunk(s.chunks, s.index),
    S.Unknown: _placeholder,
}


class _Builder:
    """Walks the spec with the calculator's naming rules, pushing a meta tensor along."""

    def __init__(self) -> None:
        self.frozen: list[nn.Module] = []  # leaves under `trainable: false`
        self.inputs: dict[BlockInput, int] = {}  # what in_channels is for each block being built

    @staticmethod
    def width(x: torch.Tensor) -> int:
        """What `in_channels` means for this tensor: C of a (B, C, H, W) map, else the last dim."""
        return x.shape[1] if x.dim() == 4 else x.shape[-1]

    def children(self, layers: Layers, x: torch.Tensor, path: Path, trainable: bool) -> tuple[dict, torch.Tensor]:
        built = {}
        for key, layer in zip(child_keys(layers), layers):
            built[key], x = self.layer(layer, x, (*path, key), trainable)
        return built, x

    def branch(self, layers: Layers, x: torch.Tensor, path: Path, trainable: bool) -> tuple[nn.Module, torch.Tensor]:
        """A branch, residual side or repeat copy: a single layer is the module itself."""
        if len(layers) == 1:
            return self.layer(layers[0], x, path, trainable)
        built, x = self.children(layers, x, path, trainable)
        return _located(Sequence, path, built), x

    def layer(self, layer: Node, x: torch.Tensor, path: Path, trainable: bool) -> tuple[nn.Module, torch.Tensor]:
        trainable = trainable and layer.trainable
        if layer.deferred:
            layer = resolved(layer, self.inputs)
        make = LEAF_BUILDERS.get(type(layer))
        if make is not None:
            module = make(layer, x.shape)
            if not trainable:
                self.frozen.append(module)
            return module, module(x)
        if isinstance(layer, S.Sequential):
            if layer.block_input is not None:
                self.inputs[layer.block_input] = self.width(x)
            built, x = self.children(layer.layers, x, path, trainable)
            return _located(Sequence, path, built, layer.block or "sequential"), x
        if isinstance(layer, S.Gate):
            built, y = self.children(layer.layers, x, path, trainable)
            return _located(Gate, path, built), x * y
        if isinstance(layer, S.Auxiliary):
            built, _ = self.children(layer.layers, x, path, trainable)
            return _located(Auxiliary, path, built), x
        if isinstance(layer, S.Repeat):
            copies = {}
            for i in range(layer.times):
                copies[str(i)], x = self.branch(layer.layers, x, (*path, str(i)), trainable)
            return Sequence(copies, "repeat"), x
        if isinstance(layer, S.Concat):
            branches = [self.branch(b, x, (*path, str(i)), trainable) for i, b in enumerate(layer.branches)]
            return Concat([m for m, _ in branches]), torch.cat([y for _, y in branches], dim=1)
        if isinstance(layer, S.Residual):
            body, y = self.branch(layer.body, x, (*path, "body"), trainable)
            shortcut, s = (None, x)
            if layer.shortcut:
                shortcut, s = self.branch(layer.shortcut, x, (*path, "shortcut"), trainable)
            return Residual(body, shortcut), y + s
        raise TypeError(f"{type(layer).__name__} is not a layer archcalc knows")


Path = tuple[str, ...]


def _located(cls, path: Path, *args):
    """cls(*args), a refused child name reported at the container's module path."""
    try:
        return cls(*args)
    except SpecError as err:
        raise err.located(path=".".join(path) or "layers") from None


def build_module(
    spec: SpecLike,
    *,
    input: tuple[int, ...] | None = None,
    params: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    init: bool = True,
    validate: bool = True,
) -> Network:
    """The spec as a torch module in training mode, ready for an optimizer.

    `spec` is a built-in name, a YAML path or a Model; `input` (C, H, W) or (F,) overrides the
    spec's input, which decides the first layers' in_channels and every linear's in_features.
    `validate` runs the calculator first so that a bad spec raises SpecError with its file and
    line; without it torch's own errors surface. `init=False` zeroes the weights instead of
    torch's random initialisation (VGG-19: 0.1 s instead of 5 s; for measuring shapes, costs
    and speed, not for training). `trainable: false` layers get requires_grad=False.
    """
    model = load(spec, params)
    shape = tuple(input) if input is not None else model.input
    if validate:
        run(model, input=shape)
    builder = _Builder()
    with torch.device("meta"):
        x = torch.empty((2, *shape))  # 2: batch norm in training mode refuses one value per channel
        if model.block_input is not None:
            builder.inputs[model.block_input] = builder.width(x)
        children, _ = builder.children(model.layers, x, (), True)
        net = _located(Network, (), children, model)
    net.to_empty(device=device)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.reset_running_stats()  # running mean 0, variance 1: needed even without init
            if init and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if not init:
            for tensor in net.parameters():
                tensor.zero_()
    for module in builder.frozen:
        module.requires_grad_(False)
    return net.to(dtype=dtype)
