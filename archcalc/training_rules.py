"""What one op keeps for backward and what its backward costs: one rule per op, grouped by kind.

A rule runs on a `Trace` (archcalc.training walks the spec in execution order) with the op's input
`Tensor`, and returns its output `Tensor`. On the way it says which tensors autograd saves
(`trace.save`) and the backward multiply-accumulates (`trace.backward`). Tensors are modelled down
to their storage, as `torch.autograd.graph.saved_tensors_hooks` sees them: a view (flatten of a
contiguous tensor, permute, chunk, a selected token) shares its input's storage, and a storage
saved twice counts once, charged to the first layer that saved it. Parameters and buffers are
never counted as saved: they are the model's own memory.

Conventions, stated once (torch 2.13, whose autograd formulas these are):
  saved only when needed   autograd saves a tensor only for a gradient it will compute: nothing at all
                           when no input requires a gradient (a frozen layer on the network's input);
                           a linear keeps its input only to make its weight's gradient, and its weight
                           only to make its input's.
  backward MACs            what FlopCounterMode counts during loss.backward(), halved. Input gradient:
                           conv2d, linear and the activation-by-activation matmuls of attention, one
                           forward's worth each; weight gradient: one forward's worth per weight, except
                           that torch's formula for a grouped conv's weight gradient counts `groups` times
                           the forward (it multiplies all input channels by all output channels), which is
                           followed here. Batch norm, pooling, activations and softmax count 0.
  mixed precision          torch.autocast (`bf16-mixed`, `fp16-mixed`): parameters, gradients and
                           optimizer state stay float32 (the master weights are the parameters themselves);
                           conv2d, linear and matmul cast their inputs and weights to the low dtype, and the
                           weight copies they keep for backward are saved activations (once per forward).
                           Other ops run in their input's dtype; an op mixing a low-precision tensor with a
                           float32 parameter (layer scale, class token, position embedding, a bias table)
                           promotes to float32. On CUDA, autocast also runs layer_norm and softmax in float32
                           (its fp32 list); on CPU it does not, and CPU autocast runs avg_pool3d (inside local
                           response norm) in float32.
  dropout                  on CPU torch draws a noise tensor in the input's dtype and keeps it; on CUDA the
                           fused kernel keeps a bool mask (1 byte per element). p = 0 is the identity, p = 1
                           keeps one zero scalar.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from archcalc.errors import SpecError
from archcalc.ops.attention import CPB_HIDDEN
from archcalc.ops.common import ChannelsLast
from archcalc.result import Row
from archcalc import spec as S
from archcalc.spec import pair

DTYPE_SIZE = {"float32": 4, "bfloat16": 2, "float16": 2, "int64": 8, "bool": 1}
LOW = {"fp32": None, "bf16-mixed": "bfloat16", "fp16-mixed": "float16"}


class Tensor(NamedTuple):
    """A tensor between layers: its storage (an id in the trace), its elements per sample and per
    forward (a tensor is either batched or not), its dtype, whether it requires a gradient, and
    whether it is contiguous in its logical layout (a permuted one is not)."""

    storage: int
    per_sample: int
    per_forward: int
    dtype: str
    requires_grad: bool
    contiguous: bool = True


def promote(a: str, b: str) -> str:
    """torch's type promotion between two floating tensors."""
    return a if a == b else "float32"


