"""Architecture specs as frozen dataclasses: the data every other module reads.

Leaf ops take torch.nn's argument names and defaults; `in_channels` / `in_features`
are inferred from the incoming shape and, when given, must match it.
"""

from __future__ import annotations

import re
import reprlib
from operator import attrgetter
from types import MappingProxyType
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from typing import Any, Callable, ClassVar, Iterable, Mapping, NamedTuple, Optional, TypeVar, Union

from archcalc.errors import SpecError, shown
from archcalc.expressions import BlockInput, has_deferred, resolve_value

IntPair = Union[int, tuple[int, int]]


class Where(NamedTuple):
    """Where a node was written: file and 1-based line."""

    file: str | None = None
    line: int | None = None


# Where a layer stands in the spec, e.g. `layers[7].concat[2][1]`, as a chain of (parent, part) that is
# spelled out only when there is an error: formatting it for every layer would cost more than the layer.
SpecPath = Optional[tuple["SpecPath", Union[int, str]]]


def spell(spec_path: SpecPath) -> str:
    """`layers[7].concat[2][1]` from its chain."""
    parts: list[int | str] = []
    while spec_path is not None:
        spec_path, part = spec_path
        parts.append(part)
    return spell_parts(reversed(parts))


def spell_parts(parts: Iterable[int | str]) -> str:
    """`layers[7].concat[2][1]` from its parts, outermost first: an int is an index, a str is spelled as is."""
    return "".join(f"[{part}]" if isinstance(part, int) else part for part in parts)


def arg(kind: str | tuple[str, ...], default=None, *, required: bool = False):
    """A spec field with a validation kind (see `_CHECKS`)."""
    if required:
        return field(metadata={"kind": kind})
    return field(default=default, metadata={"kind": kind})


# The largest size a spec may give (channels, features, kernel, stride, padding, dilation, groups,
# input sizes, batch): 2**31 - 1, int32's largest, which torch's kernels index with. With it every
# total stays below about 1e80, so counts print in full and ratios fit a float.
MAX_SIZE = 2**31 - 1


def _is_int(value) -> bool:
    return value.__class__ is int or (isinstance(value, int) and value.__class__ is not bool)


def _is_size(value, minimum: int) -> bool:
    """An int from minimum to MAX_SIZE."""
    return _is_int(value) and minimum <= value <= MAX_SIZE


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and value.__class__ is not bool


def _pair_ok(value, minimum: int) -> bool:
    if _is_int(value):
        return minimum <= value <= MAX_SIZE
    return (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and _is_int(value[0]) and _is_int(value[1])
        and minimum <= value[0] <= MAX_SIZE and minimum <= value[1] <= MAX_SIZE
    )


def _layers_ok(value) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(layer, Node) for layer in value)


def too_big(value) -> str:
    """`; sizes are at most 2,147,483,647` for a value (or [h, w]) holding an int beyond MAX_SIZE, else ''."""
    items = value if isinstance(value, (tuple, list)) and len(value) <= 3 else (value,)
    if any(_is_int(v) and abs(v) > MAX_SIZE for v in items):
        return f"; sizes are at most {MAX_SIZE:,}"
    return ""


# kind -> (check, what a valid value is, in words)
_CHECKS = {
    "pos_int": (lambda v: _is_int(v) and 1 <= v <= MAX_SIZE, "a positive integer"),
    "opt_pos_int": (lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_SIZE), "a positive integer"),
    "int": (lambda v: _is_int(v) and -MAX_SIZE <= v <= MAX_SIZE, "an integer"),
    "pos_pair": (lambda v: _pair_ok(v, 1), "a positive integer or [h, w] of positive integers"),
    "opt_pos_pair": (lambda v: v is None or _pair_ok(v, 1), "a positive integer or [h, w] of positive integers"),
    "nonneg_pair": (lambda v: _pair_ok(v, 0), "a non-negative integer or [h, w] of non-negative integers"),
    "padding": (
        lambda v: v in ("same", "valid") or _pair_ok(v, 0),
        "a non-negative integer, [h, w], 'same' or 'valid'",
    ),
    "bool": (lambda v: v.__class__ is bool, "true or false"),
    "prob": (lambda v: _is_number(v) and 0 <= v <= 1, "a number between 0 and 1"),
    "pos_number": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "number": (_is_number, "a number"),
    "dims": (
        lambda v: isinstance(v, (tuple, list)) and 0 < len(v) <= 8 and all(_is_int(d) for d in v),
        "a list of dimension indices, e.g. [0, 2, 3, 1]",
    ),
    "nonneg_int": (lambda v: _is_int(v) and 0 <= v <= MAX_SIZE, "a non-negative integer"),
    "text": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "shape": (lambda v: isinstance(v, (list, tuple)) and 1 <= len(v) <= 8 and all(_is_int(d) and d >= 1 for d in v),
              "a list of 1 to 8 positive integers (a shape without the batch)"),
    "branches": (lambda v: isinstance(v, (tuple, list)) and all(_layers_ok(b) for b in v),
                 "a list of branches, each a list of layers"),
    "layers": (_layers_ok, "a list of layers (Conv2d(...), ReLU(), Sequential(...), ...)"),
}


