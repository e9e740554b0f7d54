"""Proof of `archcalc train`: one training step of a spec's torch build, measured the way the
calculator's conventions say, and compared with the calculator row by row.

What is measured, on the module `build_module` makes (train mode, `loss = output.sum()`):
  backward  FlopCounterMode's count while `loss.backward()` runs, halved: the calculator's MACs.
            Per layer, each backward op is charged to the layer whose forward made the autograd node
            running it (FlopCounterMode's own per-module split follows module hooks, which charge a
            residual's shortcut with its body's backward), its flops by FlopCounterMode's formulas.
  split     input-gradient work: the same count during `torch.autograd.grad(loss, frontier)`, the
            frontier being the outputs of the leaf layers where gradients start (an input that needs
            none, an output that does); torch's engine then runs every op an activation's gradient
            needs and no other (a conv's backward without its weight's part). Weight-gradient work: the rest.
  saved     every tensor autograd saves during the forward (torch.autograd.graph.saved_tensors_hooks),
            deduplicated by storage (`untyped_storage().data_ptr()`), parameters' and buffers'
            storages left out, each storage's whole `nbytes()` charged to the first layer that
            saved it: a join (add, concat, mul) is its composite's own forward.
  state     every parameter and buffer storage; each parameter's `.grad` when it lands, and the state
            of each optimizer after a `step()` on that parameter (torch's optimizer-in-backward recipe,
            per parameter as a whole-model step keeps it), the gradient then let go: memory stays at
            the weights and activations, whatever the optimizer.

`python -m archcalc.training_check --all` sweeps every built-in at batch 1 and 8, each at its own
input unless archcalc predicts that too costly for one core (see sweep_input), and writes
reports/training-check.md after each model; `python -m archcalc.training_check resnet18 vit-b-16
--input 3 32 32` checks a few. Both use one torch thread unless --threads says otherwise. torch is
imported here only.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from archcalc.analysis import run
from archcalc.errors import SpecError
from archcalc.registry import SpecLike, list_models, load
from archcalc.reports.writer import write_atomic
from archcalc.spec import Model
from archcalc.torchbuild import build_module, is_leaf, layer_modules

AUTOCAST = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}


@dataclass
class Saved:
    """One storage autograd kept: the layer that saved it first, its bytes, dtype and the shape it was saved as."""

    layer: str
    nbytes: int
    dtype: torch.dtype
    shape: tuple[int, ...]


class _BackwardByLayer(TorchDispatchMode):
    """Each flop-counted op of the backward, charged to the layer that made the autograd node running it."""

    def __init__(self, owners: dict[Any, str]) -> None:
        super().__init__()
        self.owners = owners
        self.flops: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func.overloadpacket)
        if formula is not None:
            node = torch._C._current_autograd_node()
            layer = self.owners.get(node, "(outside any layer)")
            self.flops[layer] = self.flops.get(layer, 0) + formula(*args, **kwargs, out_val=out)
        return out


def _claim(owners: dict[Any, str], name: str, output: torch.Tensor, stop: Any) -> None:
    """The autograd nodes a leaf layer's forward made: from its output's grad_fn back to its input's."""
    todo = [output.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node is stop or node in owners:
            continue
        owners[node] = name
        todo.extend(next_node for next_node, _ in node.next_functions)


@dataclass
class Measured:
    backward_flops: dict[str, int] = field(default_factory=dict)  # layer -> backward flops; "total": FlopCounterMode's
    input_grad_flops: dict[str, int] = field(default_factory=dict)  # layer -> flops of the input-gradient pass
    saved: list[Saved] = field(default_factory=list)  # distinct storages, in the order first saved
    weight_bytes: int = 0  # every parameter and buffer storage
    grad_bytes: int = 0
    optimizer_bytes: dict[str, int] = field(default_factory=dict)  # optimizer -> its state's bytes

    @property
    def saved_bytes(self) -> int:
        return sum(s.nbytes for s in self.saved)

    def saved_by_layer(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for s in self.saved:
            totals[s.layer] = totals.get(s.layer, 0) + s.nbytes
        return totals


def _optimizer(name: str, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3)
    raise ValueError(f"unknown optimizer {name!r}")


def _distinct_bytes(tensors: Iterable[torch.Tensor]) -> int:
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def measure(spec: SpecLike, *, batch: int = 2, input: tuple[int, ...] | None = None, precision: str = "fp32",
            optimizers: Sequence[str] = (), device: str = "cpu", seed: int = 0) -> Measured:
    """One training step of `spec`'s torch build, measured as the module docstring says.
    `precision`: fp32, or bf16-mixed / fp16-mixed under torch.autocast (float32 weights). The weights
    are left at zero (`init=False`): what is counted does not depend on their values, and a large
    model builds in a fraction of the time. `optimizers`: each one's state after its step, per
    parameter as its gradient lands (torch's optimizer-in-backward recipe), so that no more than one
    parameter's gradient and state is alive at once."""
    torch.manual_seed(seed)
    model = load(spec)
    net = build_module(model, input=input, init=False, device=device)
    shape = tuple(input) if input is not None else model.input
    x = torch.randn(batch, *shape, device=device)
    kept = {p.untyped_storage().data_ptr() for p in net.parameters()}
    kept |= {b.untyped_storage().data_ptr() for b in net.buffers()}
    modules = layer_modules(net)
    measured = Measured(weight_bytes=_distinct_bytes([*net.parameters(), *net.buffers()]))
    seen: dict[int, Saved] = {}
    running: list[str] = []

    owners: dict[Any, str] = {}  # autograd node -> the leaf layer whose forward made it
    inputs: dict[str, Any] = {}
    # outputs of the leaf layers where gradients start (an input that needs none, an output that does):
    # differentiating the loss with respect to them runs every input-gradient op and no weight-gradient one
    frontier: list[torch.Tensor] = []

    def enter(name: str):
        def hook(module, args):
            running.append(name)
            inputs[name] = args[0].grad_fn if isinstance(args[0], torch.Tensor) else None
        return hook

    def leave(name: str, leaf: bool):
        def hook(module, args, output):
            running.pop()
            if leaf and isinstance(output, torch.Tensor):
                _claim(owners, name, output, inputs[name])
                if output.requires_grad and not (isinstance(args[0], torch.Tensor) and args[0].requires_grad):
                    frontier.append(output)
        return hook

    handles = []
    for name, module in modules.items():
        if name:
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave(name, is_leaf(module))))

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in kept and key not in seen:
            seen[key] = Saved(running[-1] if running else "", storage.nbytes(), tensor.dtype, tuple(tensor.shape))
            measured.saved.append(seen[key])
        return tensor

    dtype = AUTOCAST.get(precision)
    context = torch.autocast(device, dtype=dtype) if dtype is not None else torch.autocast(device, enabled=False)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), context:
        loss = net(x).float().sum()
    for h in handles:
        h.remove()
    if not loss.requires_grad:  # every layer frozen: no backward
        measured.backward_flops["total"] = 0
        return measured

    input_pass = _BackwardByLayer(owners)
    if frontier:
        with input_pass:
            torch.autograd.grad(loss, frontier, retain_graph=True, allow_unused=True)
    del frontier
    measured.input_grad_flops = {name: flops for name, flops in input_pass.flops.items() if flops}

    grads: dict[int, int] = {}  # parameter -> its gradient's bytes
    states: dict[str, dict[int, int]] = {name: {} for name in optimizers}

    def settle(param: torch.Tensor) -> None:
        """A gradient has landed: its bytes, each optimizer's state after a step on it, then let both go.
        (Keyed by parameter: a parameter used twice is settled again, not counted twice.)"""
        assert param.grad is not None
        grads[id(param)] = param.grad.nbytes
        with _disable_current_modes():  # the counting modes: an optimizer's ops are no backward work
            for name in optimizers:
                step = _optimizer(name, [param])
                step.step()
                states[name][id(param)] = sum(t.nbytes for state in step.state.values()
                                              for t in state.values() if isinstance(t, torch.Tensor))
        param.grad = None

    trained = [p for p in net.parameters() if p.requires_grad]
    handles = [p.register_post_accumulate_grad_hook(settle) for p in trained]
    by_layer = _BackwardByLayer(owners)
    with FlopCounterMode(display=False) as counter, by_layer:
        loss.backward()
    for h in handles:
        h.remove()
    measured.backward_flops = {name: flops for name, flops in by_layer.flops.items() if flops}
    measured.backward_flops["total"] = counter.get_total_flops()
    measured.grad_bytes = sum(grads.values())
    measured.optimizer_bytes = {name: sum(state.values()) for name, state in states.items()}
    return measured


