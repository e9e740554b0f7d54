"""Run a spec as a real torch network and compare every layer with the calculator.

Per row of `archcalc.analyze` (leaf layers and the concat/add joins) the check compares:
the output shape (forward hooks) and parameter count of the built module, fvcore's
`FlopCountAnalysis.by_module()` against `Row.fvcore_flops`, and torch's `FlopCounterMode`
against `Row.torch_flops`. A join's own count is its module's count minus its children's.
Where fvcore is known to miscount an op (docs/oracles.md), the layer is marked an oracle
gap, shown, and not counted as a disagreement. torch and fvcore are imported here only.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from archcalc.analysis import run
from archcalc.errors import INSTALL_ORACLES
from archcalc.registry import SpecLike, list_models, load
from archcalc.result import CONVENTIONS, Result, Row
from archcalc.torchbuild import Network, build_module, is_leaf, layer_modules

DEVICES = ("auto", "cpu", "cuda")

# What each oracle's total counts, shown beside it.
ORACLE_CONVENTIONS = {
    "calculator_macs": CONVENTIONS["macs"],
    "fvcore": "fvcore FlopCountAnalysis: one fused multiply-add = 1 flop for conv/linear, plus batch norm "
    "and adaptive average pooling; unsupported ops (pooling, activations, adds) count 0",
    "torch": "torch.utils.flop_counter.FlopCounterMode: 2 flops per multiply-add of conv/linear (matmul), "
    "nothing else",
}

# Known miscounts of fvcore (the layer counts 0): (test on the built leaf module, why). See
# docs/oracles.md. FlopCounterMode has none for the ops archcalc knows.
FVCORE_GAPS: tuple[tuple[Callable[[nn.Module], bool], str], ...] = (
    (
        lambda m: isinstance(m, nn.Conv2d) and isinstance(m.padding, str),
        "fvcore has no handle for aten::_convolution_mode (conv2d with padding='same'/'valid'): counts 0",
    ),
)


class CrossCheckError(RuntimeError):
    """The check could not run (no CUDA, no fvcore); not a disagreement."""


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` is CUDA when torch sees a GPU, else the CPU; `cuda` without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            built = "this torch build has no CUDA support" if torch.version.cuda is None else "no GPU is visible"
            raise CrossCheckError(f"--device cuda: CUDA is not available ({built}, torch {torch.__version__}); use --device cpu")
        return torch.device(device)
    raise CrossCheckError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class LayerCheck:
    """One calculator row beside what the real module did."""

    name: str
    op: str
    description: str
    shape: tuple[int, ...]
    torch_shape: tuple[int, ...] | None
    params: int
    torch_params: int | None
    trainable_params: int
    torch_trainable_params: int | None
    fvcore_flops: int
    fvcore: int | None
    torch_flops: int
    torch: int | None
    mismatches: tuple[str, ...] = ()  # fields that disagree: shape, params, trainable, fvcore, torch, module
    gaps: tuple[str, ...] = ()  # known fvcore miscounts (FVCORE_GAPS) that explain a difference

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def status(self) -> str:
        return "mismatch" if self.mismatches else "oracle-gap" if self.gaps else "ok"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("shape", "torch_shape", "mismatches", "gaps"):
            d[key] = None if d[key] is None else list(d[key])
        d["status"] = self.status
        return d


@dataclass(frozen=True)
class Totals:
    """Whole-network figures: the calculator's and each oracle's, with their conventions."""

    params: int
    torch_params: int
    macs: int
    fvcore_flops: int  # the calculator's fvcore-convention count
    fvcore: int  # what fvcore reported
    fvcore_expected: int  # the calculator's count less the documented oracle gaps
    torch_flops: int
    torch: int

    @property
    def ok(self) -> bool:
        return (self.params, self.fvcore_expected, self.torch_flops) == (self.torch_params, self.fvcore, self.torch)


@dataclass(frozen=True)
class Timing:
    """Forward time on the device: median of `runs` after `warmup` runs, under inference_mode."""

    median_s: float
    runs: int
    warmup: int
    times_s: tuple[float, ...]
    flops: int  # torch FlopCounterMode's count for one forward (2 x MACs)

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.median_s if self.median_s > 0 else float("inf")


@dataclass(frozen=True)
class CheckResult:
    """Everything one model's cross-check found."""

    model: str
    input_shape: tuple[int, ...]  # with the batch
    device: str
    versions: Mapping[str, str]
    layers: tuple[LayerCheck, ...]
    totals: Totals
    timing: Timing | None
    fvcore_unsupported: Mapping[str, int] = field(default_factory=dict)  # op -> times seen (counted 0)
    fvcore_uncalled: tuple[str, ...] = ()
    warnings: Mapping[str, int] = field(default_factory=dict)  # captured warning text -> times
    problems: tuple[str, ...] = ()  # whole-network disagreements (module coverage, totals)
    seconds: float = 0.0  # the whole check, build included

    @property
    def mismatches(self) -> list[LayerCheck]:
        return [layer for layer in self.layers if not layer.ok]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.mismatches and self.totals.ok

    def warning_summary(self) -> list[str]:
        """fvcore's noise in a few lines."""
        lines = []
        if self.fvcore_unsupported:
            ops = ", ".join(f"{op} x{n}" for op, n in sorted(self.fvcore_unsupported.items()))
            lines.append(f"fvcore skipped unsupported operators (counted as 0, as its convention says): {ops}")
        if self.fvcore_uncalled:
            lines.append(f"fvcore saw modules never called: {', '.join(self.fvcore_uncalled)}")
        for text, n in self.warnings.items():
            lines.append(f"warning x{n}: {text}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        timing = None
        if self.timing is not None:
            timing = {**asdict(self.timing), "times_s": list(self.timing.times_s), "flops_per_s": self.timing.flops_per_s}
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "device": self.device,
            "versions": dict(self.versions),
            "ok": self.ok,
            "layers": [layer.to_dict() for layer in self.layers],
            "totals": {**asdict(self.totals), "ok": self.totals.ok},
            "conventions": dict(ORACLE_CONVENTIONS),
            "timing": timing,
            "fvcore_unsupported": dict(self.fvcore_unsupported),
            "fvcore_uncalled": list(self.fvcore_uncalled),
            "warnings": dict(self.warnings),
            "warning_summary": self.warning_summary(),
            "problems": list(self.problems),
            "seconds": self.seconds,
        }


