"""What an analysis returns: one row per leaf layer (and per join), totals, and folding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1}

CONVENTIONS = {
    "macs": "multiply-accumulates of conv2d, linear and attention's matmuls (projections, QK^T, AV); bias adds not counted (torchvision's 'GFLOPS', the ResNet paper)",
    "flops": "2 x MACs (torch.utils.flop_counter)",
    "fvcore_flops": "fvcore FlopCountAnalysis: 1 per conv/linear/matmul MAC, + batchnorm (2/elem; 5 without running stats), layernorm (5/elem; 4 without affine) and adaptive avg pool (1/input elem)",
    "torch_flops": "torch FlopCounterMode: 2 x MACs of conv/linear/matmul only",
    "activations": "elements of every layer's output (joins included), summed over the batch",
    "depth": "conv, linear and attention layers on the longest path (VGG-16: 16, ResNet-152: 152, GoogLeNet: 22)",
    "receptive_field": "input pixels one output element can see, per axis, through the widest path; padding counts",
}


class Row(NamedTuple):
    """One leaf layer, or the join of a concat ("concat") or residual ("add").

    A named tuple rather than a frozen dataclass: a ResNet-152 makes 500 of them per analysis,
    and a frozen dataclass takes three times as long to build.
    """

    path: tuple[str, ...]
    op: str
    description: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    trainable_params: int
    macs: int
    fvcore_flops: int
    torch_flops: int
    activations: int
    receptive_field: tuple[int, int]
    stride: tuple[int, int]

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op": self.op,
            "description": self.description,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "params": self.params,
            "trainable_params": self.trainable_params,
            "macs": self.macs,
            "flops": self.flops,
            "fvcore_flops": self.fvcore_flops,
            "torch_flops": self.torch_flops,
            "activations": self.activations,
            "receptive_field": list(self.receptive_field),
            "stride": list(self.stride),
        }


class Group(NamedTuple):
    """A composite (block, concat, residual, repeat, sequential) and the rows it spans."""

    path: tuple[str, ...]
    kind: str
    start: int
    stop: int


@dataclass(frozen=True)
class Totals:
    params: int
    trainable_params: int
    macs: int
    flops: int
    fvcore_flops: int
    torch_flops: int
    activations: int
    params_bytes: int
    activation_bytes: int
    depth: int
    receptive_field: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["receptive_field"] = list(self.receptive_field)
        return d


@dataclass(frozen=True)
class Result:
    model: str
    input_shape: tuple[int, ...]  # with the batch
    dtype: str
    rows: tuple[Row, ...]
    groups: tuple[Group, ...]
    total: Totals
    description: str = ""
    source: str = ""

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    def to_dict(self) -> dict[str, Any]:
        """The JSON the CLI prints with --format json."""
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "batch": self.batch,
            "dtype": self.dtype,
            "layers": [row.to_dict() for row in self.rows],
            "total": self.total.to_dict(),
            "conventions": dict(CONVENTIONS),
        }

    def fold(self, depth: int) -> list[Row]:
        """Rows with every composite deeper than `depth` path levels summed into one row."""
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be a positive integer, got {depth!r:.60}")
        folded: list[Row] = []
        i = 0
        groups = {g.path: g for g in self.groups if len(g.path) == depth}
        while i < len(self.rows):
            row = self.rows[i]
            group = groups.get(row.path[:depth]) if len(row.path) > depth else None
            if group is None:
                folded.append(row)
                i += 1
                continue
            span = self.rows[group.start : group.stop]
            folded.append(_summed(group, span))
            i = group.stop
        return folded


def _summed(group: Group, rows: tuple[Row, ...]) -> Row:
    last = rows[-1]
    return last._replace(
        path=group.path,
        op=group.kind,
        description=f"{group.kind} ({len(rows)} rows)",
        input_shape=rows[0].input_shape,
        params=sum(r.params for r in rows),
        trainable_params=sum(r.trainable_params for r in rows),
        macs=sum(r.macs for r in rows),
        fvcore_flops=sum(r.fvcore_flops for r in rows),
        torch_flops=sum(r.torch_flops for r in rows),
        activations=sum(r.activations for r in rows),
    )