@dataclass
class Quantity:
    """One quantity, the calculator's against torch's: in total, and per layer where it has layers."""

    ours: int
    torch: int
    layers: int = 0  # rows compared
    differences: list[str] = field(default_factory=list)  # "layer (op): ours vs torch"

    @property
    def agrees(self) -> bool:
        return self.ours == self.torch and not self.differences


FLOPS = ("backward", "input grad", "weight grad")  # counted in flops (2 x MACs), shown in MACs


@dataclass
class Comparison:
    """The calculator against torch for one model at one batch and input."""

    model: str
    batch: int
    input: tuple[int, ...]
    quantities: dict[str, Quantity]
    seconds: float
    unattributed: list[str] = field(default_factory=list)  # torch work or memory no row accounts for

    @property
    def differences(self) -> list[str]:
        found = list(self.unattributed)
        for name, q in self.quantities.items():
            found += [f"{name}: {d}" for d in q.differences]
            if q.ours != q.torch:
                found.append(f"{name}: total {_shown(name, q.ours)} vs torch {_shown(name, q.torch)}")
        return found

    @property
    def agrees(self) -> bool:
        return not self.differences


def _shown(quantity: str, value: int) -> str:
    """A value as the report shows it: MACs for the backward quantities (flops / 2), else bytes."""
    if quantity in FLOPS:
        return f"{value // 2:,}" if value % 2 == 0 else f"{value / 2:,.1f}"
    return f"{value:,}"