def _rule(kind: str | tuple[str, ...]) -> tuple[Callable[[object], bool], str]:
    """A kind's check and words; a tuple of strings is a choice among them."""
    if isinstance(kind, tuple):
        return (lambda v: v.__class__ is str and v in kind), " or ".join(map(repr, kind))
    return _CHECKS[kind]


def pair(value: IntPair) -> tuple[int, int]:
    """An int or [h, w] as (h, w)."""
    return (value, value) if isinstance(value, int) else (value[0], value[1])


N = TypeVar("N", bound="Node")
Rule = tuple[object, Callable[[object], bool], str]  # a field's default (valid as it is), its check, a valid value in words


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Node:
    """Anything that can stand in a `layers:` list."""

    OP: ClassVar[str] = ""
    # fields holding an expression that reads `in_channels`, resolved by the walk (`resolved`)
    deferred: ClassVar[tuple[str, ...]] = ()
    name: str | None = None
    trainable: bool = True
    where: Where | None = field(default=None, compare=False, repr=False)

    # repr, == and hash as a dataclass writes them, written once here: every op class is declared with
    # repr=False, eq=False, as generating (compiling) them for each of forty-odd classes took a fifth of
    # `archcalc table`'s start. A class declared without those still gets a dataclass's own, alike.
    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        shown_fields = class_info(self.__class__).shown
        return f"{self.__class__.__qualname__}({', '.join(f'{name}={getattr(self, name)!r}' for name in shown_fields)})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        compared = class_info(self.__class__).compared
        return compared(self) == compared(other)

    def __hash__(self) -> int:
        return hash(class_info(self.__class__).compared(self))

    @classmethod
    def from_spec(cls: type[N], args: Mapping[str, Any], where: Where | None = None,
                  check: Iterable[str] | None = None) -> N:
        """`cls(**args, where=where)`, for a loader that has checked args' keys: known, none missing.

        Fills the instance's dict in one go instead of running the frozen dataclass's
        __init__, which sets each field through object.__setattr__ (3x slower on Conv2d;
        a GoogLeNet builds a few hundred nodes), and checks only the fields given (a
        default is valid), or only those in `check` (the others made valid by the loader).
        """
        info = class_info(cls)
        node = object.__new__(cls)
        state = node.__dict__
        state.update(info.defaults)
        state.update(args)
        state["where"] = where
        node._validate(args if check is None else check, info.rules)
        return node

    def __post_init__(self) -> None:
        self._validate(list(self.__dict__), class_info(type(self)).rules)

    def _validate(self, given: Iterable[str], rules: Mapping[str, Rule]) -> None:
        """Check the `given` fields; a list becomes a tuple (the node is frozen, and hashable)."""
        state = self.__dict__  # read and written directly: a frozen dataclass's setattr refuses, and is slow
        for field_name in given:
            value = state[field_name]
            if has_deferred(value):  # checked once the walk knows in_channels
                state["deferred"] = (*self.deferred, field_name)
                continue
            rule = rules.get(field_name)
            if rule is not None and value is not rule[0] and not rule[1](value):
                raise SpecError(f"{field_name} must be {rule[2]}, got {shown(value)}{too_big(value)}", op=self.OP)
            if isinstance(value, list):
                state[field_name] = tuple(value)


