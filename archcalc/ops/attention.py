"""Attention: multi-head self-attention over tokens, and Swin's shifted window attention and
MaxViT's partition attention over a channels-last map. MACs count the four projections and the
two activation-by-activation matmuls (Q K^T and attention x V), each of which fvcore counts one
per multiply-add; a relative position bias is a gather and an add, no MACs."""

from __future__ import annotations

from typing import Any, Callable

from archcalc.errors import SpecError
from archcalc.ops.common import GLOBAL, ChannelsLast, Cost, Line, check_in, describe_shape, new, times
from archcalc.ops.tokens import sequence
from archcalc.ops.windows import kxk
from archcalc.spec import MultiheadAttention, PartitionAttention, ShiftedWindowAttention, ShiftedWindowAttentionV2, pair

CPB_HIDDEN = 512  # Swin V2's continuous position bias MLP: 2 -> 512 -> heads (torchvision)


def _heads(width: int, heads: int) -> None:
    if width % heads:
        raise SpecError(f"the width {width} is not divisible by num_heads {heads}")


def multiheadattention(layer: MultiheadAttention, shape) -> Cost:
    n, d = sequence(shape, "multiheadattention")
    check_in(layer.embed_dim, d, "embed_dim")
    _heads(d, layer.num_heads)
    params = 4 * d * d + (4 * d if layer.bias else 0)  # packed in_proj (3D x D) and out_proj (D x D)
    macs = 4 * n * d * d + 2 * n * n * d
    return new(Cost, (shape, params, macs, macs, GLOBAL))


def _channels_last(shape, op: str) -> tuple[int, int, int]:
    """A channels-last H x W x C input, or the error that says what came instead."""
    if len(shape) != 3 or shape.__class__ is not ChannelsLast:
        raise SpecError(
            f"{op} needs a channels-last H x W x C map, got {describe_shape(shape)}: "
            "add a permute [0, 2, 3, 1] before it"
        )
    return shape  # type: ignore[return-value]