def compare(spec: SpecLike, *, batch: int = 2, input: tuple[int, ...] | None = None,
            precision: str = "fp32", device: str = "cpu", optimizers: Sequence[str] = ()) -> Comparison:
    """`archcalc.train_step` against `measure`, per layer: backward MACs x 2 (in total, and its input- and
    weight-gradient parts) against FlopCounterMode, saved bytes against saved_tensors_hooks; weights and
    gradients, and each of `optimizers`' state, against what torch allocates."""
    from archcalc.training import train_step

    start = time.perf_counter()
    model = load(spec)
    ours = train_step(model, batch=batch, input=input, precision=precision, device=device, optimizer="sgd")
    measured = measure(model, batch=batch, input=input, precision=precision, device=device, optimizers=optimizers)
    theirs_saved = measured.saved_by_layer()
    full, inputs = measured.backward_flops, measured.input_grad_flops
    per_layer = {
        "backward": (lambda r: 2 * r.backward_macs, lambda name: full.get(name, 0)),
        "input grad": (lambda r: 2 * r.input_grad_macs, lambda name: inputs.get(name, 0)),
        "weight grad": (lambda r: 2 * r.weight_grad_macs, lambda name: full.get(name, 0) - inputs.get(name, 0)),
        "saved": (lambda r: r.saved_bytes, lambda name: theirs_saved.get(name, 0)),
    }
    quantities = {}
    for quantity, (our, their) in per_layer.items():
        q = quantities[quantity] = Quantity(sum(our(r) for r in ours.rows), 0, len(ours.rows))
        for row in ours.rows:
            got = their(row.name)
            q.torch += got
            if our(row) != got:
                note = f" [{_listed(measured, row.name)}]" if quantity == "saved" else ""
                q.differences.append(f"{row.name} ({row.op}) {_shown(quantity, our(row))} vs torch "
                                     f"{_shown(quantity, got)}{note}")
    names = {row.name for row in ours.rows}
    unattributed = [f"{name}: torch spent {flops:,} backward flops that no row accounts for"
                    for name, flops in full.items() if name != "total" and name not in names]
    unattributed += [f"{name or '(outside any layer)'}: torch saved {got:,} bytes that no row accounts for"
                     for name, got in theirs_saved.items() if name not in names]
    # the totals are torch's own: FlopCounterMode's, and every distinct storage saved
    quantities["backward"].torch = full["total"]
    quantities["saved"].torch = measured.saved_bytes
    quantities["weights"] = Quantity(ours.total.weight_bytes, measured.weight_bytes)
    quantities["gradients"] = Quantity(ours.total.gradient_bytes, measured.grad_bytes)
    for name in optimizers:
        state = train_step(model, batch=batch, input=input, precision=precision, device=device, optimizer=name)
        quantities[name] = Quantity(state.total.optimizer_bytes, measured.optimizer_bytes[name])
    return Comparison(model.name, batch, tuple(ours.input_shape[1:]), quantities, time.perf_counter() - start,
                      unattributed)