def resolved(node: N, inputs: Mapping[BlockInput, int]) -> N:
    """`node` with its `in_channels` expressions evaluated for the blocks' inputs the walk has reached."""
    values = {name: resolve_value(node.__dict__[name], inputs) for name in node.deferred}
    fields_ = {key: value for key, value in node.__dict__.items() if key not in ("where", "deferred")}
    return node.__class__.from_spec({**fields_, **values}, node.where, check=values)


def _name_ok(value) -> bool:
    return value is None or (isinstance(value, str) and valid_name(value))


class ClassInfo(NamedTuple):
    """What a Node class takes, worked out once per class (dataclasses.fields is slow)."""

    rules: dict[str, Rule]  # field -> its rule
    arguments: tuple[str, ...]  # what a spec may give it
    required: tuple[str, ...]  # what a spec must give it
    defaults: dict[str, Any]  # every field that has a default, with it
    shown: tuple[str, ...]  # the fields repr shows
    compared: Callable[[Any], tuple]  # the fields == and hash compare, as a tuple


_CLASS_INFO: dict[type, ClassInfo] = {}


def class_info(cls: type[Node]) -> ClassInfo:
    info = _CLASS_INFO.get(cls)
    if info is None:
        info = _CLASS_INFO[cls] = ClassInfo(
            rules={
                "name": (None, _name_ok, NAME_RULE),
                "trainable": (True, lambda v: v.__class__ is bool, "true or false"),
                "where": (None, lambda v: isinstance(v, Where), "a Where(file, line) or None"),
                **{f.name: (f.default, *_rule(f.metadata["kind"])) for f in fields(cls) if "kind" in f.metadata},
            },
            arguments=tuple(f.name for f in fields(cls) if f.name not in ("name", "trainable", "where", "block_input")),
            required=tuple(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING),
            defaults={f.name: f.default for f in fields(cls) if f.default is not MISSING},
            shown=tuple(f.name for f in fields(cls) if f.repr),
            compared=attrgetter(*(f.name for f in fields(cls) if f.compare)),
        )
    return info


# What a model, block or layer name may hold: it is printed in tables, paths (`stage1.0.conv`),
# markdown and CSV, and must not carry markup, escape sequences, separators or formulas.
_NAME = re.compile(r"\w[\w+-]{0,99}")
NAME_RULE = "1 to 100 letters, digits, '_', '-' or '+', starting with a letter, digit or '_', and not only digits"


@lru_cache(maxsize=1024)  # the same few names ("conv", "bn", "relu") come back in every block
def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None and not name.isdigit()


_CHECKS["opt_name"] = (_name_ok, NAME_RULE)  # a Sequential's block