class Trace:
    """The walk's state: every storage made so far, which are saved, and the current row's charges."""

    def __init__(self, precision: str, device: str) -> None:
        self.low: str | None = LOW[precision]
        self.device = device
        self.storages: list[tuple[int, int]] = []  # id -> (bytes per sample, bytes per forward)
        self.saved: set[int] = set()
        self.row_saved = [0, 0]  # what the current row saved first: per sample, per forward
        self.row_kept: list[str] = []  # what it keeps, in words
        self.input_grad = 0  # the current row's backward MACs
        self.weight_grad = 0
        self.shape: tuple[int, ...] = ()  # the current row's input shape without the batch, ChannelsLast kept
        self.batch = 1

    # ---- tensors ----
    def new(self, per_sample: int, dtype: str, requires_grad: bool, contiguous: bool = True,
            per_forward: int = 0) -> Tensor:
        size = DTYPE_SIZE[dtype]
        self.storages.append((per_sample * size, per_forward * size))
        return Tensor(len(self.storages) - 1, per_sample, per_forward, dtype, requires_grad, contiguous)

    def like(self, x: Tensor, per_sample: int | None = None, dtype: str | None = None,
             requires_grad: bool | None = None, contiguous: bool | None = None) -> Tensor:
        """A new tensor shaped like x unless told otherwise."""
        return self.new(x.per_sample if per_sample is None else per_sample, dtype or x.dtype,
                        x.requires_grad if requires_grad is None else requires_grad,
                        x.contiguous if contiguous is None else contiguous, x.per_forward)

    def to_low(self, x: Tensor) -> Tensor:
        """What an autocast low-precision op (conv, linear, matmul) computes on: a cast copy unless x is already low."""
        if self.low is None or x.dtype == self.low:
            return x
        return self.like(x, dtype=self.low, contiguous=True)

    def to_float(self, x: Tensor) -> Tensor:
        """What a CUDA-autocast float32 op (layer_norm, softmax) computes on."""
        if self.low is None or self.device != "cuda" or x.dtype == "float32":
            return x
        return self.like(x, dtype="float32", contiguous=True)

    def compute_dtype(self, x: Tensor) -> str:
        return self.low if self.low is not None else x.dtype

    # ---- what is kept ----
    def save(self, x: Tensor, what: str) -> None:
        """Keep x for backward; a storage kept before (by this layer or an earlier one) is not counted again.
        Under mixed precision `what` says the dtype."""
        if self.low is not None and "(" not in what:
            what += f" ({x.dtype})"
        if x.storage in self.saved:
            what += " (kept already)"
        else:
            self.saved.add(x.storage)
            per_sample, per_forward = self.storages[x.storage]
            self.row_saved[0] += per_sample
            self.row_saved[1] += per_forward
        self.row_kept.append(what)

    def save_new(self, per_sample: int, dtype: str, what: str, per_forward: int = 0) -> Tensor:
        t = self.new(per_sample, dtype, False, True, per_forward)
        self.save(t, what)
        return t

    def save_weight_copy(self, elements: int, what: str = "weight copy") -> None:
        """Under autocast, the low-precision copy of a weight a conv or linear keeps (a parameter itself is not counted)."""
        if self.low is not None and elements:
            self.save_new(0, self.low, f"{what} ({self.low})", per_forward=elements)

    def dropout(self, x: Tensor, p: float, what: str = "dropout") -> Tensor:
        """F.dropout in training: the identity at p = 0; else a new tensor, keeping its mask."""
        if p == 0.0:
            return x
        if x.requires_grad:
            if p == 1.0:
                self.save_new(0, x.dtype, f"{what}: zero scalar ({x.dtype})", per_forward=1)
            elif self.device == "cuda":
                self.save_new(x.per_sample, "bool", f"{what} mask (bool)", per_forward=x.per_forward)
            else:
                self.save_new(x.per_sample, x.dtype, f"{what} noise ({x.dtype})", per_forward=x.per_forward)
        return self.like(x, contiguous=True)


Rule = Callable[[Any, Trace, Tensor, Row], Tensor]


def _elements(shape: tuple[int, ...]) -> int:
    """Per-sample elements of a shape that includes the batch."""
    return math.prod(shape[1:])


def _trainable(row: Row) -> bool:
    return row.trainable_params > 0


def _out(trace: Trace, x: Tensor, row: Row, dtype: str | None = None, requires_grad: bool | None = None,
         contiguous: bool | None = None) -> Tensor:
    return trace.like(x, _elements(row.output_shape), dtype,
                      x.requires_grad or _trainable(row) if requires_grad is None else requires_grad, contiguous)


# ---- conv/pool ----------------------------------------------------------------------------


def conv2d(layer: S.Conv2d, trace: Trace, x: Tensor, row: Row) -> Tensor:
    needed = x.requires_grad or _trainable(row)
    cast = trace.to_low(x)
    if layer.padding == "same":  # an odd total padding: torch pads the extra pixel first, and convolves the copy
        (kh, kw), (dh, dw) = pair(layer.kernel_size), pair(layer.dilation)
        odd_h, odd_w = dh * (kh - 1) % 2, dw * (kw - 1) % 2
        if odd_h or odd_w:
            c, h, w = row.input_shape[1:]
            cast = trace.like(cast, c * (h + odd_h) * (w + odd_w), contiguous=True)
    if needed:  # convolution_backward takes both the input and the weight
        trace.save(cast, "input" if cast is x else f"input copy ({cast.dtype}{', padded' if layer.padding == 'same' else ''})")
        trace.save_weight_copy(row.params - (layer.out_channels if layer.bias else 0))
    trace.input_grad = row.macs if x.requires_grad else 0
    trace.weight_grad = row.macs * layer.groups if _trainable(row) else 0
    return _out(trace, cast, row, contiguous=x.contiguous)