def _listed(measured: Measured, layer: str) -> str:
    return ", ".join(f"{s.dtype}".removeprefix("torch.") + f"{list(s.shape)}={s.nbytes}"
                     for s in measured.saved if s.layer == layer)


# The sweep's input rule (--all): a built-in runs at its own input when one fp32 step at batch 8 stays
# under both caps by archcalc's own prediction (train_step), else at the cross-check's reduced input.
MACS_CAP = 20 * 10**9  # forward MACs per sample (one fp32 step at batch 8: ~24 x this many flops)
ACTIVATION_CAP = 3 * 10**9  # bytes the batch adds to the predicted peak at batch 8 (8 x per-sample bytes)
REDUCED_SIDE = 64  # tests/test_crosscheck.py's SHORT: its reduced input for the large models
SWEEP_BATCHES = (1, 8)
OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw")


class SweepInput(NamedTuple):
    """The input a built-in is checked at, and why."""

    input: tuple[int, ...]
    reason: str
    macs: int  # forward MACs per sample at the default input
    activation_bytes: int  # what batch 8 adds to the predicted peak at the default input


def _load_of(model: Model, shape: tuple[int, ...]) -> tuple[int, int]:
    from archcalc.training import train_step

    step = train_step(model, batch=8, input=shape, optimizer="sgd", device="cpu").total
    return step.forward_macs // 8, 8 * step.per_sample_bytes


def sweep_input(spec: SpecLike) -> SweepInput:
    """The spec's own input when archcalc predicts its forward MACs per sample under MACS_CAP and the
    batch's share of the batch-8 peak under ACTIVATION_CAP; else REDUCED_SIDE x REDUCED_SIDE with the
    spec's channels, or the smallest side above it that the spec accepts (a square image in every case).
    The parameters, gradients and optimizer state do not depend on the input: a model's own whatever the input."""
    model = load(spec)
    macs, activations = _load_of(model, model.input)
    over = [f"{macs / 1e9:.2f} GMACs > {MACS_CAP / 1e9:.0f}" if macs > MACS_CAP else "",
            f"{activations / 1e9:.3f} GB > {ACTIVATION_CAP / 1e9:.0f} GB" if activations > ACTIVATION_CAP else ""]
    if not any(over) or len(model.input) != 3:
        return SweepInput(model.input, "its own", macs, activations)
    channels, height, width = model.input
    for side in range(REDUCED_SIDE, max(height, width)):
        try:
            run(model, input=(channels, side, side))
        except SpecError:
            continue
        smallest = "" if side == REDUCED_SIDE else f"; the smallest side from {REDUCED_SIDE} it accepts"
        reason = f"reduced: at its own {_size(model.input)} {' and '.join(o for o in over if o)}{smallest}"
        return SweepInput((channels, side, side), reason, macs, activations)
    return SweepInput(model.input, "its own (accepts nothing smaller)", macs, activations)


@dataclass
class Refused:
    """A step archcalc refuses with a SpecError, and torch refuses too (batch norm in training on one
    value per channel, at batch 1 after the spatial dimensions are gone)."""

    model: str
    batch: int
    input: tuple[int, ...]
    ours: str
    theirs: str

    def __str__(self) -> str:
        return f"both refuse: archcalc: {self.ours}; torch: {self.theirs}"


Outcome = Comparison | Refused | str  # a comparison, a step both refuse, or an error


def _checked(name: str, batch: int, input: tuple[int, ...], precision: str, optimizers: Sequence[str]) -> Outcome:
    """compare(), or why not: both refuse, or an error (a string), which the report lists."""
    try:
        return compare(name, batch=batch, precision=precision, input=input, optimizers=optimizers)
    except SpecError as refusal:
        try:
            measure(name, batch=batch, input=input, precision=precision)
        except Exception as err:  # torch refuses it too: what is asked of it is agreement
            return Refused(name, batch, input, str(refusal), f"{type(err).__name__}: {err}")
        return f"{name}: archcalc refuses ({refusal}), torch runs it"
    except Exception as err:  # a model torch cannot build or run is reported, not fatal
        return f"{name}: {type(err).__name__}: {err}"


