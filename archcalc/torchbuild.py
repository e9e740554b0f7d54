"""Build a trainable torch.nn.Module from a spec, its submodules named by the calculator's row paths.

`build_module("resnet18").get_submodule("layer2.first.residual.shortcut.conv")` is the layer
whose row is named `layer2.first.residual.shortcut.conv` in `archcalc table resnet18`.
The builder does not ask the calculator for shapes: every layer's input channels and
features come from torch itself (a meta-device tensor is pushed through each module as it
is built), so the cross-check compares two independent derivations. torch is imported
here only; `import archcalc` never loads this module.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from archcalc import spec as S
from archcalc.analysis import child_keys, run
from archcalc.errors import SpecError
from archcalc.ops.attention import CPB_HIDDEN
from archcalc.ops.common import ChannelsLast
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
    """A learned scale per channel: `weight` is C x 1 x 1 on a channels-first map (ConvNeXt's
    `layer_scale`), else shaped as the last dim (channels-last maps, tokens, vectors)."""

    def __init__(self, shape: tuple[int, ...], init_value: float) -> None:
        super().__init__()
        self.init_value = init_value
        channels_first = len(shape) == 4 and shape.__class__ is not ChannelsLast
        self.weight = nn.Parameter(torch.empty((shape[1], 1, 1) if channels_first else (shape[-1],)))
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
# ---- tokens, channels-last maps and attention -------------------------------------------


class Leaf(nn.Module):
    """A leaf layer whose submodules are its own parts, named as torch / torchvision name them
    (attention's `out_proj`, `qkv`, `proj`), not layers of the spec."""


def is_leaf(module: nn.Module) -> bool:
    """A module that is one calculator row: no submodules, or a `Leaf`."""
    return not module._modules or isinstance(module, Leaf)


def layer_modules(net: nn.Module) -> dict[str, nn.Module]:
    """Named modules that are the spec's layers and composites: a `Leaf`'s own parts left out."""
    modules: dict[str, nn.Module] = {}
    inside: tuple[str, ...] = ()  # prefixes of the leaves met so far
    for name, module in net.named_modules():
        if not name.startswith(inside):
            modules[name] = module
            if isinstance(module, Leaf):
                inside += (name + ".",)
    return modules


class Permute(nn.Module):
    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)

    def extra_repr(self) -> str:
        return f"dims={list(self.dims)}"


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of a channels-first map (torchvision's ConvNeXt LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Tokens(nn.Module):
    """N x C x H x W -> N x H*W x C, as ViT's patch embedding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class ClassToken(nn.Module):
    """ViT's learned class token, `class_token` (1 x 1 x D, zeros at first), prepended to every sample."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.class_token)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)


class PositionEmbedding(nn.Module):
    """ViT's learned `pos_embedding` (1 x N x D, normal with std 0.02 at first), added to the tokens."""

    def __init__(self, tokens: int, width: int) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens, width))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.pos_embedding, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos_embedding


class SelectToken(nn.Module):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]

    def extra_repr(self) -> str:
        return f"index={self.index}"


class MeanTokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, dropout: float,
            training: bool) -> torch.Tensor:
    """softmax(q k^T + bias) v over heads, as explicit matmuls (FlopCounterMode and fvcore see both)."""
    scores = q @ k.transpose(-2, -1)
    if bias is not None:
        scores = scores + bias
    return F.dropout(scores.softmax(dim=-1), dropout, training) @ v