def adaptiveavgpool2d(layer: S.AdaptiveAvgPool2d, trace: Trace, x: Tensor, row: Row) -> Tensor:
    """To 1 x 1 torch takes the mean (which keeps nothing); to any other size its backward reads the input."""
    if x.requires_grad and row.output_shape[2:] != (1, 1):
        trace.save(x, "input")
    return _out(trace, x, row, contiguous=True)


def maxpool2d(layer: S.MaxPool2d, trace: Trace, x: Tensor, row: Row) -> Tensor:
    if x.requires_grad:
        trace.save(x, "input")
        trace.save_new(_elements(row.output_shape), "int64", "indices (int64)")
    return _out(trace, x, row)


def keeps_input(layer: Any, trace: Trace, x: Tensor, row: Row) -> Tensor:
    """avg pooling, hardtanh (relu6), hardswish, hardsigmoid, silu, gelu: the backward reads the input."""
    if x.requires_grad:
        trace.save(x, "input")
    return _out(trace, x, row)


def keeps_output(layer: Any, trace: Trace, x: Tensor, row: Row) -> Tensor:
    """relu, sigmoid, tanh: the backward reads the output."""
    out = _out(trace, x, row)
    if x.requires_grad:
        trace.save(out, "output")
    return out


def keeps_nothing(layer: Any, trace: Trace, x: Tensor, row: Row) -> Tensor:
    """A new tensor whose backward needs only sizes (pad, cat, add, mean, shuffle)."""
    return _out(trace, x, row, contiguous=True)


def view(layer: Any, trace: Trace, x: Tensor, row: Row) -> Tensor:
    """The input's storage seen another way: nothing new, nothing kept."""
    return x._replace(per_sample=_elements(row.output_shape) if x.per_sample else 0)


# ---- norms --------------------------------------------------------------------------------


def batchnorm2d(layer: S.BatchNorm2d, trace: Trace, x: Tensor, row: Row) -> Tensor:
    """Also batchnorm1d, over a flat vector's features (one value per feature and sample)."""
    if trace.batch * math.prod(row.input_shape[2:]) == 1:
        raise SpecError(f"{layer.OP} in training needs more than one value per channel (batch x H x W is 1): "
                        "train with a batch of 2 or more")
    if x.requires_grad or _trainable(row):  # native_batch_norm: input, and the batch's mean and inverse std
        trace.save(x, "input")
        channels = row.input_shape[1]
        trace.save_new(0, "float32", "batch mean (float32)", per_forward=channels)
        trace.save_new(0, "float32", "batch inverse std (float32)", per_forward=channels)
    return _out(trace, x, row)