def shiftedwindowattention(layer: ShiftedWindowAttention, shape) -> Cost:
    h, w, c = _channels_last(shape, layer.OP)
    _heads(c, layer.num_heads)
    (wh, ww), heads = pair(layer.window_size), layer.num_heads
    # torchvision pads the map to whole windows, and computes everything at the padded size
    padded = -(-h // wh) * wh * -(-w // ww) * ww
    window = wh * ww
    params = 4 * c * c + (3 * c if layer.qkv_bias else 0) + (c if layer.proj_bias else 0)
    macs = padded * (4 * c * c + 2 * window * c)
    if layer.__class__ is ShiftedWindowAttentionV2:
        bias_mlp = (2 * CPB_HIDDEN + CPB_HIDDEN) + CPB_HIDDEN * heads  # linear 2 -> 512 with bias, 512 -> heads
        params += heads + bias_mlp  # and a logit scale per head
    else:
        params += (2 * wh - 1) * (2 * ww - 1) * heads  # the relative position bias table
    # a position sees the positions of its window: at most the whole (unpadded) map
    return new(Cost, (shape, params, macs, macs, (min(wh, h), min(ww, w), 1, 1)))


def partitionattention(layer: PartitionAttention, shape) -> Cost:
    h, w, c = _channels_last(shape, layer.OP)
    if c % layer.head_dim:
        raise SpecError(f"the width {c} is not divisible by head_dim {layer.head_dim}")
    ph, pw = pair(layer.partition_size)
    if h % ph or w % pw:
        raise SpecError(f"a {h}x{w} map does not split into {layer.partition_type} partitions of {ph}x{pw}: "
                        "H and W must be multiples of partition_size (torchvision's MaxViT pads nothing)")
    group = ph * pw  # the positions that attend to each other
    params = 4 * c * c + 4 * c + (2 * ph - 1) * (2 * pw - 1) * (c // layer.head_dim)  # to_qkv, merge, bias table
    macs = h * w * (4 * c * c + 2 * group * c)
    # a window's positions are adjacent; a grid's are h/ph and w/pw apart: a dilated window over the map
    if layer.partition_type == "window":
        window = (ph, pw, 1, 1)
    else:
        window = ((ph - 1) * (h // ph) + 1, (pw - 1) * (w // pw) + 1, 1, 1)
    return new(Cost, (shape, params, macs, macs, window))


def position_bias_mlp(layer: ShiftedWindowAttentionV2) -> int:
    """Swin V2's bias MLP runs once per forward on the (2w-1)^2 relative coordinates, whatever the batch."""
    wh, ww = pair(layer.window_size)
    return (2 * wh - 1) * (2 * ww - 1) * (2 * CPB_HIDDEN + CPB_HIDDEN * layer.num_heads)


def _window(layer: ShiftedWindowAttention) -> str:
    (wh, ww), (sh, sw) = pair(layer.window_size), pair(layer.shift_size)
    shift = "" if sh == sw == 0 else f" shift {sh}" if sh == sw else f" shift {sh}x{sw}"
    return f"{layer.OP} {wh}x{ww}{shift} {layer.num_heads} heads"


KIND = "attention"  # how `unknown op` errors group these ops
HANDLERS = {
    MultiheadAttention: multiheadattention,
    ShiftedWindowAttention: shiftedwindowattention,
    ShiftedWindowAttentionV2: shiftedwindowattention,
    PartitionAttention: partitionattention,
}
# MACs an op spends once per forward, not per sample (added to the row's MACs and fvcore count)
PER_FORWARD: dict[type, Callable[[Any], int]] = {ShiftedWindowAttentionV2: position_bias_mlp}
DESCRIPTIONS = {
    MultiheadAttention: lambda layer: f"multiheadattention {layer.num_heads} heads",
    ShiftedWindowAttention: _window,
    ShiftedWindowAttentionV2: _window,
    PartitionAttention: lambda layer: f"partitionattention {layer.partition_type} {kxk(layer.partition_size)} "
                                      f"head_dim {layer.head_dim}",
}


def _matmul_lines(projections: str, projected: int, scores: str, scored: int, total: int) -> list[Line]:
    """The four projections, Q Kᵀ and attention x V (as large as Q Kᵀ), and their sum."""
    return [Line("MACs Q, K, V, out", projections, projected, "the four projections"),
            Line("MACs Q·Kᵀ", scores, scored, "every query with every key it attends to, over all heads"),
            Line("MACs attention·V", scores, scored, "the weights times the values, as many"),
            Line("MACs", f"{projected:,} + {scored:,} + {scored:,}", total)]


def explain_multiheadattention(layer: MultiheadAttention, shape, cost: Cost) -> list[Line]:
    """Params 4·D² (+ 4·D biases); MACs 4·N·D² for the projections, N²·D for each of the two matmuls."""
    n, d = shape
    bias = f" + {times(4, d)} bias" if layer.bias else ""
    params = Line("params", times(4, d, d) + bias, cost.params,
                  f"in_proj (3D x D: Q, K, V) and out_proj (D x D){', with biases' if layer.bias else ''}: "
                  f"4·D²{' + 4·D' if layer.bias else ''}, D = {d}, {layer.num_heads} heads of {d // layer.num_heads}")
    return [params, *_matmul_lines(times(4, n, d, d), 4 * n * d * d, times(n, n, d), n * n * d, cost.macs)]


def explain_shiftedwindowattention(layer: ShiftedWindowAttention, shape, cost: Cost) -> list[Line]:
    """Padded to whole windows; projections at every padded position, both matmuls within each window."""
    h, w, c = shape
    (wh, ww), heads = pair(layer.window_size), layer.num_heads
    across, down = -(-h // wh), -(-w // ww)
    window = wh * ww
    lines = [Line("padded H", f"⌈{h} / {wh}⌉ · {wh}", across * wh, "torchvision pads the map to whole windows" if h % wh else ""),
             Line("padded W", f"⌈{w} / {ww}⌉ · {ww}", down * ww, "torchvision pads the map to whole windows" if w % ww else ""),
             Line("windows", times(across, down), across * down, f"of {wh}x{ww} = {window} positions each")]
    terms = [times(4, c, c)] + ([times(3, c)] if layer.qkv_bias else []) + ([str(c)] if layer.proj_bias else [])
    parts = "qkv (3C x C) and proj (C x C) weights" + (", qkv's biases" if layer.qkv_bias else "") + (
        ", proj's bias" if layer.proj_bias else "")
    if layer.__class__ is ShiftedWindowAttentionV2:
        terms += [str(heads), f"{times(2, CPB_HIDDEN)} + {CPB_HIDDEN}", times(CPB_HIDDEN, heads)]
        parts += f", a logit scale per head, the bias MLP 2 -> {CPB_HIDDEN} (with bias) -> {heads} heads"
    else:
        terms.append(times(2 * wh - 1, 2 * ww - 1, heads))
        parts += f", the relative position bias table ((2·{wh} − 1) x (2·{ww} − 1) x heads)"
    lines.append(Line("params", " + ".join(terms), cost.params, parts))
    positions = across * wh * down * ww
    lines += _matmul_lines(times(across * wh, down * ww, 4, c, c), positions * 4 * c * c,
                           times(across * down, window, window, c), across * down * window * window * c, cost.macs)
    if layer.__class__ is ShiftedWindowAttentionV2:
        lines.append(Line("MACs once per forward", times(2 * wh - 1, 2 * ww - 1, f"({times(2, CPB_HIDDEN)} + "
                                                         f"{times(CPB_HIDDEN, heads)})"), position_bias_mlp(layer),
                          f"the bias MLP on the (2·{wh} − 1) x (2·{ww} − 1) relative offsets, whatever the batch"))
    return lines


def explain_partitionattention(layer: PartitionAttention, shape, cost: Cost) -> list[Line]:
    """The four projections on every position, and Q Kᵀ and attention x V within each partition."""
    h, w, c = shape
    ph, pw = pair(layer.partition_size)
    size, heads, table = ph * pw, c // layer.head_dim, (2 * ph - 1) * (2 * pw - 1)
    groups = h * w // size
    return [
        Line("partitions", f"{times(h, w)} / {size}", groups, f"{layer.partition_type} partitions of {ph}x{pw} positions"),
        Line("params", f"{times(4, c, c)} + {times(4, c)} bias + {times(table, heads)}", cost.params,
             f"to_qkv {c} -> {3 * c} and merge {c} -> {c}; the bias table: (2·{ph} − 1)·(2·{pw} − 1) offsets "
             f"x {c} / {layer.head_dim} = {heads} heads"),
        *_matmul_lines(times(h, w, 4, c, c), h * w * 4 * c * c, times(groups, size, size, c), groups * size * size * c,
                       cost.macs),
    ]


EXPLANATIONS = {
    MultiheadAttention: explain_multiheadattention,
    ShiftedWindowAttention: explain_shiftedwindowattention,
    ShiftedWindowAttentionV2: explain_shiftedwindowattention,
    PartitionAttention: explain_partitionattention,
}