# ---- leaf ops -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Conv2d(Node):
    OP: ClassVar[str] = "conv2d"
    out_channels: int = arg("pos_int", required=True)
    kernel_size: IntPair = arg("pos_pair", required=True)
    stride: IntPair = arg("pos_pair", 1)
    padding: IntPair | str = arg("padding", 0)
    dilation: IntPair = arg("pos_pair", 1)
    groups: int = arg("pos_int", 1)
    bias: bool = arg("bool", True)
    in_channels: int | None = arg("opt_pos_int", None)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class MaxPool2d(Node):
    OP: ClassVar[str] = "maxpool2d"
    kernel_size: IntPair = arg("pos_pair", required=True)
    stride: IntPair | None = arg("opt_pos_pair", None)
    padding: IntPair = arg("nonneg_pair", 0)
    dilation: IntPair = arg("pos_pair", 1)
    ceil_mode: bool = arg("bool", False)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class AvgPool2d(Node):
    OP: ClassVar[str] = "avgpool2d"
    kernel_size: IntPair = arg("pos_pair", required=True)
    stride: IntPair | None = arg("opt_pos_pair", None)
    padding: IntPair = arg("nonneg_pair", 0)
    ceil_mode: bool = arg("bool", False)
    count_include_pad: bool = arg("bool", True)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class AdaptiveAvgPool2d(Node):
    OP: ClassVar[str] = "adaptiveavgpool2d"
    output_size: IntPair = arg("pos_pair", required=True)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Linear(Node):
    OP: ClassVar[str] = "linear"
    out_features: int = arg("pos_int", required=True)
    bias: bool = arg("bool", True)
    in_features: int | None = arg("opt_pos_int", None)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class BatchNorm2d(Node):
    OP: ClassVar[str] = "batchnorm2d"
    num_features: int | None = arg("opt_pos_int", None)
    eps: float = arg("pos_number", 1e-5)
    momentum: float = arg("prob", 0.1)
    affine: bool = arg("bool", True)
    track_running_stats: bool = arg("bool", True)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class BatchNorm1d(BatchNorm2d):
    """Batch norm over a flat vector's features (torch's BatchNorm1d on N x F), after a linear."""

    OP: ClassVar[str] = "batchnorm1d"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class LocalResponseNorm(Node):
    OP: ClassVar[str] = "localresponsenorm"
    size: int = arg("pos_int", required=True)
    alpha: float = arg("number", 1e-4)
    beta: float = arg("number", 0.75)
    k: float = arg("number", 1.0)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class ReLU(Node):
    OP: ClassVar[str] = "relu"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Sigmoid(Node):
    OP: ClassVar[str] = "sigmoid"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Tanh(Node):
    OP: ClassVar[str] = "tanh"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class ReLU6(Node):
    OP: ClassVar[str] = "relu6"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Hardswish(Node):
    OP: ClassVar[str] = "hardswish"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Hardsigmoid(Node):
    OP: ClassVar[str] = "hardsigmoid"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class SiLU(Node):
    OP: ClassVar[str] = "silu"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class GELU(Node):
    OP: ClassVar[str] = "gelu"
    approximate: str = arg(("none", "tanh"), "none")


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Identity(Node):
    OP: ClassVar[str] = "identity"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Softmax(Node):
    OP: ClassVar[str] = "softmax"
    dim: int = arg("int", 1)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Dropout(Node):
    OP: ClassVar[str] = "dropout"
    p: float = arg("prob", 0.5)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class StochasticDepth(Node):
    """Drops a residual branch per sample (`row`) or for the whole batch in training; the identity at inference."""

    OP: ClassVar[str] = "stochasticdepth"
    p: float = arg("prob", required=True)
    mode: str = arg(("row", "batch"), "row")


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class LayerScale(Node):
    """A learned per-channel scale, initialised to init_value (ConvNeXt, CaiT)."""

    OP: ClassVar[str] = "layerscale"
    init_value: float = arg("number", 1e-6)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Flatten(Node):
    OP: ClassVar[str] = "flatten"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class ChannelPad(Node):
    """Zero-pads channels up to out_channels (with stride-2 subsampling before it, the
    parameter-free "option A" shortcut of He et al.'s CIFAR ResNets)."""

    OP: ClassVar[str] = "channelpad"
    out_channels: int = arg("pos_int", required=True)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class ChannelShuffle(Node):
    """Interleaves `groups` groups of channels (ShuffleNet): C = groups x n, channel g*n+i goes to i*groups+g."""

    OP: ClassVar[str] = "channelshuffle"
    groups: int = arg("pos_int", required=True)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Chunk(Node):
    """Chunk `index` of torch.chunk(x, chunks, dim=1): channels split into parts of ceil(C / chunks)."""

    OP: ClassVar[str] = "chunk"
    chunks: int = arg("pos_int", required=True)
    index: int = arg("nonneg_int", required=True)