def localresponsenorm(layer: S.LocalResponseNorm, trace: Trace, x: Tensor, row: Row) -> Tensor:
    """torch.nn.functional.local_response_norm: x / (k + alpha avg_pool3d(pad(x^2)))^beta."""
    if not x.requires_grad:
        return _out(trace, x, row)
    c, h, w = row.input_shape[1:]
    trace.save(x, "input")  # by x * x, and by the final division
    padded = trace.like(x, (c + layer.size // 2 + (layer.size - 1) // 2) * h * w, contiguous=True)
    if trace.low is not None and trace.device == "cpu":  # CPU autocast runs avg_pool3d in float32
        padded = trace.like(padded, dtype="float32")
    trace.save(padded, f"padded squares ({padded.dtype})")
    trace.save_new(x.per_sample, padded.dtype, "k + alpha mean (before the power)")
    trace.save_new(x.per_sample, padded.dtype, "divisor")
    return _out(trace, x, row, dtype=promote(x.dtype, padded.dtype))


def layernorm(layer: S.LayerNorm, trace: Trace, x: Tensor, row: Row) -> Tensor:
    shape = row.input_shape
    channels_first = len(trace.shape) == 3 and trace.shape.__class__ is not ChannelsLast
    cast = trace.to_float(x)
    if x.requires_grad or _trainable(row):  # native_layer_norm: input, mean and rstd per position
        trace.save(cast, "input" if cast is x else "input copy (float32)")
        positions = _elements(shape) // (shape[1] if channels_first else shape[-1])
        # float32 statistics, but in a low-precision input's dtype when there is no (float32) affine weight
        stats = "float32" if layer.elementwise_affine else cast.dtype
        trace.save_new(positions, stats, f"mean ({stats})")
        trace.save_new(positions, stats, f"rstd ({stats})")
    # a channels-first map is normalised through a permute and permuted back: not contiguous
    return _out(trace, cast, row, contiguous=not channels_first)


# ---- activations ----------------------------------------------------------------------------


def softmax(layer: S.Softmax, trace: Trace, x: Tensor, row: Row) -> Tensor:
    cast = trace.to_float(x)
    out = _out(trace, cast, row)
    if x.requires_grad:
        trace.save(out, "output")
    return out


def dropout(layer: S.Dropout, trace: Trace, x: Tensor, row: Row) -> Tensor:
    return trace.dropout(x, layer.p)


def stochasticdepth(layer: S.StochasticDepth, trace: Trace, x: Tensor, row: Row) -> Tensor:
    if layer.p == 0.0:
        return x
    if x.requires_grad:  # x * keep: the per-sample (or one) keep factor
        if layer.mode == "row":
            trace.save_new(1, x.dtype, f"keep factor per sample ({x.dtype})")
        else:
            trace.save_new(0, x.dtype, f"keep factor ({x.dtype})", per_forward=1)
    return _out(trace, x, row)


# ---- reshape ----------------------------------------------------------------------------------


def flatten(layer: S.Flatten, trace: Trace, x: Tensor, row: Row) -> Tensor:
    """A view of a contiguous tensor (or one whose H x W is 1 x 1), else a copy."""
    shape = row.input_shape
    if x.contiguous or (len(shape) == 4 and shape[2] == shape[3] == 1):
        return view(layer, trace, x._replace(contiguous=True), row)
    return _out(trace, x, row, contiguous=True)


def permute(layer: S.Permute, trace: Trace, x: Tensor, row: Row) -> Tensor:
    # a permute of a permuted map gives back the contiguous order only if it undoes it: archcalc's
    # permutes pair [0, 2, 3, 1] with [0, 3, 1, 2]
    identity = tuple(layer.dims) == tuple(range(len(layer.dims)))
    return x._replace(contiguous=x.contiguous if identity else not x.contiguous)


def tokens(layer: S.Tokens, trace: Trace, x: Tensor, row: Row) -> Tensor:
    """x.flatten(2).transpose(1, 2): contiguous only if the map was laid out channels last."""
    return x._replace(contiguous=not x.contiguous)


def chunk(layer: S.Chunk, trace: Trace, x: Tensor, row: Row) -> Tensor:
    """A view whose sample stays dense: `contiguous` here means the dims after the batch are (a flatten
    after it is a view; a linear's addmm keeps it as a view of the whole storage)."""
    return view(layer, trace, x, row)


def selecttoken(layer: S.SelectToken, trace: Trace, x: Tensor, row: Row) -> Tensor:
    return view(layer, trace, x, row)


# ---- linear, and ops with a parameter -----------------------------------------------------------


def _reshape_copies(trace: Trace, row: Row, x: Tensor) -> bool:
    """Whether matmul's reshape of an N-d input to 2-d copies it: for a map or tokens laid out channels first
    (a permute, or tokens of a channels-first map), unless the batch is one (then it is a view)."""
    return len(row.input_shape) > 2 and not x.contiguous and trace.batch > 1


def linear(layer: S.Linear, trace: Trace, x: Tensor, row: Row) -> Tensor:
    cast = trace.to_low(x)
    if _reshape_copies(trace, row, cast):
        cast = trace.like(cast, contiguous=True)
    if _trainable(row):  # the weight's gradient reads the input
        trace.save(cast, "input" if cast is x else f"input copy ({cast.dtype})")
    if x.requires_grad:  # the input's gradient reads the weight
        trace.save_weight_copy(row.params - (layer.out_features if layer.bias else 0))
    trace.input_grad = row.macs if x.requires_grad else 0
    trace.weight_grad = row.macs if _trainable(row) else 0
    return _out(trace, cast, row, contiguous=True)


def layerscale(layer: S.LayerScale, trace: Trace, x: Tensor, row: Row) -> Tensor:
    if _trainable(row):  # x * weight: the weight's gradient reads x
        trace.save(x, "input")
    return _out(trace, x, row, dtype=promote(x.dtype, "float32"))


def with_parameter(layer: Any, trace: Trace, x: Tensor, row: Row) -> Tensor:
    """classtoken (cat), positionembedding (add): a new float32 tensor (a low-precision input is promoted), nothing kept."""
    return _out(trace, x, row, dtype=promote(x.dtype, "float32"), contiguous=True)


# ---- attention ----------------------------------------------------------------------------------


def _attend(trace: Trace, q: int, scores: int, dtype: str, scores_dtype: str, dropout: float, qkv: Tensor | None,
            k_kept: bool = False) -> None:
    """softmax(q k^T [+ bias]) v, as archcalc's modules compute it. The bmm of q and k^T keeps both, each
    reshaped to 3-d; softmax keeps its output, dropout its mask; the bmm with v keeps the attention (a
    low-precision copy under autocast when the scores are float32) and v. k^T and v are strided views
    of qkv's output, which the reshape copies, unless the batch (of windows) or the heads are one:
    then they stay views, and keep qkv's whole output (`qkv`). `k_kept`: k^T was kept already (Swin V2)."""
    trace.save_new(q, dtype, f"q, scaled ({dtype})")
    if not k_kept:
        trace.save(qkv, f"qkv output, k^T and v views ({dtype})") if qkv is not None else \
            trace.save_new(q, dtype, f"k transposed ({dtype})")
    if trace.low is not None and trace.device == "cuda":
        scores_dtype = "float32"  # CUDA autocast runs softmax in float32
    probs = trace.new(scores, scores_dtype, True)
    trace.save(probs, f"softmax output ({scores_dtype})")
    probs = trace.dropout(probs, dropout, "attention dropout")
    if trace.low is not None and probs.dtype != trace.low:
        probs = trace.like(probs, dtype=trace.low)
    trace.save(probs, f"attention ({probs.dtype})")
    if qkv is not None:
        trace.save(qkv, f"qkv output, k^T and v views ({dtype})")
    else:
        trace.save_new(q, dtype, f"v ({dtype})")


def _qkv_views(trace: Trace, sequences: int, heads: int, q: int, dtype: str) -> Tensor | None:
    """qkv's output when k^T and v stay views of it (one sequence of the batch, or one head), else None."""
    return trace.new(3 * q, dtype, True) if sequences == 1 or heads == 1 else None


def _projected_in(trace: Trace, x: Tensor, source: Tensor, row: Row, width: int, what: str) -> str:
    """The qkv projection's savings (its input, for its weight; its weight's autocast copy, for x's
    gradient) on `source` (x, or the windows made from it); returns the attention's compute dtype."""
    cast = trace.to_low(source)
    if _trainable(row):
        trace.save(cast, what if cast is source else f"{what} copy ({cast.dtype})")
    if x.requires_grad:
        trace.save_weight_copy(3 * width * width, "qkv weight copy")
    return trace.compute_dtype(x)


def _projected_out(trace: Trace, row: Row, elements: int, width: int, dtype: str, name: str) -> None:
    """The output projection's: the heads joined (a copy), for its weight; its weight's autocast copy."""
    if _trainable(row):
        trace.save_new(elements, dtype, f"heads joined, {name}'s input ({dtype})")
    trace.save_weight_copy(width * width, f"{name} weight copy")


def _attention_grads(trace: Trace, row: Row, x: Tensor, positions: int, width: int, group: int) -> None:
    """Backward MACs of four projections and two matmuls over `positions` (the batch's), each seeing `group`:
    the weights' gradients when trainable; the gradients inside (the out projection's input, both matmuls'
    operands) and the qkv projection's input's when x needs one. When only the weights need gradients, the
    gradients inside serve them alone: weight-gradient work (torch runs none of it for x's gradient)."""
    projections, matmuls = positions * 4 * width * width, positions * 2 * group * width
    inside = projections // 4 + 2 * matmuls
    trace.weight_grad = projections if _trainable(row) else 0
    trace.input_grad = inside + 3 * projections // 4 if x.requires_grad else 0
    if _trainable(row) and not x.requires_grad:
        trace.weight_grad += inside


def multiheadattention(layer: S.MultiheadAttention, trace: Trace, x: Tensor, row: Row) -> Tensor:
    n, d = row.input_shape[1:]
    cast = trace.to_low(x)
    source = trace.like(cast, contiguous=True) if _reshape_copies(trace, row, cast) else cast
    dtype = _projected_in(trace, x, source, row, d, "input" if source is x else f"input copy ({source.dtype})")
    if x.requires_grad or _trainable(row):
        qkv = _qkv_views(trace, trace.batch, layer.num_heads, n * d, dtype)
        _attend(trace, n * d, layer.num_heads * n * n, dtype, dtype, layer.dropout, qkv)
        _projected_out(trace, row, n * d, d, dtype, "out_proj")
    _attention_grads(trace, row, x, row.input_shape[0] * n, d, n)
    return _out(trace, x, row, dtype=dtype, contiguous=True)


def shiftedwindowattention(layer: S.ShiftedWindowAttention, trace: Trace, x: Tensor, row: Row) -> Tensor:
    batch, h, w, c = row.input_shape
    (wh, ww), heads = pair(layer.window_size), layer.num_heads
    ph, pw = -(-h // wh) * wh, -(-w // ww) * ww
    positions, window = ph * pw, wh * ww  # per sample, padded
    v2 = isinstance(layer, S.ShiftedWindowAttentionV2)
    trainable, needed = _trainable(row), x.requires_grad or _trainable(row)
    # the windows: padded, rolled, partitioned; a copy, unless nothing is padded or rolled and the windows
    # stack down one column (x.view(...).transpose(2, 3) is then still contiguous)
    sh, sw = pair(layer.shift_size)
    shifted = (sh and wh < ph) or (sw and ww < pw)
    windows = x if (ph, pw) == (h, w) and not shifted and pw == ww and x.contiguous else \
        trace.like(x, positions * c, contiguous=True)
    dtype = _projected_in(trace, x, windows, row, c, "windows, qkv's input")
    # V1 adds a float32 bias table (promoting low-precision scores); V2's bias comes from its MLP, in the low
    # dtype, but a shifted window's float32 mask promotes it too
    scores_dtype = "float32" if trace.low is not None and (not v2 or shifted) else dtype
    q = positions * c
    if needed:  # the bias table's gather keeps only its index (a buffer)
        qkv = _qkv_views(trace, trace.batch * positions // window, heads, q, dtype)
        if isinstance(layer, S.ShiftedWindowAttentionV2):
            qkv = _cosine_scores(trace, layer, positions, c, dtype, trainable, qkv)
        _attend(trace, q, positions * heads * window, dtype, scores_dtype, layer.attention_dropout, qkv, v2)
        _projected_out(trace, row, q, c, dtype, "proj")
    trace.dropout(trace.new(positions * c, dtype, needed, True), layer.dropout, "projection dropout")
    _attention_grads(trace, row, x, batch * positions, c, window)
    if v2 and trainable:  # the position-bias MLP, once per forward, on a buffer's coordinates: both weights'
        # gradients, and its hidden layer's, which serves only the first weight's (weight-gradient work)
        table = (2 * wh - 1) * (2 * ww - 1)
        trace.weight_grad += table * (2 * CPB_HIDDEN + 2 * CPB_HIDDEN * heads)
    # cropped back to h x w with .contiguous(): a copy, unless the crop is contiguous already (no column
    # padding or one row, and one sample or nothing padded), which then keeps the padded storage
    if (h == 1 or pw == w) and (trace.batch == 1 or positions == h * w):
        return trace.new(positions * c, dtype, needed, True)._replace(per_sample=h * w * c)
    return trace.like(x, h * w * c, dtype, needed, True)


def partitionattention(layer: S.PartitionAttention, trace: Trace, x: Tensor, row: Row) -> Tensor:
    """MaxViT's: the map regrouped into partitions (a copy unless the regrouping is no permutation), attention
    within each as Swin V1's (a float32 bias table, no dropout), the positions put back."""
    batch, h, w, c = row.input_shape
    (ph, pw), heads = pair(layer.partition_size), c // layer.head_dim
    rows, cols = h // ph, w // pw
    positions, group = h * w, ph * pw
    needed = x.requires_grad or _trainable(row)
    # the groups' axes (rows, cols, ph, pw) against the map's memory order: window (rows, ph, cols, pw), grid
    # (ph, rows, pw, cols); a view only if the axes longer than 1 keep their order
    sizes = {"r": rows, "c": cols, "a": ph, "b": pw}
    memory = "racb" if layer.partition_type == "window" else "arbc"
    moved = [a for a in memory if sizes[a] > 1] != [a for a in "rcab" if sizes[a] > 1]
    groups = trace.like(x, positions * c, contiguous=True) if moved or not x.contiguous else x
    dtype = _projected_in(trace, x, groups, row, c, "partitions, to_qkv's input")
    if needed:
        qkv = _qkv_views(trace, batch * rows * cols, heads, positions * c, dtype)
        scores_dtype = "float32" if trace.low is not None else dtype  # + the float32 bias table
        _attend(trace, positions * c, positions * heads * group, dtype, scores_dtype, 0.0, qkv)
        _projected_out(trace, row, positions * c, c, dtype, "merge")
    _attention_grads(trace, row, x, batch * positions, c, group)
    return trace.new(positions * c, dtype, needed, True)


def _cosine_scores(trace: Trace, layer: S.ShiftedWindowAttentionV2, positions: int, c: int, dtype: str,
                   trainable: bool, views: Tensor | None) -> Tensor | None:
    """Swin V2: q and k normalised (each keeps qkv's output, its norm and the clamped norm), q times the
    per-head logit scale (keeping the scale, and the normalised q when the scale trains), and, when
    trainable, the position-bias MLP (its hidden layer, after an in-place ReLU, and the sigmoid's
    output), once per forward."""
    heads = layer.num_heads
    (wh, ww) = pair(layer.window_size)
    qkv = views or trace.new(positions * 3 * c, dtype, True)
    # exp(logit scale): kept by exp when it trains, and by q_n x scale in any case
    trace.save_new(0, "float32", "exp(logit scale) (float32)", per_forward=heads)
    for part in ("q", "k"):
        trace.save(qkv, f"qkv output ({dtype})")
        trace.save_new(positions * heads, dtype, f"{part}'s norm ({dtype})")
        trace.save_new(positions * heads, dtype, f"{part}'s clamped norm ({dtype})")
        if part == "q" and trainable:  # for the logit scale's gradient
            trace.save_new(positions * c, dtype, f"q normalised ({dtype})")
    if trainable:  # under autocast the MLP runs in the low dtype: its input's copy and 2nd weight's copy are kept
        table, mlp = (2 * wh - 1) * (2 * ww - 1), trace.low or "float32"
        if trace.low is not None:
            trace.save_new(0, mlp, f"bias MLP's coordinates copy ({mlp})", per_forward=table * 2)
        trace.save_new(0, mlp, f"bias MLP's hidden layer ({mlp})", per_forward=table * CPB_HIDDEN)
        trace.save_weight_copy(CPB_HIDDEN * heads, "bias MLP's second weight copy")
        trace.save_new(0, mlp, f"bias sigmoid's output ({mlp})", per_forward=heads * (wh * ww) ** 2)
    trace.save_new(positions * c, dtype, f"k normalised, transposed ({dtype})")
    return views


# ---- joins --------------------------------------------------------------------------------------


def join(op: str, trace: Trace, inputs: list[Tensor], row: Row) -> Tensor:
    """A composite's own op on its parts: `add` and `concat` keep nothing; a gate's `mul` keeps each factor
    for the other's gradient."""
    dtype = inputs[0].dtype
    for t in inputs[1:]:
        dtype = promote(dtype, t.dtype)
    if op == "mul":
        x, scale = inputs
        if x.requires_grad:
            trace.save(scale, "the gate's scale")
        if scale.requires_grad:
            trace.save(x, "the gated input")
    requires_grad = any(t.requires_grad for t in inputs)
    contiguous = op == "concat" or inputs[0].contiguous
    return trace.new(_elements(row.output_shape), dtype, requires_grad, contiguous)


# ---- the table ------------------------------------------------------------------------------------

RULES: dict[type, Rule] = {
    # conv/pool
    S.Conv2d: conv2d, S.MaxPool2d: maxpool2d, S.AvgPool2d: keeps_input, S.AdaptiveAvgPool2d: adaptiveavgpool2d,
    # linear
    S.Linear: linear,
    # norms
    S.BatchNorm2d: batchnorm2d, S.BatchNorm1d: batchnorm2d, S.LocalResponseNorm: localresponsenorm, S.LayerNorm: layernorm,
    # activations
    S.ReLU: keeps_output, S.Sigmoid: keeps_output, S.Tanh: keeps_output, S.ReLU6: keeps_input,
    S.Hardswish: keeps_input, S.Hardsigmoid: keeps_input, S.SiLU: keeps_input, S.GELU: keeps_input,
    S.Identity: view, S.Softmax: softmax, S.Dropout: dropout, S.StochasticDepth: stochasticdepth,
    # reshape
    S.Flatten: flatten, S.ChannelPad: keeps_nothing, S.Permute: permute, S.PatchMerge: keeps_nothing,
    # channels
    S.ChannelShuffle: keeps_nothing, S.Chunk: chunk, S.LayerScale: layerscale,
    # tokens
    S.Tokens: tokens, S.ClassToken: with_parameter, S.PositionEmbedding: with_parameter,
    S.SelectToken: selecttoken, S.MeanTokens: keeps_nothing,
    # attention
    S.MultiheadAttention: multiheadattention, S.ShiftedWindowAttention: shiftedwindowattention,
    S.ShiftedWindowAttentionV2: shiftedwindowattention, S.PartitionAttention: partitionattention,
    # a placeholder of `archcalc import --allow-unknown`: costs nothing that archcalc knows
    S.Unknown: keeps_nothing,
}

# What each op keeps for backward, in words (the README's table and `archcalc train`'s notes)
KEEPS: dict[str, str] = {
    "conv2d": "its input (under autocast: the input's and the weight's low-precision copies; with padding 'same' "
              "and an odd total padding, the input padded by its extra pixel)",
    "maxpool2d": "its input and int64 indices of the maxima (one per output element)",
    "avgpool2d": "its input",
    "adaptiveavgpool2d": "its input, unless pooling to 1 x 1 (then a mean, which keeps nothing)",
    "linear": "its input if the weight trains; under autocast also the weight's low-precision copy if the input needs a gradient",
    "batchnorm2d": "its input, and the batch mean and inverse std per channel (float32)",
    "batchnorm1d": "its input, and the batch mean and inverse std per feature (float32)",
    "localresponsenorm": "its input, the padded squares, the pre-power sum and the divisor",
    "layernorm": "its input, and mean and rstd per position (float32; without an affine weight, in the input's dtype); "
                 "on CUDA autocast a float32 copy of the input",
    "relu": "its output", "sigmoid": "its output", "tanh": "its output",
    "relu6": "its input", "hardswish": "its input", "hardsigmoid": "its input", "silu": "its input",
    "gelu": "its input", "identity": "nothing", "softmax": "its output",
    "dropout": "its mask: a noise tensor in the input's dtype on CPU, a bool mask on CUDA (nothing at p = 0)",
    "stochasticdepth": "the keep factor: one per sample (row) or one (batch); nothing at p = 0",
    "flatten": "nothing (a view; a copy of a strided input)", "channelpad": "nothing", "permute": "nothing (a view)",
    "patchmerge": "nothing", "channelshuffle": "nothing", "chunk": "nothing (a view)",
    "layerscale": "its input if the scale trains",
    "tokens": "nothing (a view)", "classtoken": "nothing", "positionembedding": "nothing",
    "selecttoken": "nothing (a view)", "meantokens": "nothing",
    "multiheadattention": "in_proj's input, q, k^T, v (copies), the softmax output, the dropout mask, out_proj's input",
    "shiftedwindowattention": "the windows, q, k^T, v, the softmax output (float32 under autocast: the bias is "
                              "float32), the dropout masks, proj's input",
    "shiftedwindowattentionv2": "as shiftedwindowattention, plus qkv's output, q's and k's norms, normalised q, "
                                "and the bias MLP's hidden layer and sigmoid once per forward",
    "partitionattention": "the partitions (to_qkv's input), q, k^T, v, the softmax output (float32 under autocast: "
                          "the bias is float32), merge's input",
    "unknown": "nothing (a placeholder)",
    "add": "nothing", "concat": "nothing", "mul": "both factors (each for the other's gradient)",
}


# ---- model state: parameter tensors and buffers per op ------------------------------------------------


def parameter_tensors(layer: Any) -> int:
    """How many parameter tensors an op has (Adam keeps a 4-byte step per tensor)."""
    cls = layer.__class__
    if cls in (S.Conv2d, S.Linear):
        return 1 + bool(layer.bias)
    if cls in (S.BatchNorm2d, S.BatchNorm1d):
        return 2 if layer.affine else 0
    if cls is S.LayerNorm:
        return (1 + bool(layer.bias)) if layer.elementwise_affine else 0
    if cls in (S.LayerScale, S.ClassToken, S.PositionEmbedding):
        return 1
    if cls is S.MultiheadAttention:
        return 4 if layer.bias else 2
    if cls is S.ShiftedWindowAttention:
        return 3 + bool(layer.qkv_bias) + bool(layer.proj_bias)  # + the bias table
    if cls is S.ShiftedWindowAttentionV2:
        return 3 + 3 + bool(layer.qkv_bias) + bool(layer.proj_bias)  # qkv, proj, logit scale; the MLP's three
    if cls is S.PartitionAttention:
        return 5  # to_qkv's and merge's weights and biases, the bias table
    return 0


def buffer_bytes(layer: Any, row: Row) -> int:
    """Buffers an op's module holds: batch norm's running statistics (and its int64 batch count),
    window attention's int64 position index (and V2's float32 coordinates table)."""
    cls = layer.__class__
    if cls in (S.BatchNorm2d, S.BatchNorm1d) and layer.track_running_stats:
        return 2 * 4 * row.input_shape[1] + 8
    if cls is S.PartitionAttention:
        return 8 * (pair(layer.partition_size)[0] * pair(layer.partition_size)[1]) ** 2
    if isinstance(layer, S.ShiftedWindowAttention):
        wh, ww = pair(layer.window_size)
        index = 8 * (wh * ww) ** 2
        return index + (4 * 2 * (2 * wh - 1) * (2 * ww - 1) if cls is S.ShiftedWindowAttentionV2 else 0)
    return 0


def missing_rules() -> tuple[str, ...]:
    """archcalc's ops that have no rule here, or no words in KEEPS (a test names them)."""
    from archcalc.ops import HANDLERS

    return tuple(sorted(cls.OP for cls in HANDLERS if cls not in RULES or cls.OP not in KEEPS))