def _cell(name: str, q: Quantity | None) -> str:
    if q is None:
        return ""
    if q.ours == q.torch:
        return _shown(name, q.ours) + ("" if not q.differences else f" ({len(q.differences)} layers differ)")
    return f"**{_shown(name, q.ours)} vs torch {_shown(name, q.torch)}**"


class Checked(NamedTuple):
    """One built-in at one batch in the sweep."""

    name: str
    batch: int
    choice: SweepInput
    result: Outcome


def _summary(results: list[Checked]) -> str:
    """Per batch: how many agree on everything, how many both refuse, the rest by name."""
    parts = []
    for batch in dict.fromkeys(c.batch for c in results):
        at = [c for c in results if c.batch == batch]
        agree = sum(isinstance(c.result, Comparison) and c.result.agrees for c in at)
        refused = [c.name for c in at if isinstance(c.result, Refused)]
        other = [c.name for c in at if not isinstance(c.result, Refused)
                 and not (isinstance(c.result, Comparison) and c.result.agrees)]
        text = f"batch {batch}: {agree} of {len(at)} agree"
        text += f", {len(refused)} refused by both ({', '.join(refused)})" if refused else ""
        text += f", {len(other)} do not ({', '.join(other)})" if other else ""
        parts.append(text)
    return "; ".join(parts)


COLUMNS = ("backward", "input grad", "weight grad", "saved", "weights", "gradients", "sgd-momentum", "adam", "adamw")


