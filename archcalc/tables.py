"""What each command shows, as `formatting.Table`s: per-layer rows, the model list, a comparison."""

from __future__ import annotations

from typing import Sequence

from archcalc.formatting import Column, Table, cell, number, shape
from archcalc.result import CONVENTIONS, DTYPE_BYTES, Result, Row
from archcalc.training import TrainResult

# a narrow terminal leaves out act. bytes first, then activations, then FLOPs (2 x MACs)
LAYER_COLUMNS = (
    Column("name", "layer", numeric=False, wrap=True),
    Column("op", "op", numeric=False, wrap=True),
    Column("output_shape", "output", numeric=False),
    Column("params", "params"),
    Column("macs", "MACs"),
    Column("flops", "FLOPs", drop=1),
    Column("activations", "activations", drop=2),
    Column("activation_bytes", "act. bytes", drop=3),
    Column("receptive_field", "RF (px)"),
)


def briefly(*terms: str, more: str = "--explain-columns says more") -> str:
    """The counting conventions a table uses, in one line under it; --explain-columns has the long version."""
    said = {
        "MACs": "MACs: multiply-accumulates of conv2d, linear and attention's matmuls (no bias adds)",
        "FLOPs": "FLOPs = 2 x MACs",
        "RF": "RF: receptive field",
        "depth": "depth: conv, linear and attention layers on the longest path",
    }
    return "; ".join([*(said[t] for t in terms), more])


# (column, what it counts), printed by --explain-columns; README's "Counting conventions" says the same
EXPLAINED_COLUMNS = (
    ("output", "the layer's output shape, batch first (N x C x H x W for a feature map, N x F flat)"),
    ("params", "weights and biases (batch norm: its scale and shift; running statistics are buffers, not counted)"),
    ("MACs", "multiply-accumulates of conv2d, linear and attention's matmuls (the Q, K, V and output projections, "
             "and Q K^T and attention x V); bias adds not counted. This is what torchvision's \"GFLOPS\" column and the "
             "ResNet paper's \"FLOPs\" count (ViT-B/16: 17.564, only with the attention matmuls)."),
    ("FLOPs", "2 x MACs, the convention of torch.utils.flop_counter"),
    ("fvcore", "what fvcore's FlopCountAnalysis reports: one flop per fused multiply-add of conv/linear/matmul, plus "
               "batch norm (2 per element, eval mode), layer norm (5 per element, 4 without affine) and adaptive average "
               "pooling (1 per input element); activations, softmax, the multiplies of gates and layer scales, chunks "
               "and shuffles count 0 (fvcore has no handle for them)"),
    ("FlopCounterMode", "what torch's FlopCounterMode reports on archcalc's modules: 2 x MACs of conv/linear/matmul "
                        "only (attention is built from explicit matmuls; on torch's own nn.MultiheadAttention it misses "
                        "them, see docs/oracles.md)"),
    ("activations", "elements of every layer's output (concat, residual and gate joins included), summed over the "
                    "batch"),
    ("act. bytes", "activations x the size of the element type (--dtype)"),
    ("RF (px)", "receptive field: input pixels one output element can see, per axis, through the widest path "
                "(padding counts, so it can exceed the input). A concat or residual join takes, per axis, the widest "
                "field and the largest cumulative stride of its branches (a 7x1 branch beside a 3x3 one sees 7x3). Exact "
                "for conv and pooling windows; through an adaptive pool whose bins are uneven it is an upper bound (an "
                "upsampling pool steps by a fraction of a pixel; rows round up); tests/test_receptive_field.py checks "
                "it against a brute-force reach of every output position. Attention sees the whole input; a window "
                "attention widens it like a window x window kernel"),
    ("depth", "conv, linear and attention layers on the longest path: 16 for VGG-16, 22 for GoogLeNet, 152 for "
              "ResNet-152"),
)


def columns_table() -> Table:
    """What every column counts: `--explain-columns`."""
    return Table(columns=(Column("column", "column", numeric=False), Column("meaning", "what it counts",
                                                                             numeric=False, wrap=True)),
                 rows=EXPLAINED_COLUMNS)


def header_line(result: Result) -> str:
    """The model, input, batch and dtype, in one line."""
    return f"{result.model}: input {shape(result.input_shape[1:])}, batch {result.batch}, {result.dtype}"


