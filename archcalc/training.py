"""One training step, accounted without running it: forward and backward multiply-accumulates per
layer, the activations autograd keeps for backward, the model state (weights, gradients, optimizer
state), a peak-memory estimate and the largest batch that fits a budget.

The per-op rules (what each op keeps, in which dtype, and its backward cost) are in
archcalc.training_rules; this module walks the spec in execution order with them and adds up.

Memory, per step (bytes):
  weights      every parameter in float32 (under autocast too: the master weights are the parameters),
               plus buffers (batch norm's running statistics, attention's position index)
  gradients    float32, one per trainable parameter that the step reaches (an `auxiliary` head does
               not run in archcalc's torch build, so its parameters get none; frozen layers get none)
  optimizer    sgd: nothing; sgd-momentum: one float32 buffer per trainable parameter; adam and adamw:
               two (exp_avg, exp_avg_sq), and a float32 `step` scalar per parameter tensor, which torch
               keeps on the CPU for a CUDA model (not counted on `cuda`)
  saved        the activations autograd keeps (archcalc.training_rules), at this batch
  transient    the largest, over layers, of the gradients of its input and of its output together:
               what its backward holds beside what is saved
  peak         weights + gradients + optimizer + saved + transient (+ 8 bytes of GradScaler state for
               fp16-mixed). An upper-bound-style estimate: torch frees saved activations as backward
               passes them while gradients accumulate, so a real peak is usually somewhat lower.
Everything but the weights, gradients and optimizer state grows linearly with the batch:
peak(batch) = fixed + batch x per_sample, so the largest batch under a budget is
floor((budget - fixed) / per_sample), with no search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from archcalc.analysis import run
from archcalc.errors import SpecError, shown
from archcalc.registry import load
from archcalc.result import Row
from archcalc.spec import Auxiliary, Concat, Gate, Layers, Model, Repeat, Residual, Sequential
from archcalc.training_rules import DTYPE_SIZE, KEEPS, LOW, RULES, Tensor, Trace, buffer_bytes, join, parameter_tensors

OPTIMIZERS = {"sgd": 0, "sgd-momentum": 1, "adam": 2, "adamw": 2}  # float32 state tensors per parameter
PRECISIONS = tuple(LOW)
DEVICES = ("cuda", "cpu")
GRAD_SCALER_BYTES = 8
# ops that keep views instead of copies at batch 1 (one sequence): elsewhere batch 1 is on the line too
BATCH_ONE_VIEWS = ("multiheadattention", "shiftedwindowattention", "shiftedwindowattentionv2")  # torch.amp.GradScaler: its float32 scale and int32 growth tracker

TRAINING_CONVENTIONS = {
    "forward_macs": "as `archcalc table`: multiply-accumulates of conv2d, linear and attention's matmuls",
    "backward_macs": "what torch.utils.flop_counter.FlopCounterMode counts during loss.backward(), divided by 2: "
                     "input_grad_macs (conv2d, linear, attention matmuls; none where the input needs no gradient, "
                     "as the first layer's) + weight_grad_macs (none for `trainable: false`; torch's formula counts "
                     "a grouped conv's weight gradient `groups` times its forward; a gradient inside a layer that "
                     "only its weights need, as Swin V2's bias MLP's hidden layer's, is weight-gradient work)",
    "saved_bytes": "bytes of the distinct storages autograd saves during the forward "
                   "(torch.autograd.graph.saved_tensors_hooks), parameters and buffers excluded, each charged to "
                   "the first layer that saved it",
    "precision": "fp32; bf16-mixed / fp16-mixed: torch.autocast with float32 parameters (the master weights), "
                 "float32 gradients and optimizer state; conv/linear/matmul in the low dtype",
    "peak_bytes": "weights + buffers + gradients + optimizer state + saved activations + the largest transient "
                  "(a layer's input and output gradients together)",
    "max_batch": "floor((budget - fixed) / per_sample): peak is fixed + batch x per_sample",
    "units": "GB = 1e9 bytes, GiB = 2^30; TFLOP = 1e12 flops (2 x MACs)",
}


class TrainRow(NamedTuple):
    """One leaf layer or join of one training step."""

    path: tuple[str, ...]
    op: str
    description: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    trainable_params: int
    forward_macs: int
    input_grad_macs: int
    weight_grad_macs: int
    saved_bytes: int
    keeps: str  # what it saves, in words ("" when nothing)

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def backward_macs(self) -> int:
        return self.input_grad_macs + self.weight_grad_macs

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "op": self.op, "description": self.description,
            "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
            "params": self.params, "trainable_params": self.trainable_params,
            "forward_macs": self.forward_macs, "input_grad_macs": self.input_grad_macs,
            "weight_grad_macs": self.weight_grad_macs, "backward_macs": self.backward_macs,
            "saved_bytes": self.saved_bytes, "keeps": self.keeps,
        }


@dataclass(frozen=True)
class TrainTotals:
    forward_macs: int
    input_grad_macs: int
    weight_grad_macs: int
    saved_bytes: int
    weight_bytes: int  # parameters (float32) + buffers
    gradient_bytes: int
    optimizer_bytes: int
    transient_bytes: int
    transient_layer: str  # where the largest transient is
    fixed_bytes: int  # what does not grow with the batch (from batch 2 on)
    per_sample_bytes: int  # what each sample adds (from batch 2 on)
    batch: int

    @property
    def backward_macs(self) -> int:
        return self.input_grad_macs + self.weight_grad_macs

    @property
    def step_macs(self) -> int:
        return self.forward_macs + self.backward_macs

    @property
    def step_flops(self) -> int:
        return 2 * self.step_macs

    peak_at_one: int | None = None  # the peak at batch 1, when that is the batch (see below)

    @property
    def peak_bytes(self) -> int:
        """weights + gradients + optimizer + saved + transient (+ GradScaler's state): fixed + batch x per_sample."""
        if self.batch == 1 and self.peak_at_one is not None:
            return self.peak_at_one
        return self.fixed_bytes + self.batch * self.per_sample_bytes

    def max_batch(self, budget: int) -> int | None:
        """The largest batch whose peak fits `budget` bytes (0: not even one sample; None: no batch-sized term).
        From batch 2 on the peak is fixed + batch x per_sample exactly; at batch 1 some reshapes are views
        instead of copies (attention's q, k, v; a linear on tokens), so batch 1 is checked on its own."""
        if self.per_sample_bytes == 0:
            return None
        largest = (budget - self.fixed_bytes) // self.per_sample_bytes
        if largest >= 2:
            return largest
        one = self.peak_at_one if self.peak_at_one is not None else self.fixed_bytes + self.per_sample_bytes
        return 1 if one <= budget else 0

    def to_dict(self) -> dict[str, Any]:
        names = ("forward_macs", "input_grad_macs", "weight_grad_macs", "backward_macs", "step_macs", "step_flops",
                 "saved_bytes", "weight_bytes", "gradient_bytes", "optimizer_bytes", "transient_bytes",
                 "transient_layer", "peak_bytes", "fixed_bytes", "per_sample_bytes")
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class TrainResult:
    model: str
    input_shape: tuple[int, ...]  # with the batch
    optimizer: str
    precision: str
    device: str
    rows: tuple[TrainRow, ...]
    total: TrainTotals
    budget: int | None = None  # bytes, when asked for the largest batch

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    @property
    def max_batch(self) -> int | None:
        return None if self.budget is None else self.total.max_batch(self.budget)

    @property
    def fits(self) -> bool | None:
        return None if self.budget is None else self.total.peak_bytes <= self.budget

    def to_dict(self) -> dict[str, Any]:
        """The JSON `archcalc train --format json` prints."""
        return {
            "model": self.model, "input_shape": list(self.input_shape), "batch": self.batch,
            "optimizer": self.optimizer, "precision": self.precision, "device": self.device,
            "layers": [row.to_dict() for row in self.rows],
            "total": self.total.to_dict(),
            "budget_bytes": self.budget, "fits": self.fits, "max_batch": self.max_batch,
            "conventions": dict(TRAINING_CONVENTIONS),
        }


class _Step:
    """The walk: the spec's layers in execution order, each leaf row's rule, each composite's join."""

    def __init__(self, result_rows: tuple[Row, ...], entering: dict[int, tuple], trace: Trace, batch: int) -> None:
        self.rows, self.entering, self.trace, self.batch = result_rows, entering, trace, batch
        self.index = 0
        self.out: list[TrainRow] = []
        self.transient = (0, "")  # per sample, layer
        self.state = [0, 0, 0, 0]  # weight bytes, trainable params that get a gradient, their tensors, buffer bytes

    def layers(self, layers: Layers, x: Tensor, running: bool = True) -> Tensor:
        for layer in layers:
            x = self.layer(layer, x, running)
        return x

    def layer(self, layer: Any, x: Tensor, running: bool) -> Tensor:
        cls = layer.__class__
        if cls is Sequential:
            return self.layers(layer.layers, x, running)
        if cls is Repeat:
            for _ in range(layer.times):
                x = self.layers(layer.layers, x, running)
            return x
        if cls is Auxiliary:  # not run by the torch build: its rows cost nothing, its parameters get no gradient
            self.layers(layer.layers, x, False)
            return x
        if cls is Concat:
            parts = [self.layers(branch, x, running) for branch in layer.branches]
            return self.joined("concat", parts, running)
        if cls is Residual:
            body = self.layers(layer.body, x, running)
            shortcut = self.layers(layer.shortcut, x, running) if layer.shortcut else x
            return self.joined("add", [body, shortcut], running)
        if cls is Gate:
            scale = self.layers(layer.layers, x, running)
            return self.joined("mul", [x, scale], running)
        return self.leaf(x, running)

    def _begin(self) -> tuple[Row, Trace]:
        row, trace = self.rows[self.index], self.trace
        trace.row_saved, trace.row_kept = [0, 0], []
        trace.input_grad = trace.weight_grad = 0
        return row, trace

    def leaf(self, x: Tensor, running: bool) -> Tensor:
        row, trace = self._begin()
        layer, shape = self.entering[self.index][:2]
        self.state[0] += 4 * row.params
        self.state[3] += buffer_bytes(layer, row)
        if running:
            trace.shape = shape
            out = RULES[layer.__class__](layer, trace, x, row)
            if row.trainable_params:
                self.state[1] += row.trainable_params
                self.state[2] += parameter_tensors(layer)
        else:
            out = x
        self._row(row, trace, x, out, running)
        return out

    def joined(self, op: str, parts: list[Tensor], running: bool) -> Tensor:
        row, trace = self._begin()
        out = join(op, trace, parts, row) if running else parts[0]
        self._row(row, trace, parts[0], out, running)
        return out

    def _row(self, row: Row, trace: Trace, x: Tensor, out: Tensor, running: bool) -> None:
        saved = trace.row_saved[0] * self.batch + trace.row_saved[1]
        # the gradients of its input and output, alive together during its backward
        transient = x.per_sample * DTYPE_SIZE[x.dtype] + out.per_sample * DTYPE_SIZE[out.dtype] if running else 0
        if transient > self.transient[0]:
            self.transient = (transient, ".".join(row.path))
        self.out.append(TrainRow(
            row.path, row.op, row.description, row.input_shape, row.output_shape, row.params, row.trainable_params,
            row.macs if running else 0, trace.input_grad, trace.weight_grad, saved, "; ".join(dict.fromkeys(trace.row_kept))))
        self.index += 1


def _check(value: Any, allowed: Mapping[str, Any] | tuple[str, ...], what: str) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(f"{what} must be one of {', '.join(allowed)}, got {shown(value)}")


def train_step(
    spec: str | Path | Model,
    *,
    batch: int = 1,
    optimizer: str = "adamw",
    precision: str = "fp32",
    device: str = "cuda",
    input: tuple[int, ...] | None = None,
    budget: int | None = None,
    params: Mapping[str, Any] | None = None,
) -> TrainResult:
    """One training step of a built-in name, a YAML path or a Model, per layer and in total.

    `precision`: fp32, bf16-mixed or fp16-mixed (torch.autocast, float32 master weights); `device`:
    cuda (the default: what a GPU's memory holds) or cpu (the rules torch's CPU kernels follow, which
    the test suite checks); `budget`: bytes, for `max_batch`.

    >>> step = train_step("resnet50", batch=256, optimizer="adamw", precision="bf16-mixed")
    >>> step.total.step_flops > 3 * 2 * step.total.forward_macs // 2
    True
    """
    _check(optimizer, OPTIMIZERS, "optimizer")
    _check(precision, PRECISIONS, "precision")
    _check(device, DEVICES, "device")
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 1):
        raise SpecError(f"budget must be a positive number of bytes, got {shown(budget)}")
    model = load(spec, params)
    rows, totals, shape = _account(model, batch, input, optimizer, precision, device)
    if batch == 1:  # the linear terms hold from batch 2 on (see TrainTotals.max_batch): take them there
        two = _account(model, 2, input, optimizer, precision, device)[1]
        totals = replace(totals, fixed_bytes=two.fixed_bytes, per_sample_bytes=two.per_sample_bytes,
                         peak_at_one=totals.peak_bytes)
    return TrainResult(model.name, shape, optimizer, precision, device, rows, totals, budget)