# ---- tokens, channels-last maps and attention ---------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Permute(Node):
    """torch.permute with the batch at dim 0: [0, 2, 3, 1] to channels last, [0, 3, 1, 2] back."""

    OP: ClassVar[str] = "permute"
    dims: tuple[int, ...] = arg("dims", required=True)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class LayerNorm(Node):
    """Normalizes over the channels: C of a map in either layout, D of tokens, F of a vector."""

    OP: ClassVar[str] = "layernorm"
    eps: float = arg("pos_number", 1e-5)
    elementwise_affine: bool = arg("bool", True)
    bias: bool = arg("bool", True)
    normalized_shape: int | None = arg("opt_pos_int", None)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Tokens(Node):
    """C x H x W -> H*W tokens of width C (x.flatten(2).transpose(1, 2), as ViT's patch embedding)."""

    OP: ClassVar[str] = "tokens"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class ClassToken(Node):
    """A learned token prepended to the sequence (ViT's class_token)."""

    OP: ClassVar[str] = "classtoken"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class PositionEmbedding(Node):
    """A learned N x D embedding added to the tokens (ViT's pos_embedding)."""

    OP: ClassVar[str] = "positionembedding"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class SelectToken(Node):
    """One token's features, x[:, index] (ViT's class token)."""

    OP: ClassVar[str] = "selecttoken"
    index: int = arg("int", 0)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class MeanTokens(Node):
    """The mean of the tokens, x.mean(dim=1)."""

    OP: ClassVar[str] = "meantokens"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class MultiheadAttention(Node):
    """Self-attention over tokens, torch.nn.MultiheadAttention(batch_first=True)'s parameters."""

    OP: ClassVar[str] = "multiheadattention"
    num_heads: int = arg("pos_int", required=True)
    dropout: float = arg("prob", 0.0)
    bias: bool = arg("bool", True)
    embed_dim: int | None = arg("opt_pos_int", None)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class ShiftedWindowAttention(Node):
    """Swin's window attention on a channels-last map, torchvision's ShiftedWindowAttention: the map
    padded to whole windows, cyclically shifted, attention within each window with a learned
    relative position bias table, shifted back and cropped."""

    OP: ClassVar[str] = "shiftedwindowattention"
    window_size: IntPair = arg("pos_pair", required=True)
    num_heads: int = arg("pos_int", required=True)
    shift_size: IntPair = arg("nonneg_pair", 0)
    qkv_bias: bool = arg("bool", True)
    proj_bias: bool = arg("bool", True)
    attention_dropout: float = arg("prob", 0.0)
    dropout: float = arg("prob", 0.0)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class ShiftedWindowAttentionV2(ShiftedWindowAttention):
    """Swin V2's: cosine attention with a learned logit scale per head, and a position bias made by
    a small MLP (2 -> 512 -> heads) from log-spaced relative coordinates instead of a table."""

    OP: ClassVar[str] = "shiftedwindowattentionv2"
    pretrained_window_size: IntPair = arg("nonneg_pair", 0)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class PartitionAttention(Node):
    """MaxViT's attention on a channels-last map, torchvision's RelativePositionalMultiHeadAttention
    within the partitions of its PartitionAttentionLayer: the map cut into groups of
    partition_size[0] x partition_size[1] positions, each attending within itself with a learned
    (2p-1)^2 x heads relative position bias table. `window`: each group a block of adjacent
    positions; `grid`: each group the positions H / p_h and W / p_w apart (a dilated window over
    the whole map). heads = C / head_dim; the scores are scaled by 1/sqrt(C), as torchvision's.

    One op that partitions, attends and puts the positions back, as `shiftedwindowattention` is for
    Swin, rather than partition and departition ops around an attention: the norms and MLP that
    torchvision runs on the partitioned tensor act on each position alone, so they run alike on
    the map, and every other layer keeps the map's shape, receptive field and torch module."""

    OP: ClassVar[str] = "partitionattention"
    partition_size: IntPair = arg("pos_pair", required=True)
    head_dim: int = arg("pos_int", required=True)
    partition_type: str = arg(("window", "grid"), required=True)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class PatchMerge(Node):
    """Swin's patch merging before its norm and linear: each 2 x 2 patch of a channels-last map
    concatenated on channels (H x W x C -> ceil(H/2) x ceil(W/2) x 4C, odd sides zero-padded)."""

    OP: ClassVar[str] = "patchmerge"


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Unknown(Node):
    """A call the importer could not map (`archcalc import --allow-unknown`): a zero-cost placeholder whose
    output is the shape torch traced (without the batch). It cannot be built as a torch module."""

    OP: ClassVar[str] = "unknown"
    what: str = arg("text", required=True)
    output: tuple[int, ...] = arg("shape", required=True)


# ---- composites -----------------------------------------------------------------------

