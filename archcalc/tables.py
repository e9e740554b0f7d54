"""What each command shows, as `formatting.Table`s: per-layer rows, the model list, a comparison."""

from __future__ import annotations

from typing import Sequence

from archcalc.formatting import Column, Table, cell, shape
from archcalc.result import CONVENTIONS, DTYPE_BYTES, Result, Row

LAYER_COLUMNS = (
    Column("name", "layer", numeric=False, wrap=True),
    Column("op", "op", numeric=False, wrap=True),
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


MODEL_COLUMNS = (
    Column("name", "model", numeric=False, wrap=True),
    Column("description", "description", numeric=False, wrap=True),
    Column("input_shape", "input (CxHxW)", numeric=False),
    Column("params", "params"),
    Column("macs", "MACs"),
    Column("depth", "depth"),
)


def model_table(results: Sequence[Result]) -> Table:
    """One row per model: what it is, its default input, params, MACs and depth."""
    return Table(
        columns=MODEL_COLUMNS,
        rows=[(r.model, r.description, r.input_shape[1:], r.total.params, r.total.macs, r.total.depth)
              for r in results],
        notes=[f"MACs = {CONVENTIONS['macs']}; depth = {CONVENTIONS['depth']}"],
    )


# (label, how to read the metric from a Result); the ratio is against the first model
METRICS = (
    ("params", lambda r: r.total.params),
    ("MACs", lambda r: r.total.macs),
    ("FLOPs", lambda r: r.total.flops),
    ("activations", lambda r: r.total.activations),
    ("activation bytes", lambda r: r.total.activation_bytes),
    ("weight bytes", lambda r: r.total.params_bytes),
    ("depth", lambda r: r.total.depth),
    ("receptive field (px)", lambda r: r.total.receptive_field),
)


def ratio(value, first) -> float | None:
    """value / first; receptive fields (h, w) compare by side when both axes scale alike."""
    if isinstance(value, tuple):
        ratios = {ratio(v, f) for v, f in zip(value, first)}
        return ratios.pop() if len(ratios) == 1 else None
    return value / first if first else None


def labels(results: Sequence[Result]) -> list[str]:
    """Model names, made unique (`vgg16`, `vgg16 (2)`) so that columns and CSV keys collide neither
    with each other nor with the first column, `metric` (a ratio column's key, `B/A`, holds a `/`,
    which no name does)."""
    taken = {"metric"}
    out = []
    for r in results:
        label, n = r.model, 1
        while label in taken:
            n += 1
            label = f"{r.model} ({n})"
        out.append(label)
        taken.add(label)
    return out


def compare_table(results: Sequence[Result]) -> Table:
    """Totals side by side, one metric per row, each model after the first with its ratio to the first."""
    first, *others = labels(results)
    columns = [Column("metric", "metric", numeric=False), Column(first, first)]
    for label in others:
        columns += [Column(label, label), Column(f"{label}/{first}", f"x {first}")]
    assert len({c.key for c in columns}) == len(columns), "labels() makes every column key unique"
    rows = [("input", results[0].input_shape[1:], *_pairs(results, lambda r: r.input_shape[1:], with_ratio=False))]
    for label, metric in METRICS:
        rows.append((label, metric(results[0]), *_pairs(results, metric)))
    return Table(
        columns=columns,
        rows=rows,
        title=f"batch {results[0].batch}, {results[0].dtype}; MACs = {CONVENTIONS['macs']}; FLOPs = {CONVENTIONS['flops']}",
        notes=[f"depth = {CONVENTIONS['depth']}"],
    )


def _pairs(results: Sequence[Result], metric, with_ratio: bool = True) -> list:
    """For each model after the first: its value and its ratio to the first's."""
    base = metric(results[0])
    out: list = []
    for r in results[1:]:
        out += [metric(r), ratio(metric(r), base) if with_ratio else None]
    return out


def compare_dict(results: Sequence[Result]) -> dict:
    """The comparison as JSON: every model's totals and its ratios to the first."""
    first = results[0]
    return {
        "baseline": first.model,
        "models": [
            {
                "model": r.model,
                "input_shape": list(r.input_shape),
                "batch": r.batch,
                "dtype": r.dtype,
                "total": r.total.to_dict(),
                "ratios": {label: ratio(metric(r), metric(first)) for label, metric in METRICS},
            }
            for r in results
        ],
        "conventions": dict(CONVENTIONS),
    }