# ---- the oracles ------------------------------------------------------------------------


def _first_line(message: object) -> str:
    return str(message).strip().splitlines()[0] if str(message).strip() else type(message).__name__


def _ignore_fvcore_noise() -> None:
    """Ignore the warning fvcore's own code raises whatever the network: its `torch.jit.script` decorators
    (torch >= 2.10 deprecates torch.jit.script). Every other warning is still recorded and reported."""
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning)


def _fvcore_counts(net: nn.Module, x: torch.Tensor, seen: Counter) -> tuple[dict[str, int], Counter, tuple[str, ...]]:
    """fvcore's count per module name ("" is the whole network), its unsupported ops and uncalled modules."""
    with warnings.catch_warnings():
        _ignore_fvcore_noise()
        try:
            from fvcore.nn import FlopCountAnalysis
        except ImportError as err:
            raise CrossCheckError(f"fvcore is not installed: {INSTALL_ORACLES}") from err
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ignore_fvcore_noise()
        analysis = (
            FlopCountAnalysis(net, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("all")
        )
        counts = dict(analysis.by_module())
        unsupported = Counter(analysis.unsupported_ops())
        uncalled = tuple(sorted(analysis.uncalled_modules()))
    seen.update(f"{w.category.__name__}: {_first_line(w.message)}" for w in caught)
    return counts, unsupported, uncalled


def _torch_pass(net: Network, x: torch.Tensor, names: Iterable[str]) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """One forward under FlopCounterMode with output-shape hooks on the named modules."""
    from torch.utils.flop_counter import FlopCounterMode

    modules = dict(net.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def hook_for(name: str):
        def hook(module, inputs, output):
            shapes[name] = tuple(output.shape)

        return hook

    try:
        for name in names:
            if name in modules:
                handles.append(modules[name].register_forward_hook(hook_for(name)))
        counter = FlopCounterMode(display=False)  # depth only limits its printed table; counts cover every module
        with counter:
            net(x)
    finally:
        for handle in handles:
            handle.remove()
    prefix = type(net).__name__
    flops = {}
    for key, per_op in counter.get_flop_counts().items():
        if key == prefix or key.startswith(prefix + "."):
            flops[key[len(prefix) + 1 :]] = sum(per_op.values())
    flops["__global__"] = counter.get_total_flops()
    return shapes, flops


def _time_forward(net: nn.Module, x: torch.Tensor, runs: int, warmup: int) -> list[float]:
    cuda = x.device.type == "cuda"
    for _ in range(warmup):
        net(x)
    times = []
    for _ in range(runs):
        if cuda:
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        net(x)
        if cuda:
            torch.cuda.synchronize(x.device)
        times.append(time.perf_counter() - start)
    return times


# ---- comparing --------------------------------------------------------------------------


def _own(counts: Mapping[str, int], name: str, module: nn.Module) -> int:
    """A module's count less its children's: the join's own work for a concat or residual."""
    total = counts.get(name, 0)
    for key in module._modules:
        total -= counts.get(f"{name}.{key}", 0)
    return total


def _compare_row(row: Row, module: nn.Module | None, shapes, fv: Mapping[str, int], tf: Mapping[str, int]) -> LayerCheck:
    name = row.name
    if module is None:
        return LayerCheck(
            name, row.op, row.description, row.output_shape, None, row.params, None, row.trainable_params, None,
            row.fvcore_flops, None, row.torch_flops, None, mismatches=("module",),
        )
    leaf = is_leaf(module)
    own = list(module.parameters(recurse=False)) if not leaf else list(module.parameters())
    params = sum(p.numel() for p in own)
    trainable = sum(p.numel() for p in own if p.requires_grad)
    fvcore = fv.get(name, 0) if leaf else _own(fv, name, module)
    flops = tf.get(name, 0) if leaf else _own(tf, name, module)
    gaps = tuple(why for test, why in FVCORE_GAPS if leaf and test(module))
    mismatches = []
    shape = shapes.get(name)
    if shape != row.output_shape:
        mismatches.append("shape")
    if params != row.params:
        mismatches.append("params")
    if trainable != row.trainable_params:
        mismatches.append("trainable")
    if fvcore != (0 if gaps else row.fvcore_flops):
        mismatches.append("fvcore")
    if flops != row.torch_flops:
        mismatches.append("torch")
    return LayerCheck(
        name, row.op, row.description, row.output_shape, shape, row.params, params, row.trainable_params, trainable,
        row.fvcore_flops, fvcore, row.torch_flops, flops, tuple(mismatches), gaps,
    )


def check_module(
    net: Network,
    result: Result | None = None,
    *,
    batch: int = 1,
    input: tuple[int, ...] | None = None,
    runs: int = 5,
    warmup: int = 1,
    seed: int = 0,
    device: torch.device | None = None,
    progress: Callable[[str], None] | None = None,
) -> CheckResult:
    """Cross-check a module built by `build_module` against its spec, on the device its weights are on.

    The module is left as it was: training flag restored, every hook removed, weights untouched.
    `runs=0` skips the timing. `device` is needed only for a network without parameters or buffers.
    `progress` is told each phase as it starts.
    """
    say = progress or (lambda phase: None)
    started = time.perf_counter()
    if result is None:
        result = run(getattr(net, "spec"), batch=batch, input=input)  # build_module sets it
    if device is None:
        tensors = [*net.parameters(), *net.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(result.input_shape, generator=generator).to(device)
    names = [row.name for row in result.rows]
    seen: Counter = Counter()
    was_training = net.training
    net.eval()  # dropout off, batch norm on running statistics (the calculator's fvcore convention)
    try:
        with torch.inference_mode(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            say("forward pass with FlopCounterMode")
            shapes, tf = _torch_pass(net, x, names)
            say("fvcore")
            fv, unsupported, uncalled = _fvcore_counts(net, x, seen)
            if runs > 0:
                say(f"timing {runs} forward passes")
            times = _time_forward(net, x, runs, warmup) if runs > 0 else []
        seen.update(f"{w.category.__name__}: {_first_line(w.message)}" for w in caught)
    finally:
        net.train(was_training)
    modules = layer_modules(net)
    # an auxiliary's layers do not run at inference: their shapes are the calculator's alone
    idle = {i for g in result.groups if g.kind == "auxiliary" for i in range(g.start, g.stop)}
    for i in idle:
        shapes.setdefault(result.rows[i].name, result.rows[i].output_shape)
    layers = tuple(_compare_row(row, modules.get(row.name), shapes, fv, tf) for row in result.rows)
    problems = []
    covered = set(names)
    stray = [n for n, m in modules.items() if n and is_leaf(m) and n not in covered]
    if stray:
        problems.append(f"modules without a calculator row: {', '.join(stray[:5])}")
    gap_fvcore = sum(layer.fvcore_flops for layer in layers if layer.gaps)
    totals = Totals(
        params=result.total.params,
        torch_params=sum(p.numel() for p in net.parameters()),
        macs=result.total.macs,
        fvcore_flops=result.total.fvcore_flops,
        fvcore=fv.get("", 0),
        fvcore_expected=result.total.fvcore_flops - gap_fvcore,
        torch_flops=result.total.torch_flops,
        torch=tf["__global__"],
    )
    timing = None
    if times:
        timing = Timing(statistics.median(times), len(times), warmup, tuple(times), tf["__global__"])
    return CheckResult(
        model=result.model,
        input_shape=result.input_shape,
        device=str(device),
        versions={"torch": torch.__version__, "fvcore": _version("fvcore"), "archcalc": _version("archcalc")},
        layers=layers,
        totals=totals,
        timing=timing,
        fvcore_unsupported=dict(unsupported),
        fvcore_uncalled=uncalled,
        warnings=dict(seen),
        problems=tuple(problems),
        seconds=time.perf_counter() - started,
    )


def check_model(
    spec: SpecLike,
    *,
    device: str = "auto",
    input: tuple[int, ...] | None = None,
    batch: int = 1,
    params: Mapping[str, Any] | None = None,
    runs: int = 5,
    warmup: int = 1,
    progress: Callable[[str], None] | None = None,
) -> CheckResult:
    """Build a spec (a built-in name, YAML path or Model), run it on `device` and compare every layer.

    >>> check_model("lenet", device="cpu").ok
    True
    """
    started = time.perf_counter()
    where = resolve_device(device)
    model = load(spec, params)
    result = run(model, batch=batch, input=input)  # a bad spec fails here, as a SpecError
    if progress is not None:
        progress("building the network")
    with warnings.catch_warnings(record=True) as caught:  # torch's notes on the spec, e.g. even 'same' kernels
        warnings.simplefilter("always")
        net = build_module(model, input=input, device=where, init=False, validate=False)
    try:
        checked = check_module(net, result, runs=runs, warmup=warmup, device=where, progress=progress)
    finally:
        del net  # nothing else refers to it: the weights are freed here (tested), no gc pass needed
        if where.type == "cuda":
            torch.cuda.empty_cache()
    seen = Counter(checked.warnings)
    seen.update(f"{w.category.__name__}: {_first_line(w.message)}" for w in caught)
    return replace(checked, warnings=dict(seen), seconds=time.perf_counter() - started)


def check_all(
    names: Iterable[str] | None = None,
    *,
    device: str = "auto",
    batch: int = 1,
    runs: int = 3,
    warmup: int = 1,
    progress: Callable[[str, CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Every built-in (or the given names) at its default input, one after another."""
    results = []
    for name in names if names is not None else list_models():
        checked = check_model(name, device=device, batch=batch, runs=runs, warmup=warmup)
        results.append(checked)
        if progress is not None:
            progress(name, checked)
    return results