Layers = tuple[Node, ...]


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Sequential(Node):
    """Layers in order; `block` names the spec block it was expanded from, if any."""

    OP: ClassVar[str] = "sequential"
    layers: Layers = arg("layers", ())
    block: str | None = arg("opt_name", None)
    # what `in_channels` stands for in the block's expressions: set to its input by the walk
    block_input: BlockInput | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Concat(Node):
    """Branches on the same input, joined on channels (Inception)."""

    OP: ClassVar[str] = "concat"
    branches: tuple[Layers, ...] = arg("branches", ())

    def _validate(self, given: Iterable[str], rules: Mapping[str, Rule]) -> None:
        super()._validate(given, rules)
        if isinstance(self.branches, (list, tuple)):  # each branch a tuple too
            self.__dict__["branches"] = tuple(tuple(branch) for branch in self.branches)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Residual(Node):
    """body(x) + shortcut(x); an empty shortcut is the identity."""

    OP: ClassVar[str] = "residual"
    body: Layers = arg("layers", ())
    shortcut: Layers = arg("layers", ())


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Gate(Node):
    """x * layers(x), the layers' output broadcast over x (squeeze-and-excitation: C x 1 x 1 against C x H x W)."""

    OP: ClassVar[str] = "gate"
    layers: Layers = arg("layers", ())


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Repeat(Node):
    """`times` copies of the layers in order; zero copies are nothing (a stage of one block, where
    the others repeat: EfficientNet-B0's). `inline`: the copies stand in the enclosing list, numbered
    on from the repeat's place, as torch's `nn.Sequential(first, *copies)` names them."""

    OP: ClassVar[str] = "repeat"
    times: int = arg("nonneg_int", required=True)
    layers: Layers = arg("layers", ())
    inline: bool = arg("bool", False)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Auxiliary(Node):
    """Layers on the current tensor whose parameters count but which do not run at inference, and
    whose output is dropped (Inception-v3's auxiliary classifier, used only to train)."""

    OP: ClassVar[str] = "auxiliary"
    layers: Layers = arg("layers", ())


COMPOSITES: tuple[type[Node], ...] = (Sequential, Concat, Residual, Gate, Repeat, Auxiliary)
LEAF_OPS: dict[str, type[Node]] = {
    cls.OP: cls
    for cls in (
        Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Linear, BatchNorm2d, BatchNorm1d, LocalResponseNorm,
        ReLU, Sigmoid, Tanh, Softmax, Dropout, Flatten, ChannelPad,
        ReLU6, Hardswish, Hardsigmoid, SiLU, GELU, Identity, StochasticDepth, LayerScale, ChannelShuffle, Chunk,
        Permute, LayerNorm, Tokens, ClassToken, PositionEmbedding, SelectToken, MeanTokens, MultiheadAttention,
        ShiftedWindowAttention, ShiftedWindowAttentionV2, PartitionAttention, PatchMerge, Unknown,
    )
}


@dataclass(frozen=True, kw_only=True)
class Model:
    """A whole network: its input shape (C, H, W) or (F,), without the batch."""

    name: str
    input: tuple[int, ...]
    layers: Layers
    description: str = ""
    source: str = ""
    where: Where | None = field(default=None, compare=False, repr=False)
    block_input: BlockInput | None = field(default=None, compare=False, repr=False)  # `in_channels` at the top
    # figures published for this network (torchvision's builder, params, GFLOPS, top-1, and their source)
    published: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # the walk's layers with `in_channels` evaluated, kept for the next analysis of this Model
    # (analysis.py; keyed by the ids of its own layers, which it keeps alive)
    resolved_layers: dict[tuple, Node] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not valid_name(self.name):
            raise SpecError(f"a model's name must be {NAME_RULE}, got {shown(self.name)}")
        shape = self.input
        if not valid_input(shape):
            raise SpecError(f"input must be [C, H, W] or [F] of positive integers, got {shown(shape)}{too_big(shape)}")
        if not _layers_ok(self.layers):
            raise SpecError(f"layers must be {_CHECKS['layers'][1]}, got {shown(self.layers)}")
        for key in ("description", "source"):
            if not isinstance(getattr(self, key), str):
                raise SpecError(f"{key} must be a string, got {shown(getattr(self, key))}")
        object.__setattr__(self, "input", tuple(shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "published", MappingProxyType(dict(self.published)))


def valid_input(shape) -> bool:
    """An input shape: (C, H, W) or (F,) of sizes from 1 to MAX_SIZE."""
    return isinstance(shape, (tuple, list)) and len(shape) in (1, 3) and all(_is_size(v, 1) for v in shape)
