"""What each command shows, as `formatting.Table`s: per-layer rows, the model list, a comparison."""

from __future__ import annotations

from typing import Sequence

from archcalc.formatting import Column, Table, cell, shape
from archcalc.result import CONVENTIONS, DTYPE_BYTES, Result, Row

LAYER_COLUMNS = (
    Column("name", "layer", numeric=False),
    Column("op", "op", numeric=False),
    Column("output_shape", "output", numeric=False),
    Column("params", "params"),
    Column("macs", "MACs"),
    Column("flops", "FLOPs"),
    Column("activations", "activations"),
    Column("activation_bytes", "act. bytes"),
    Column("receptive_field", "RF (px)"),
)


def header_line(result: Result) -> str:
    """The input, batch, dtype and counting convention, in one line."""
    return (
        f"{result.model}: input {shape(result.input_shape[1:])}, batch {result.batch}, {result.dtype}; "
        f"MACs = {CONVENTIONS['macs']}; FLOPs = {CONVENTIONS['flops']}"
    )


def layer_table(result: Result, rows: Sequence[Row], units: bool = False) -> Table:
    """One row per layer (or folded composite), the totals row, and memory notes."""
    size = DTYPE_BYTES[result.dtype]
    total = result.total
    return Table(
        columns=LAYER_COLUMNS,
        rows=[
            (r.name, r.description, r.output_shape, r.params, r.macs, r.flops, r.activations,
             r.activations * size, r.receptive_field)
            for r in rows
        ],
        total=("total", f"depth {total.depth}", result.rows[-1].output_shape if result.rows else None,
               total.params, total.macs, total.flops, total.activations, total.activation_bytes,
               total.receptive_field),
        title=header_line(result),
        notes=[
            f"weights: {cell(total.params_bytes, units)} bytes ({result.dtype}), "
            f"trainable params: {cell(total.trainable_params, units)}; "
            f"depth: {CONVENTIONS['depth']}"
        ],
    )