def layer_table(result: Result, rows: Sequence[Row], units: bool | None = False) -> Table:
    """One row per layer (or folded composite), the totals row, and memory notes (K/M/G with `units`)."""
    units = bool(units)
    size = DTYPE_BYTES[result.dtype]
    total = result.total
    return Table(
        columns=LAYER_COLUMNS,
        rows=[
            (r.name, r.description, r.output_shape, r.params, r.macs, r.flops, r.activations,
             r.activations * size, r.receptive_field)
            for r in rows
        ],
        total=("total", "", result.rows[-1].output_shape if result.rows else None,
               total.params, total.macs, total.flops, total.activations, total.activation_bytes,
               total.receptive_field),
        title=header_line(result),
        notes=[
            f"depth {total.depth}; weights "
            f"{cell(total.params_bytes, units)} bytes ({result.dtype}); trainable params {cell(total.trainable_params, units)}",
            briefly("MACs", "FLOPs", "RF"),
        ],
    )


MODEL_COLUMNS = (  # the description last: the numbers stay aligned however long it is
    Column("family", "family", numeric=False),
    Column("name", "model", numeric=False),
    Column("input_shape", "input (CxHxW)", numeric=False),
    Column("params", "params"),
    Column("macs", "MACs"),
    Column("depth", "depth"),
    Column("description", "description", numeric=False, wrap=True, drop=1),
)


def model_table(results: Sequence[Result], families: Sequence[str]) -> Table:
    """One row per model, grouped by family: its default input, params, MACs, depth, and what it is."""
    return Table(
        columns=MODEL_COLUMNS,
        rows=[(family, r.model, r.input_shape[1:], r.total.params, r.total.macs, r.total.depth, r.description)
              for family, r in zip(families, results)],
        notes=[briefly("MACs", "depth")],
        group_by=0,
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
        title=f"batch {results[0].batch}, {results[0].dtype}",
        notes=[briefly("MACs", "FLOPs", "depth")],
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


TRAIN_COLUMNS = (  # a narrow terminal leaves out what is kept first, then the output shape
    Column("name", "layer", numeric=False, wrap=True),
    Column("op", "op", numeric=False, wrap=True),
    Column("output_shape", "output", numeric=False, drop=2),
    Column("forward_macs", "fwd MACs"),
    Column("input_grad_macs", "input-grad MACs"),
    Column("weight_grad_macs", "weight-grad MACs"),
    Column("saved_bytes", "saved bytes"),
    Column("keeps", "keeps for backward", numeric=False, wrap=True, drop=1),
)


def human(n: int, unit: str) -> str:
    """`12.5 GB`, `6.22 TFLOP`, `833 KMACs`: three significant digits, K = 1e3, G = 1e9."""
    text = number(n, True)
    return f"{text[:-1]} {text[-1]}{unit}" if text[-1:].isalpha() else f"{text} {unit}"


def train_table(result: TrainResult) -> Table:
    """`archcalc train`: one row per layer, the totals row, then the step's compute and memory in human units."""
    total = result.total
    head = f"{result.model}: input {shape(result.input_shape[1:])}, batch {result.batch}, {result.optimizer}, " \
           f"{result.precision}, {result.device}"
    notes = [
        f"step: {human(total.step_flops, 'FLOP')} (forward {human(total.forward_macs, 'MACs')}, backward "
        f"{human(total.backward_macs, 'MACs')}: input gradients {human(total.input_grad_macs, 'MACs')}, weight gradients "
        f"{human(total.weight_grad_macs, 'MACs')})",
        f"memory: weights {human(total.weight_bytes, 'B')} + gradients {human(total.gradient_bytes, 'B')} + optimizer "
        f"{human(total.optimizer_bytes, 'B')} + saved activations {human(total.saved_bytes, 'B')} + largest transient "
        f"{human(total.transient_bytes, 'B')} ({total.transient_layer or 'none'}) = peak {human(total.peak_bytes, 'B')}",
    ]
    if result.budget is not None:
        largest = result.max_batch
        verdict = "fits" if result.fits else "does not fit"
        notes.append(f"budget {human(result.budget, 'B')}: batch {result.batch} {verdict}; largest batch "
                     f"{'unbounded' if largest is None else f'{largest:,}'} (peak = {total.fixed_bytes:,} + "
                     f"batch x {total.per_sample_bytes:,} bytes)")
    notes.append("backward MACs: FlopCounterMode's count during loss.backward() / 2; saved: distinct storages "
                  "autograd keeps (saved_tensors_hooks), parameters excluded; GB = 1e9 bytes")
    return Table(
        columns=TRAIN_COLUMNS,
        rows=[(r.name, r.description, r.output_shape, r.forward_macs, r.input_grad_macs, r.weight_grad_macs,
               r.saved_bytes, r.keeps) for r in result.rows],
        total=("total", "", None, total.forward_macs, total.input_grad_macs, total.weight_grad_macs,
               total.saved_bytes, ""),
        title=head,
        notes=notes,
    )
