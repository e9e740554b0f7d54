"""Proof of `archcalc train`: one training step of a spec's torch build, measured the way the
calculator's conventions say, and compared with the calculator row by row.

What is measured, on the module `build_module` makes (train mode, `loss = output.sum()`):
  backward  FlopCounterMode's count while `loss.backward()` runs, halved: the calculator's MACs.
            Per layer, each backward op is charged to the layer whose forward made the autograd node
            running it (FlopCounterMode's own per-module split follows module hooks, which charge a
            residual's shortcut with its body's backward), its flops by FlopCounterMode's formulas.
  saved     every tensor autograd saves during the forward (torch.autograd.graph.saved_tensors_hooks),
            deduplicated by storage (`untyped_storage().data_ptr()`), parameters' and buffers'
            storages left out, each storage's whole `nbytes()` charged to the first layer that
            saved it: a join (add, concat, mul) is its composite's own forward.
  state     after one `optimizer.step()`: the bytes of every `p.grad`, and of every tensor in
            the optimizer's state.

`python -m archcalc.training_check --all --batch 1 8` sweeps every built-in at its own input (slow:
minutes per large model on two cores) and writes reports/training-check.md after each model;
`python -m archcalc.training_check resnet18 vit-b-16 --input 3 32 32` checks a few. torch is imported
here only.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from archcalc.registry import SpecLike, list_models, load
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
    backward_flops: dict[str, int] = field(default_factory=dict)  # layer -> FlopCounterMode's backward flops
    saved: list[Saved] = field(default_factory=list)  # distinct storages, in the order first saved
    grad_bytes: int = 0
    optimizer_bytes: int = 0

    @property
    def saved_bytes(self) -> int:
        return sum(s.nbytes for s in self.saved)

    def saved_by_layer(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for s in self.saved:
            totals[s.layer] = totals.get(s.layer, 0) + s.nbytes
        return totals


def _optimizer(name: str, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3)
    raise ValueError(f"unknown optimizer {name!r}")


def measure(spec: SpecLike, *, batch: int = 2, input: tuple[int, ...] | None = None, precision: str = "fp32",
            optimizer: str | None = None, device: str = "cpu", seed: int = 0) -> Measured:
    """One training step of `spec`'s torch build, measured as the module docstring says.
    `precision`: fp32, or bf16-mixed / fp16-mixed under torch.autocast (float32 weights). The weights
    are left at zero (`init=False`): what is counted does not depend on their values, and a large
    model builds in a fraction of the time."""
    torch.manual_seed(seed)
    model = load(spec)
    net = build_module(model, input=input, init=False, device=device)
    shape = tuple(input) if input is not None else model.input
    x = torch.randn(batch, *shape, device=device)
    kept = {p.untyped_storage().data_ptr() for p in net.parameters()}
    kept |= {b.untyped_storage().data_ptr() for b in net.buffers()}
    modules = layer_modules(net)
    measured = Measured()
    seen: dict[int, Saved] = {}
    running: list[str] = []

    owners: dict[Any, str] = {}  # autograd node -> the leaf layer whose forward made it
    inputs: dict[str, Any] = {}

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
    by_layer = _BackwardByLayer(owners)
    with FlopCounterMode(display=False) as counter, by_layer:
        if loss.requires_grad:  # (not when every layer is frozen)
            loss.backward()
    measured.backward_flops = {name: flops for name, flops in by_layer.flops.items() if flops}
    measured.backward_flops["total"] = counter.get_total_flops()
    if optimizer is not None:
        params = [p for p in net.parameters() if p.requires_grad]
        step = _optimizer(optimizer, params)
        step.step()
        measured.grad_bytes = sum(p.grad.nbytes for p in params if p.grad is not None)
        measured.optimizer_bytes = sum(
            t.nbytes for state in step.state.values() for t in state.values() if isinstance(t, torch.Tensor))
    return measured


@dataclass
class Comparison:
    """The calculator against torch for one model: per-layer differences, empty when they agree."""

    model: str
    ours_backward: int
    torch_backward: int
    ours_saved: int
    torch_saved: int
    differences: list[str]
    seconds: float

    @property
    def agrees(self) -> bool:
        return not self.differences


def compare(spec: SpecLike, *, batch: int = 2, input: tuple[int, ...] | None = None,
            precision: str = "fp32", device: str = "cpu") -> Comparison:
    """`archcalc.train_step` against `measure`, per layer: backward MACs x 2 against FlopCounterMode,
    saved bytes against saved_tensors_hooks."""
    from archcalc.training import train_step

    start = time.perf_counter()
    model = load(spec)
    ours = train_step(model, batch=batch, input=input, precision=precision, device=device)
    measured = measure(model, batch=batch, input=input, precision=precision, device=device)
    differences = []
    theirs_saved = measured.saved_by_layer()
    for row in ours.rows:
        flops = measured.backward_flops.get(row.name, 0)
        if 2 * row.backward_macs != flops:
            differences.append(f"{row.name} ({row.op}): backward flops {2 * row.backward_macs:,} vs torch {flops:,}")
        got = theirs_saved.pop(row.name, 0)
        if row.saved_bytes != got:
            differences.append(f"{row.name} ({row.op}): saved bytes {row.saved_bytes:,} vs torch {got:,}"
                               f" [{_listed(measured, row.name)}]")
    names = {row.name for row in ours.rows}
    for name, flops in measured.backward_flops.items():
        if name != "total" and name not in names:
            differences.append(f"{name}: torch spent {flops:,} backward flops that no row accounts for")
    for name, got in theirs_saved.items():
        differences.append(f"{name or '(outside any layer)'}: torch saved {got:,} bytes that no row accounts for")
    total = measured.backward_flops["total"]
    if 2 * ours.total.backward_macs != total:
        differences.append(f"total backward flops {2 * ours.total.backward_macs:,} vs torch {total:,}")
    return Comparison(model.name, 2 * ours.total.backward_macs, total, ours.total.saved_bytes, measured.saved_bytes,
                      differences, time.perf_counter() - start)


def _listed(measured: Measured, layer: str) -> str:
    return ", ".join(f"{s.dtype}".removeprefix("torch.") + f"{list(s.shape)}={s.nbytes}"
                     for s in measured.saved if s.layer == layer)


def _report(results: list[tuple[str, str, Comparison | str]]) -> str:
    lines = [
        "# Training-step accounting against torch",
        "",
        "Generated by `python -m archcalc.training_check --all`: every built-in's torch build, one step on CPU",
        f"(torch {torch.__version__}), `loss = output.sum()`, against `archcalc.train_step`. Backward: FlopCounterMode",
        "during `loss.backward()` (flops = 2 x our MACs). Saved: saved_tensors_hooks, distinct storages, parameters",
        "and buffers excluded.",
        "",
        "| model | precision, batch | backward flops (ours) | torch | saved bytes (ours) | torch | agrees | seconds |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    notes = []
    for name, precision, result in results:
        if isinstance(result, str):
            lines.append(f"| {name} | {precision} | | | | | error | |")
            notes.append(f"- {name} ({precision}): {result}")
            continue
        lines.append(f"| {name} | {precision} | {result.ours_backward:,} | {result.torch_backward:,} | "
                     f"{result.ours_saved:,} | {result.torch_saved:,} | {'yes' if result.agrees else 'NO'} | "
                     f"{result.seconds:.1f} |")
        notes += [f"- {name} ({precision}): {d}" for d in result.differences[:10]]
    if notes:
        lines += ["", "## Differences", "", *notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m archcalc.training_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="built-in names or spec paths")
    parser.add_argument("--all", action="store_true", help="every built-in; writes reports/training-check.md")
    parser.add_argument("--batch", type=int, nargs="+", default=[2], help="one or more batch sizes (e.g. 1 8)")
    parser.add_argument("--input", type=int, nargs="+", help="C H W (default: the spec's)")
    parser.add_argument("--precision", action="append", choices=["fp32", "bf16-mixed", "fp16-mixed"],
                        help="repeatable; default fp32 and bf16-mixed")
    parser.add_argument("--output", type=Path, default=Path("reports/training-check.md"))
    args = parser.parse_args(argv)
    names = list_models() if args.all else args.models
    precisions = args.precision or ["fp32", "bf16-mixed"]
    results: list[tuple[str, str, Comparison | str]] = []
    for name in names:
        for precision in precisions:
            for batch in args.batch:
                try:
                    result: Comparison | str = compare(name, batch=batch, precision=precision,
                                                       input=tuple(args.input) if args.input else None)
                except Exception as err:  # a model torch cannot build or run is reported, not fatal
                    result = f"{type(err).__name__}: {err}"
                results.append((name, f"{precision}, batch {batch}", result))
                status = result if isinstance(result, str) else \
                    ("agrees" if result.agrees else "; ".join(result.differences[:5]))
                print(f"{name} {precision} batch {batch}: {status}", flush=True)
        if args.all:  # after each model: a long sweep stopped halfway keeps what it has
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(_report(results))
    if args.all:
        print(f"wrote {args.output}")
    return 0 if all(not isinstance(r, str) and r.agrees for _, _, r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