class MultiheadAttention(Leaf):
    """Self-attention over tokens with torch.nn.MultiheadAttention's parameters (`in_proj_weight`,
    `in_proj_bias`, `out_proj`), computed with explicit matmuls: torch's own module takes a fused
    path under no_grad that FlopCounterMode does not see into."""

    def __init__(self, width: int, num_heads: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width)) if bias else None
        self.out_proj = nn.Linear(width, width, bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:  # torch's MultiheadAttention._reset_parameters
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n, width = x.shape
        heads = self.num_heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(
            batch, n, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        out = _attend(q * (width // heads) ** -0.5, k, v, None, self.dropout, self.training)
        # out_proj's weights, not its call, as torch's own: forward hooks see the same layers
        return F.linear(out.transpose(1, 2).reshape(batch, n, width), self.out_proj.weight, self.out_proj.bias)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, dropout={self.dropout}"


def _relative_position_index(wh: int, ww: int) -> torch.Tensor:
    """For each pair of positions (i, j) in a wh x ww window, the row of their offset in a
    (2wh-1) x (2ww-1) table: (dy + wh - 1) * (2ww - 1) + dx + ww - 1, flattened."""
    ys, xs = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy, dx = ys[:, None] - ys[None, :], xs[:, None] - xs[None, :]
    return ((dy + wh - 1) * (2 * ww - 1) + dx + ww - 1).flatten()


def _shift_mask(height: int, width: int, window: tuple[int, int], shift: tuple[int, int], device) -> torch.Tensor:
    """windows x N x N: -100 where two positions of a shifted window came from different regions of
    the map before the cyclic shift (they must not attend to each other), else 0."""
    region = torch.zeros(height, width, device=device)
    label = 0
    for rows in (slice(0, -window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None)):
        for cols in (slice(0, -window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None)):
            region[rows, cols] = label
            label += 1
    region = region.view(height // window[0], window[0], width // window[1], window[1]).transpose(1, 2)
    region = region.reshape(-1, window[0] * window[1])
    differ = region[:, None, :] != region[:, :, None]
    return torch.zeros(differ.shape, device=device).masked_fill(differ, -100.0)


class ShiftedWindowAttention(Leaf):
    """Swin's window attention on N x H x W x C, with torchvision's ShiftedWindowAttention parameters
    (`relative_position_bias_table`, buffer `relative_position_index`, `qkv`, `proj`): pad to whole
    windows, roll by -shift, attend within each window (+ the position bias, + the shift mask), roll
    back, crop. No shift where one window covers the padded side."""

    relative_position_index: torch.Tensor

    def __init__(self, width: int, window: tuple[int, int], shift: tuple[int, int], num_heads: int,
                 qkv_bias: bool, proj_bias: bool, attention_dropout: float, dropout: float) -> None:
        super().__init__()
        self.window, self.shift, self.num_heads = window, shift, num_heads
        self.attention_dropout, self.dropout = attention_dropout, dropout
        self.qkv = nn.Linear(width, 3 * width, qkv_bias)
        self.proj = nn.Linear(width, width, proj_bias)
        self.define_position_bias()
        self.reset_parameters()

    def define_position_bias(self) -> None:
        (wh, ww), heads = self.window, self.num_heads
        self.relative_position_bias_table = nn.Parameter(torch.empty((2 * wh - 1) * (2 * ww - 1), heads))
        self.register_buffer("relative_position_index", _relative_position_index(wh, ww))

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def reset_buffers(self) -> None:
        self.relative_position_index.copy_(_relative_position_index(*self.window))

    def position_bias(self) -> torch.Tensor:
        n = self.window[0] * self.window[1]
        table = self.relative_position_bias_table
        return table[self.relative_position_index].view(n, n, -1).permute(2, 0, 1)  # heads x N x N

    def scores_of(self, q: torch.Tensor, k: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """What the softmax's matmul takes: q scaled by 1/sqrt(head width), and k."""
        return q * (width // self.num_heads) ** -0.5, k

    def qkv_bias(self) -> torch.Tensor | None:
        return self.qkv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        (wh, ww), heads = self.window, self.num_heads
        x = F.pad(x, (0, 0, 0, -width % ww, 0, -height % wh))
        ph, pw = x.shape[1], x.shape[2]
        shift = (self.shift[0] if wh < ph else 0, self.shift[1] if ww < pw else 0)
        if any(shift):
            x = torch.roll(x, (-shift[0], -shift[1]), dims=(1, 2))
        rows, cols = ph // wh, pw // ww
        windows = x.view(batch, rows, wh, cols, ww, channels).transpose(2, 3).reshape(-1, wh * ww, channels)
        n = wh * ww
        q, k, v = F.linear(windows, self.qkv.weight, self.qkv_bias()).view(
            -1, n, 3, heads, channels // heads).permute(2, 0, 3, 1, 4)
        q, k = self.scores_of(q, k, channels)
        bias = self.position_bias()
        if any(shift):  # per window: batch x windows x heads x N x N
            bias = bias + _shift_mask(ph, pw, self.window, shift, x.device)[:, None]
            bias = bias.repeat(batch, 1, 1, 1)
        out = _attend(q, k, v, bias, self.attention_dropout, self.training)
        out = F.linear(out.transpose(1, 2).reshape(-1, n, channels), self.proj.weight, self.proj.bias)
        out = F.dropout(out, self.dropout, self.training)
        out = out.view(batch, rows, cols, wh, ww, channels).transpose(2, 3).reshape(batch, ph, pw, channels)
        if any(shift):
            out = torch.roll(out, shift, dims=(1, 2))
        return out[:, :height, :width].contiguous()

    def extra_repr(self) -> str:
        return f"window={list(self.window)}, shift={list(self.shift)}, num_heads={self.num_heads}"


class ShiftedWindowAttentionV2(ShiftedWindowAttention):
    """Swin V2's, with torchvision's ShiftedWindowAttentionV2 parameters (`logit_scale`, `cpb_mlp`,
    buffers `relative_coords_table` and `relative_position_index`): cosine attention scaled by
    exp(min(logit_scale, log 100)) per head, and a bias 16 sigmoid(cpb_mlp(coordinates)); the
    key's third of the qkv bias is held at zero."""

    relative_coords_table: torch.Tensor

    def __init__(self, *args: Any, pretrained_window: tuple[int, int] = (0, 0), **kwargs: Any) -> None:
        self.pretrained_window = pretrained_window
        super().__init__(*args, **kwargs)

    def define_position_bias(self) -> None:
        heads = self.num_heads
        self.logit_scale = nn.Parameter(torch.empty(heads, 1, 1))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, CPB_HIDDEN), nn.ReLU(inplace=True), nn.Linear(CPB_HIDDEN, heads, False))
        self.register_buffer("relative_coords_table", self._coords_table())
        self.register_buffer("relative_position_index", _relative_position_index(*self.window))

    def _coords_table(self) -> torch.Tensor:
        """1 x (2wh-1) x (2ww-1) x 2 offsets, scaled to [-8, 8] by the (pretrained) window, log-spaced."""
        (wh, ww), (pwh, pww) = self.window, self.pretrained_window
        dy = torch.arange(1 - wh, wh, dtype=torch.float32) / ((pwh if pwh > 0 else wh) - 1 or 1)
        dx = torch.arange(1 - ww, ww, dtype=torch.float32) / ((pww if pww > 0 else ww) - 1 or 1)
        table = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1)[None] * 8
        return torch.sign(table) * torch.log2(table.abs() + 1.0) / 3.0

    def reset_parameters(self) -> None:
        nn.init.constant_(self.logit_scale, math.log(10.0))
        if self.qkv.bias is not None:
            with torch.no_grad():
                third = self.qkv.bias.numel() // 3
                self.qkv.bias[third:2 * third].zero_()

    def reset_buffers(self) -> None:
        super().reset_buffers()
        self.relative_coords_table.copy_(self._coords_table())

    def position_bias(self) -> torch.Tensor:
        n, heads = self.window[0] * self.window[1], self.num_heads
        table = self.cpb_mlp(self.relative_coords_table).view(-1, heads)
        return 16 * torch.sigmoid(table[self.relative_position_index].view(n, n, heads).permute(2, 0, 1))

    def scores_of(self, q: torch.Tensor, k: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        scale = torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        return F.normalize(q, dim=-1) * scale, F.normalize(k, dim=-1)

    def qkv_bias(self) -> torch.Tensor | None:
        bias = self.qkv.bias
        if bias is None:
            return None
        third = bias.numel() // 3
        return torch.cat([bias[:third], torch.zeros_like(bias[third:2 * third]), bias[2 * third:]])


class PartitionAttention(Leaf):
    """MaxViT's attention on N x H x W x C, with torchvision's RelativePositionalMultiHeadAttention
    parameters (`relative_position_bias_table`, buffer `relative_position_index`, `to_qkv`, `merge`):
    the map cut into groups of p_h x p_w positions (a window: adjacent; a grid: H / p_h and W / p_w
    apart, which torchvision gets by partitioning into H / p windows and swapping the two axes),
    attention within each group with the position bias, K scaled by 1/sqrt(C) as torchvision's,
    and the positions put back."""

    relative_position_index: torch.Tensor

    def __init__(self, width: int, partition: tuple[int, int], head_dim: int, grid: bool) -> None:
        super().__init__()
        self.partition, self.num_heads, self.grid = partition, width // head_dim, grid
        self.to_qkv = nn.Linear(width, 3 * width)
        self.merge = nn.Linear(width, width)
        (ph, pw), heads = partition, self.num_heads
        self.relative_position_bias_table = nn.Parameter(torch.empty((2 * ph - 1) * (2 * pw - 1), heads))
        self.register_buffer("relative_position_index", _relative_position_index(ph, pw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def reset_buffers(self) -> None:
        self.relative_position_index.copy_(_relative_position_index(*self.partition))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        (ph, pw), heads = self.partition, self.num_heads
        rows, cols = height // ph, width // pw
        # (batch, group row, group col, row in group, col in group, C)
        if self.grid:  # the positions of a group are `rows` and `cols` apart
            groups = x.view(batch, ph, rows, pw, cols, channels).permute(0, 2, 4, 1, 3, 5)
        else:
            groups = x.view(batch, rows, ph, cols, pw, channels).permute(0, 1, 3, 2, 4, 5)
        n = ph * pw  # batch x groups x n x C, as torchvision's linears see it
        q, k, v = self.to_qkv(groups.reshape(batch, rows * cols, n, channels)).view(
            batch, rows * cols, n, 3, heads, channels // heads).permute(3, 0, 1, 4, 2, 5)
        bias = self.relative_position_bias_table[self.relative_position_index].view(n, n, -1).permute(2, 0, 1)
        out = _attend(q, k * channels ** -0.5, v, bias, 0.0, self.training)
        out = self.merge(out.transpose(2, 3).reshape(batch, rows * cols, n, channels))
        out = out.view(batch, rows, cols, ph, pw, channels)
        out = out.permute(0, 3, 1, 4, 2, 5) if self.grid else out.permute(0, 1, 3, 2, 4, 5)
        return out.reshape(batch, height, width, channels)

    def extra_repr(self) -> str:
        kind = "grid" if self.grid else "window"
        return f"{kind}={list(self.partition)}, num_heads={self.num_heads}"


class PatchMerge(nn.Module):
    """N x H x W x C -> N x ceil(H/2) x ceil(W/2) x 4C: each 2 x 2 patch's four positions, in
    torchvision's order (0,0), (1,0), (0,1), (1,1), on channels; odd sides zero-padded."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
        return torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)


def _layernorm(s: S.LayerNorm, shape) -> nn.Module:
    channels_first = len(shape) == 4 and shape.__class__ is not ChannelsLast
    norm = LayerNorm2d if channels_first else nn.LayerNorm
    return norm(shape[1] if channels_first else shape[-1], s.eps, s.elementwise_affine, s.bias)


def _window_attention(s: S.ShiftedWindowAttention, shape) -> ShiftedWindowAttention:
    args = (shape[-1], pair(s.window_size), pair(s.shift_size), s.num_heads, s.qkv_bias, s.proj_bias,
            s.attention_dropout, s.dropout)
    if isinstance(s, S.ShiftedWindowAttentionV2):
        return ShiftedWindowAttentionV2(*args, pretrained_window=pair(s.pretrained_window_size))
    return ShiftedWindowAttention(*args)


class Network(Sequence):
    """A whole spec as a module; `spec` is the Model it was built from."""

    def __init__(self, children: Mapping[str, nn.Module], spec: Model) -> None:
        self.__dict__["spec"] = spec  # before the children, so that a layer named `spec` is refused
        super().__init__(children, kind=spec.name)


# ---- leaf layers ------------------------------------------------------------------------


def _placeholder(layer: S.Unknown, shape: tuple[int, ...]) -> nn.Module:
    raise SpecError(f"{layer.what} is a placeholder of `archcalc import --allow-unknown`: it has no torch module to build",
                    op="unknown")

# layer spec, incoming shape (batch first) -> module
LEAF_BUILDERS: dict[type[Node], Callable[[Any, tuple[int, ...]], nn.Module]] = {
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
    S.Permute: lambda s, shape: Permute(s.dims),
    S.LayerNorm: _layernorm,
    S.Tokens: lambda s, shape: Tokens(),
    S.ClassToken: lambda s, shape: ClassToken(shape[-1]),
    S.PositionEmbedding: lambda s, shape: PositionEmbedding(shape[1], shape[2]),
    S.SelectToken: lambda s, shape: SelectToken(s.index),
    S.MeanTokens: lambda s, shape: MeanTokens(),
    S.MultiheadAttention: lambda s, shape: MultiheadAttention(shape[-1], s.num_heads, s.dropout, s.bias),
    S.ShiftedWindowAttention: _window_attention,
    S.ShiftedWindowAttentionV2: _window_attention,
    S.PartitionAttention: lambda s, shape: PartitionAttention(
        shape[-1], pair(s.partition_size), s.head_dim, s.partition_type == "grid"),
    S.PatchMerge: lambda s, shape: PatchMerge(),
    S.Unknown: _placeholder,
}


class _Builder:
    """Walks the spec with the calculator's naming rules, pushing a meta tensor along."""

    def __init__(self) -> None:
        self.frozen: list[nn.Module] = []  # leaves under `trainable: false`
        self.inputs: dict[BlockInput, int] = {}  # what in_channels is for each block being built
        # a 4-d tensor's layout, which its shape cannot tell: channels last after a permute [0, 2, 3, 1]
        self.channels_last = False

    def width(self, x: torch.Tensor) -> int:
        """What `in_channels` means for this tensor: C of a channels-first (B, C, H, W) map, else the last dim."""
        return x.shape[1] if x.dim() == 4 and not self.channels_last else x.shape[-1]

    def children(self, layers: Layers, x: torch.Tensor, path: Path, trainable: bool) -> tuple[dict, torch.Tensor]:
        built = {}
        for key, layer in zip(child_keys(layers), layers):
            if isinstance(layer, S.Repeat) and layer.inline:  # its copies are this list's children
                for copy in range(int(key), int(key) + layer.times):
                    built[str(copy)], x = self.branch(layer.layers, x, (*path, str(copy)), trainable and layer.trainable)
                continue
            built[key], x = self.layer(layer, x, (*path, key), trainable)
        return built, x

    def branch(self, layers: Layers, x: torch.Tensor, path: Path, trainable: bool) -> tuple[nn.Module, torch.Tensor]:
        """A branch, residual side or repeat copy: a single layer is the module itself."""
        if len(layers) == 1:
            return self.layer(layers[0], x, path, trainable)
        built, x = self.children(layers, x, path, trainable)
        return _located(Sequence, path, built), x

    def parallel(self, layers: Layers, x: torch.Tensor, path: Path, trainable: bool,
                 layout: bool) -> tuple[nn.Module, torch.Tensor]:
        """A branch beside another on the same input, whose layout is `layout`."""
        self.channels_last = layout
        return self.branch(layers, x, path, trainable)

    def layer(self, layer: Node, x: torch.Tensor, path: Path, trainable: bool) -> tuple[nn.Module, torch.Tensor]:
        trainable = trainable and layer.trainable
        if layer.deferred:
            layer = resolved(layer, self.inputs)
        make = LEAF_BUILDERS.get(type(layer))
        if make is not None:
            module = make(layer, ChannelsLast(x.shape) if self.channels_last else x.shape)
            if not trainable:
                self.frozen.append(module)
            y = module(x)
            if isinstance(layer, S.Permute):
                self.channels_last = tuple(layer.dims) == (0, 2, 3, 1)
            elif y.ndim != 4:
                self.channels_last = False
            return module, y
        if isinstance(layer, S.Sequential):
            if layer.block_input is not None:
                self.inputs[layer.block_input] = self.width(x)
            built, x = self.children(layer.layers, x, path, trainable)
            return _located(Sequence, path, built, layer.block or "sequential"), x
        if isinstance(layer, S.Gate):
            layout = self.channels_last
            built, y = self.children(layer.layers, x, path, trainable)
            self.channels_last = layout  # the product has the input's layout
            return _located(Gate, path, built), x * y
        if isinstance(layer, S.Auxiliary):
            layout = self.channels_last
            built, _ = self.children(layer.layers, x, path, trainable)
            self.channels_last = layout
            return _located(Auxiliary, path, built), x
        if isinstance(layer, S.Repeat):
            copies = {}
            for i in range(layer.times):
                copies[str(i)], x = self.branch(layer.layers, x, (*path, str(i)), trainable)
            return Sequence(copies, "repeat"), x
        if isinstance(layer, S.Concat):
            layout = self.channels_last
            branches = [self.parallel(b, x, (*path, str(i)), trainable, layout) for i, b in enumerate(layer.branches)]
            return Concat([m for m, _ in branches]), torch.cat([y for _, y in branches], dim=1)
        if isinstance(layer, S.Residual):
            layout = self.channels_last
            body, y = self.branch(layer.body, x, (*path, "body"), trainable)
            shortcut, s = (None, x)
            if layer.shortcut:
                shortcut, s = self.parallel(layer.shortcut, x, (*path, "shortcut"), trainable, layout)
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
            if hasattr(module, "reset_buffers"):  # attention's position indices: needed even without init
                module.reset_buffers()
            if init and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if not init:
            for tensor in net.parameters():
                tensor.zero_()
    for module in builder.frozen:
        module.requires_grad_(False)
    return net.to(dtype=dtype)