def _account(model: Model, batch: int, input: tuple[int, ...] | None, optimizer: str, precision: str,
             device: str) -> tuple[tuple[TrainRow, ...], TrainTotals, tuple[int, ...]]:
    entering: dict[int, tuple] = {}
    result = run(model, batch=batch, input=input, entering=entering)
    shape = result.input_shape[1:]
    trace = Trace(precision, device)
    trace.batch = batch
    step = _Step(result.rows, entering, trace, batch)
    x = trace.new(math.prod(shape), "float32", False)
    step.layers(model.layers, x)
    weights, trained, tensors, buffers = step.state
    saved_per_sample = sum(b for b, _ in (trace.storages[i] for i in trace.saved))
    saved_fixed = sum(f for _, f in (trace.storages[i] for i in trace.saved))
    gradients = 4 * trained
    optimizer_bytes = OPTIMIZERS[optimizer] * 4 * trained
    if optimizer in ("adam", "adamw") and device == "cpu":
        optimizer_bytes += 4 * tensors
    scaler = GRAD_SCALER_BYTES if precision == "fp16-mixed" else 0
    fixed = weights + buffers + gradients + optimizer_bytes + saved_fixed + scaler
    transient, where = step.transient
    totals = TrainTotals(
        forward_macs=sum(r.forward_macs for r in step.out),
        input_grad_macs=sum(r.input_grad_macs for r in step.out),
        weight_grad_macs=sum(r.weight_grad_macs for r in step.out),
        saved_bytes=saved_per_sample * batch + saved_fixed,
        weight_bytes=weights + buffers,
        gradient_bytes=gradients,
        optimizer_bytes=optimizer_bytes,
        transient_bytes=transient * batch,
        transient_layer=where,
        fixed_bytes=fixed,
        per_sample_bytes=saved_per_sample + transient,
        batch=batch,
    )
    if batch == 1:
        totals = replace(totals, peak_at_one=totals.peak_bytes)
    return tuple(step.out), totals, result.input_shape


__all__ = ["KEEPS", "OPTIMIZERS", "PRECISIONS", "TRAINING_CONVENTIONS", "TrainResult", "TrainRow", "TrainTotals",
           "train_step"]