def _report(results: list[Checked], seconds: dict[str, float], rss: dict[str, int], elapsed: float, threads: int,
            precision: str) -> str:
    lines = [
        "# Training-step accounting against torch",
        "",
        f"Generated by `python -m archcalc.training_check --all --batch 1 8`: one {precision} training step of each",
        f"built-in's torch build in train mode on CPU (torch {torch.__version__}, {threads} thread"
        f"{'s' if threads > 1 else ''}), `loss = output.sum()`,",
        "against `archcalc.train_step`, per layer and in total. Backward: FlopCounterMode during `loss.backward()`,",
        "each op charged to the layer whose forward made its autograd node; MACs = flops / 2. Input-gradient work is",
        "what a pass of `torch.autograd.grad` to the outputs of the layers where gradients start counts (the",
        "engine then runs no weight-gradient op); weight-gradient work the rest. Saved: saved_tensors_hooks,",
        "distinct storages, parameters and buffers excluded. Weights: every parameter and buffer storage.",
        "Gradients and optimizer state: each parameter's `.grad` as it lands, and each optimizer's state after a",
        "`step()` on it (torch's optimizer-in-backward recipe: per parameter, as a whole-model step keeps it).",
        "",
        f"**Agreement, on every quantity and every layer:** {_summary(results)}.",
        f"Total {elapsed / 60:.1f} min; the process's peak RSS {max(rss.values(), default=0) / 2**30:.2f} GiB.",
        "",
        "## Inputs",
        "",
        f"A built-in runs at its own input when archcalc predicts (`train_step`, batch 8, fp32) at most "
        f"{MACS_CAP / 1e9:.0f} GMACs per",
        f"sample forward and at most {ACTIVATION_CAP / 1e9:.0f} GB for the batch's share of the peak (8 x per-sample "
        "bytes: saved activations and",
        f"the largest transient); otherwise at {REDUCED_SIDE} x {REDUCED_SIDE} (the cross-check's reduced input, "
        "tests/test_crosscheck.py), or the",
        "smallest side above it the spec accepts, every layer still there. Weights, gradients and optimizer state do",
        "not depend on the input, so they are checked at full size in every case.",
        "",
        "## Results",
        "",
        "Each cell is the calculator's figure where torch's is the same, else both in bold. The optimizers' state",
        "does not depend on the batch: it is checked (sgd's too, which keeps none) at each model's first batch that",
        "runs; the gradients at both.",
        "",
        "| model | batch | input | why | backward MACs | input-grad MACs | weight-grad MACs | saved bytes | weights |"
        " gradients | sgd-momentum | adam | adamw | layers agreeing | agrees | seconds |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    notes = []
    for name, batch, choice, result in results:
        start = f"| {name} | {batch} | {_size(choice.input)} | {choice.reason} |"
        if isinstance(result, Refused):
            lines.append(start + " |" * len(COLUMNS) + " | refused by both | |")
            notes.append(f"- {name}, batch {batch}: {result}")
        elif isinstance(result, str):
            lines.append(start + " |" * len(COLUMNS) + " | **error** | |")
            notes.append(f"- {name}, batch {batch}: {result}")
        else:
            q = result.quantities
            layers = q["backward"].layers
            differing = {d.split(" ")[0] for n in per_layer_names(q) for d in q[n].differences}
            lines.append(start + " " + " | ".join(_cell(n, q.get(n)) for n in COLUMNS)
                         + f" | {layers - len(differing)}/{layers} | {'yes' if result.agrees else '**NO**'} | "
                         f"{result.seconds:.1f} |")
            notes += [f"- {name}, batch {batch}: {d}" for d in result.differences]
    if notes:
        lines += ["", "## Differences and refusals", "", *notes]
    lines += ["", "## Time and memory per model", "",
              "| model | seconds (both batches) | process peak RSS so far (GiB) |", "|---|---:|---:|"]
    lines += [f"| {m} | {seconds[m]:.1f} | {rss[m] / 2**30:.2f} |" for m in seconds]
    return "\n".join(lines) + "\n"


def per_layer_names(quantities: dict[str, Quantity]) -> list[str]:
    return [name for name, q in quantities.items() if q.layers]


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _release_memory() -> None:
    """Between steps: collect, and hand the C heap's free pages back to the system (glibc), so that one
    model's freed memory does not stay resident under the next one's."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _max_rss() -> int:
    """This process's peak resident memory so far, bytes (Linux reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m archcalc.training_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="built-in names or spec paths")
    parser.add_argument("--all", action="store_true",
                        help="every built-in, each at the input the sweep's rule picks; writes reports/training-check.md")
    parser.add_argument("--batch", type=int, nargs="+", default=list(SWEEP_BATCHES),
                        help="one or more batch sizes (default 1 8)")
    parser.add_argument("--input", type=int, nargs="+", help="C H W (default: the sweep's rule, see sweep_input)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16-mixed", "fp16-mixed"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the sweep is sized for one core)")
    parser.add_argument("--output", type=Path, help="the report (default with --all: reports/training-check.md)")
    args = parser.parse_args(argv)
    if args.all == bool(args.models):
        parser.error("give model names or --all (one of them)")
    report = args.output or (Path("reports/training-check.md") if args.all else None)
    torch.set_num_threads(args.threads)
    names = list_models() if args.all else args.models
    results: list[Checked] = []
    seconds: dict[str, float] = {}
    rss: dict[str, int] = {}
    began = time.perf_counter()
    for name in names:
        start = time.perf_counter()
        try:
            model = load(name)
            choice = SweepInput(tuple(args.input), "--input", 0, 0) if args.input else sweep_input(model)
        except SpecError as err:
            print(f"{name}: {err}", file=sys.stderr)
            return 2
        optimizers: Sequence[str] = OPTIMIZERS  # their state does not depend on the batch: checked at the first that runs
        for batch in args.batch:
            result = _checked(name, batch, choice.input, args.precision, optimizers)
            optimizers = () if isinstance(result, Comparison) else optimizers
            results.append(Checked(name, batch, choice, result))
            status = result if isinstance(result, str) else str(result) if isinstance(result, Refused) else \
                ("agrees" if result.agrees else "; ".join(result.differences[:5]))
            print(f"{name} batch {batch} at {_size(choice.input)}: {status} "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
            _release_memory()
        seconds[name], rss[name] = time.perf_counter() - start, _max_rss()
        if report:  # after each model (atomically): a long sweep stopped halfway keeps what it has
            write_atomic(report, _report(results, seconds, rss, time.perf_counter() - began, args.threads,
                                         args.precision).encode())
    if report:
        print(f"wrote {report}")
    return 0 if all(isinstance(c.result, Refused) or isinstance(c.result, Comparison) and c.result.agrees
                    for c in results) else 1


if __name__ == "__main__":
    sys.exit(main())
