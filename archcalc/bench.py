"""Measure archcalc's analysis against counters that run the network, and how each cost grows.

Every function returns data (dataclasses); printing, markdown and plots live in
`bench_report` and `bench_cli`. torch and fvcore are imported inside the functions that
time them, so `archcalc bench --no-oracles` and `import archcalc.bench` need neither.

What is timed, per case (model, input size, batch):
- analysis: `archcalc.analyze(name, input=, batch=)` with the built-in YAML files already
  parsed and compiled (warm): building the Model from the compiled file, then the walk. `run_only` is the
  walk alone on a loaded Model. The cold figure (parsing every built-in file first) is
  measured per model, apart.
- fvcore: `FlopCountAnalysis(net, x).total()` (it traces the network with torch.jit).
- flopcounter: one forward under `torch.utils.flop_counter.FlopCounterMode`.
- forward: one plain forward pass under `torch.inference_mode()`.
The three torch tools run under eval mode on torchvision's own module for a built-in that is
torchvision's model (its `published: torchvision` builder), when torchvision is installed, and on
a module from `torchbuild.build_module` otherwise (weights zeroed: `init=False`, the values do not
change the timings of dense kernels).
"""

from __future__ import annotations

import cProfile
import functools
import gc
import io
import logging
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Callable, Iterable, Mapping, Sequence

import archcalc
from archcalc import registry
from archcalc.analysis import run
from archcalc.errors import INSTALL_ORACLES
from archcalc.result import Result

# one model of every family, the classics first (their ratios have history in the README)
MODELS = ("alexnet-torchvision", "vgg16", "googlenet-torchvision", "resnet50", "resnet152", "mobilenet-v3-large",
          "efficientnet-b0", "shufflenet-v2-x1-0", "convnext-tiny", "vit-b-16", "swin-t")
SIZES = (224, 512, 1024)
BATCHES = (1, 32)
DEPTH_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# the other families, and each family's hardest case, at its own default input (batch 1): the 100x goal
# holds for every family where the network is largest, not only at 224
FAMILY_MODELS = ("squeezenet1-1", "densenet201", "inception-v3", "mobilenet-v2", "mnasnet1-3", "efficientnet-b7",
                 "efficientnet-v2-l", "regnet-y-128gf", "convnext-large", "maxvit-t", "swin-v2-b", "vit-h-14")
TOOLS = ("fvcore", "flopcounter", "forward")  # the counters that run the network, and a plain pass
TOOL_LABELS = {
    "analysis": "archcalc load + analyse",
    "fvcore": "fvcore FlopCountAnalysis",
    "flopcounter": "torch FlopCounterMode",
    "forward": "plain forward pass",
}
# the floor: what any command line built on archcalc's libraries pays before doing anything
IMPORT_FLOOR = 'python -c "import rich, typer, yaml, tabulate"'
CLI_COMMANDS = {  # label -> argv after the Python interpreter
    "archcalc table alexnet": ["-m", "archcalc", "table", "alexnet"],
    'python -c "import torch"': ["-c", "import torch"],
    IMPORT_FLOOR: ["-c", "import rich, typer, yaml, tabulate"],
    'python -c "pass"': ["-c", "pass"],
}


# ---- settings and results -------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What to measure and how often; `quick()`, `standard()` and `full()` are the presets."""

    models: tuple[str, ...] = MODELS
    sizes: tuple[int, ...] = SIZES
    batches: tuple[int, ...] = BATCHES
    depth_models: tuple[str, ...] = DEPTH_MODELS
    family_models: tuple[str, ...] = FAMILY_MODELS  # at their default input, batch 1
    families_required: bool = True  # the torch tools time them whatever their size (memory allowing)
    analysis_repeat: int = 50  # timed analyses per case (after one warm-up each), interleaved
    tool_repeat: int = 5  # timed runs per case and torch tool, after one warm-up per model and tool
    tool_seconds: float = 2.0  # stop repeating a tool on a case once its runs took this long (>= 1 run)
    max_gmac: float = 100.0  # torch tools skip a case whose forward pass is more multiply-adds than this
    max_memory_gb: float | None = None  # ... or could need more memory than this; None: half of what is free
    cli_runs: int = 5  # timed processes per command line, after one warm-up each
    oracles: bool = True  # False: the analysis side only (no torch, no fvcore)
    profile: bool = True  # profile the analysis when a target is missed
    # cases the targets need even beyond max_gmac (resnet152 at 1024 x 1024 for the 1000x goal)
    required: tuple[tuple[str, int, int], ...] = (("resnet152", 1024, 1),)

    @classmethod
    def quick(cls) -> "Settings":
        return cls(sizes=(224,), batches=(1,), analysis_repeat=15, tool_repeat=3, tool_seconds=1.0,
                   max_gmac=20.0, cli_runs=3, required=(), families_required=False)

    @classmethod
    def standard(cls) -> "Settings":
        return cls()

    @classmethod
    def full(cls) -> "Settings":
        return cls(analysis_repeat=100, tool_repeat=7, tool_seconds=60.0, max_gmac=float("inf"), cli_runs=10)


@dataclass(frozen=True)
class Case:
    model: str
    size: int
    batch: int

    @property
    def input(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    @property
    def label(self) -> str:
        return f"{self.model} {self.size}x{self.size} x{self.batch}"


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of each timed run (warm-ups not included)."""

    times_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def n(self) -> int:
        return len(self.times_s)


@dataclass
class CaseResult:
    """One case: what archcalc says it costs, and how long each tool took (or why it was skipped)."""

    case: Case
    macs: int
    depth: int
    memory_bytes: int  # params + every activation (float32): the most a traced pass could hold
    analysis: Timing
    run_only: Timing
    peak_bytes: int  # tracemalloc peak of one warm load + analyse
    tools: dict[str, Timing | str] = field(default_factory=dict)  # tool -> Timing, or why skipped
    # archcalc's load + analyse again, in the same rounds as the torch tools: the ratios' base,
    # so that the machine getting faster or slower between the two phases does not move them
    alongside: Timing | None = None

    def seconds(self, tool: str) -> float | None:
        if tool == "analysis":
            return self.analysis.median_s
        timing = self.tools.get(tool)
        return timing.median_s if isinstance(timing, Timing) else None

    def ratio(self, tool: str) -> float | None:
        """How many times longer `tool` took than archcalc's load + analyse: the median over rounds
        of the tool's run over archcalc's time in the same round (`paired_ratio`), if archcalc was
        timed alongside the tool; else the ratio of the medians."""
        timing = self.tools.get(tool)
        if not isinstance(timing, Timing):
            return None
        if self.alongside is None:
            return timing.median_s / self.analysis.median_s
        return paired_ratio(self.alongside, timing)


@dataclass(frozen=True)
class Target:
    goal: str
    measured: str
    passed: bool | None  # None: not measured in this run


@dataclass
class BenchResult:
    settings: Settings
    machine: dict[str, str]
    started: str
    cases: list[CaseResult]
    depth: list[CaseResult]
    families: list[CaseResult]  # FAMILY_MODELS at their default input
    cold: dict[str, ColdLoad]  # model -> load + analyse with nothing parsed yet
    cli: dict[str, Timing | str]
    profile: str = ""  # cProfile of `profiled`'s analysis, when a speed target is missed
    split: tuple[float, float] | None = None  # `profiled`: median s building the Model, walking it
    profiled: str = "resnet152"
    duration_s: float = 0.0
    targets: list[Target] = field(default_factory=list)

    def find(self, model: str, size: int, batch: int) -> CaseResult | None:
        return next((c for c in self.cases if c.case == Case(model, size, batch)), None)

    @property
    def skipped(self) -> list[tuple[str, str, str]]:
        """(case, tool, reason) for every torch measurement that was not made."""
        return [
            (c.case.label, tool, why)
            for c in {id(c): c for c in [*self.cases, *self.depth, *self.families]}.values()
            for tool, why in c.tools.items()
            if isinstance(why, str)
        ]


# ---- the machine ----------------------------------------------------------------------


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _meminfo(key: str) -> int | None:
    """A /proc/meminfo figure in bytes (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _load_average() -> str:
    """Other work on the machine while the benchmark ran: it slows the torch tools most."""
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def machine_info(with_torch: bool, load_at_start: str = "unknown") -> dict[str, str]:
    """CPU, cores, memory, OS and versions, as text."""
    total = _meminfo("MemTotal")
    info = {
        "CPU": _cpu_model(),
        "logical CPUs": str(os.cpu_count()),
        "memory": f"{total / 2**30:.1f} GiB" if total else "unknown",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "load average (1, 5, 15 min), start / end": f"{load_at_start} / {_load_average()}",
        "archcalc": archcalc.__version__,
    }
    if with_torch:
        import torch

        info["torch"] = torch.__version__
        info["torch threads"] = str(torch.get_num_threads())
        info["fvcore"] = _package("fvcore")
    return info


def memory_limit(settings: Settings) -> int:
    """Bytes a torch case may need at most: the setting, else half of the memory free now."""
    if settings.max_memory_gb is not None:
        return int(settings.max_memory_gb * 1e9)
    free = _meminfo("MemAvailable")
    return free // 2 if free else 8 * 10**9


# ---- archcalc's side ------------------------------------------------------------------


def clear_parse_cache() -> None:
    """Forget the parsed built-in YAML files: the next load reads and parses its model's file again."""
    registry._spec_file.cache_clear()
    registry._builtin_files.cache_clear()
    registry._builtin_index.cache_clear()
    registry._builtin.cache_clear()


def _analyse(case: Case) -> Result:
    return archcalc.analyze(case.model, input=case.input, batch=case.batch)


def _peak_bytes(fn: Callable[[], object]) -> int:
    """tracemalloc's peak of Python allocations while `fn` runs."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def time_analysis(cases: Sequence[Case], repeat: int) -> list[CaseResult]:
    """Load + analyse (warm) and the walk alone for each case, `repeat` times each after a warm-up.

    A model's cases are timed round-robin (224 x1, 224 x32, 512 x1, ..., then again), so
    a burst of load on a shared machine lands on every input size alike. As in `timeit`,
    the garbage collector is off while timing: a collection landing in a 0.6 ms call
    otherwise moves it by 20%, which would hide whether the time depends on the input.
    """
    results = {c: _analyse(c) for c in cases}  # warm-up: parses the YAML files once
    warm: dict[Case, list[float]] = {c: [] for c in cases}
    walk: dict[Case, list[float]] = {c: [] for c in cases}
    clock = time.perf_counter
    for model in dict.fromkeys(c.model for c in cases):
        mine = [c for c in cases if c.model == model]
        spec = archcalc.load(model)
        gc.collect()
        gc.disable()
        try:
            for _ in range(repeat):
                for c in mine:
                    start = clock()
                    _analyse(c)
                    warm[c].append(clock() - start)
                    start = clock()
                    run(spec, batch=c.batch, input=c.input)
                    walk[c].append(clock() - start)
        finally:
            gc.enable()
    return [
        CaseResult(
            case=c,
            macs=results[c].total.macs,
            depth=results[c].total.depth,
            memory_bytes=results[c].total.params_bytes + results[c].total.activation_bytes,
            analysis=Timing(tuple(warm[c])),
            run_only=Timing(tuple(walk[c])),
            peak_bytes=_peak_bytes(functools.partial(_analyse, c)),
        )
        for c in cases
    ]


@dataclass(frozen=True)
class ColdLoad:
    """Load + analyse with every built-in YAML file read and parsed first."""

    timing: Timing
    peak_bytes: int  # tracemalloc peak of one such call


def _cold(model: str) -> Result:
    clear_parse_cache()
    return archcalc.analyze(model)


def time_cold(models: Iterable[str], repeat: int) -> dict[str, ColdLoad]:
    """Load + analyse at the model's default input with no built-in file parsed yet."""
    times: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(repeat):
        for model in times:
            start = time.perf_counter()
            _cold(model)
            times[model].append(time.perf_counter() - start)
    return {m: ColdLoad(Timing(tuple(t)), _peak_bytes(functools.partial(_cold, m))) for m, t in times.items()}


def profile_analysis(model: str = "resnet152", calls: int = 20, top: int = 15) -> str:
    """cProfile of `calls` warm load + analyse calls: the functions with the most own time."""
    archcalc.analyze(model)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        archcalc.analyze(model)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    return text[text.find("   ncalls"):].rstrip() if "   ncalls" in text else text.strip()


def split_load_and_walk(model: str = "resnet152", repeat: int = 30) -> tuple[float, float]:
    """Median seconds of building the Model from the compiled YAML (which a warm `analyze` does
    not: the built-in's Model is kept), and of the walk (GC off)."""
    archcalc.analyze(model)
    spec = archcalc.load(model)
    builds, walks = [], []
    gc.collect()
    gc.disable()  # as for the table's figures
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            registry.build(model)
            middle = time.perf_counter()
            run(spec)
            builds.append(middle - start)
            walks.append(time.perf_counter() - middle)
    finally:
        gc.enable()
    return statistics.median(builds), statistics.median(walks)


# ---- the command line as a whole process ----------------------------------------------


def time_processes(commands: Mapping[str, list[str]], runs: int) -> dict[str, Timing | str]:
    """Each command line as a fresh `python` process: one warm-up, then `runs` timed, round-robin."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    # an installed package runs from cached bytecode (pip compiles it); without this, where the
    # environment forbids writing bytecode, every run would compile archcalc's source anew
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    failed: dict[str, str] = {}
    times: dict[str, list[float]] = {label: [] for label in commands}
    for attempt in range(runs + 1):
        for label, argv in commands.items():
            if label in failed:
                continue
            start = time.perf_counter()
            done = subprocess.run([sys.executable, *argv], capture_output=True, env=env)
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                lines = done.stderr.decode(errors="replace").strip().splitlines()
                failed[label] = f"exit {done.returncode}: {lines[-1] if lines else 'no message'}"
            elif attempt:
                times[label].append(elapsed)
    return {label: failed.get(label) or Timing(tuple(times[label])) for label in commands}


# ---- the torch side -------------------------------------------------------------------


def plan_skip(result: CaseResult, settings: Settings, limit_bytes: int) -> str:
    """Why the torch tools should not run this case, or "" when they should."""
    c = result.case
    if result.memory_bytes > limit_bytes:
        return (f"could need {result.memory_bytes / 1e9:,.1f} GB (weights + every activation, float32) "
                f"> {limit_bytes / 1e9:,.1f} GB allowed")
    required = (c.model, c.size, c.batch) in settings.required or (
        settings.families_required and c.model in settings.family_models and c == family_case(c.model))
    if result.macs > settings.max_gmac * 1e9 and not required:
        return f"{result.macs / 1e9:,.0f} GMAC per pass > the {settings.max_gmac:g} GMAC limit (too slow here)"
    return ""


def tool_runners(net, x) -> dict[str, Callable[[], object]]:
    """One zero-argument call per torch tool, on module `net` and input `x`."""
    import torch
    from fvcore.nn import FlopCountAnalysis
    from torch.utils.flop_counter import FlopCounterMode

    def fvcore() -> int:
        analysis = FlopCountAnalysis(net, x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        return analysis.total()

    def flopcounter() -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(x)
        return counter.get_total_flops()

    def forward() -> object:
        with torch.inference_mode():
            return net(x)

    return {"fvcore": fvcore, "flopcounter": flopcounter, "forward": forward}


def _interleaved(
    runners: Mapping[str, Callable[[], object]], runs: int, budget_s: float, alongside: Callable[[], object],
    alongside_calls: int = 5,
) -> tuple[dict[str, Timing], Timing]:
    """Each tool `runs` times, round-robin (a burst of other work hits every tool alike);
    a tool stops early once its runs took `budget_s` (after at least one). Each round also
    times `alongside` (archcalc) `alongside_calls` times, GC off, after one untimed call (the
    first call after a forward pass runs on cold caches, twice as slow: the tools had their
    warm-up too), and keeps the median."""
    times: dict[str, list[float]] = {tool: [] for tool in runners}
    base: list[float] = []
    clock = time.perf_counter
    for _ in range(runs):
        gc.disable()
        try:
            alongside()
            calls = []
            for _ in range(alongside_calls):
                start = clock()
                alongside()
                calls.append(clock() - start)
        finally:
            gc.enable()
        base.append(statistics.median(calls))
        for tool, fn in runners.items():
            if times[tool] and sum(times[tool]) >= budget_s:
                continue
            start = clock()
            fn()
            times[tool].append(clock() - start)
    return {tool: Timing(tuple(t)) for tool, t in times.items()}, Timing(tuple(base))


def reference_module(model: str, input: tuple[int, int, int]):
    """torchvision's own module for a built-in that is torchvision's model, when torchvision is installed
    (the tools are timed on the real network); None otherwise, and the spec's torch build is timed."""
    builder = registry.load(model).published.get("torchvision")
    if builder is None:
        return None
    try:
        from archcalc.torchvision_check import BUILDER_KWARGS, import_torchvision

        models = import_torchvision()
    except ImportError:
        return None
    kwargs = dict(BUILDER_KWARGS.get(builder, {}))
    if builder.startswith("vit_"):  # its position embedding is sized for the input
        kwargs["image_size"] = input[1]
    return getattr(models, builder)(**kwargs).eval()


def time_tools(
    results: Sequence[CaseResult],
    settings: Settings,
    progress: Callable[[str], None] = lambda text: None,
) -> None:
    """Fill each case's `tools` with the torch timings, or the reason a case was skipped."""
    try:
        import torch  # noqa: F401
        import fvcore  # noqa: F401
    except ImportError as err:
        for r in results:
            r.tools = {tool: f"not installed ({err.name}): {INSTALL_ORACLES}" for tool in TOOLS}
        return
    from archcalc.torchbuild import build_module

    limit = memory_limit(settings)
    warmed: set[str] = set()
    logging.getLogger("fvcore").setLevel(logging.ERROR)  # it logs every op it does not count
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in sorted(results, key=lambda r: (r.case.model, r.macs)):
            reason = plan_skip(r, settings, limit)
            if reason:
                r.tools = {tool: reason for tool in TOOLS}
                progress(f"skip {r.case.label}: {reason}")
                continue
            c = r.case
            net = reference_module(c.model, c.input) or build_module(c.model, input=c.input, init=False).eval()
            x = torch.zeros((c.batch, *c.input))
            runners = tool_runners(net, x)
            if c.model not in warmed:  # the model's smallest case comes first
                for fn in runners.values():
                    fn()
                warmed.add(c.model)
            timings, r.alongside = _interleaved(
                runners, settings.tool_repeat, settings.tool_seconds, functools.partial(_analyse, c))
            r.tools.update(timings)
            progress(f"{c.label}: " + ", ".join(f"{t} {timings[t].median_s:.3f} s" for t in runners))
            del net, x


# ---- everything, and the targets -------------------------------------------------------


def cases_for(models: Iterable[str], sizes: Iterable[int], batches: Iterable[int]) -> list[Case]:
    return [Case(m, s, b) for m in models for s in sizes for b in batches]


def family_case(model: str) -> Case:
    """A model at its default input (square for every built-in family model), batch 1."""
    return Case(model, registry.load(model).input[-1], 1)


def run_benchmark(settings: Settings, progress: Callable[[str], None] = lambda text: None) -> BenchResult:
    """Measure everything the settings ask for, in one process, and check the targets."""
    began = time.perf_counter()
    load_at_start = _load_average()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cases = cases_for(settings.models, settings.sizes, settings.batches)
    depth_cases = cases_for(settings.depth_models, (224,), (1,))
    family_cases = [family_case(m) for m in settings.family_models]
    unique = list(dict.fromkeys([*cases, *depth_cases, *family_cases]))  # resnet50/152 at 224 serve two lists
    progress(f"archcalc: {len(unique)} cases x {settings.analysis_repeat} analyses")
    measured = {r.case: r for r in time_analysis(unique, settings.analysis_repeat)}
    results, depth = [measured[c] for c in cases], [measured[c] for c in depth_cases]
    families = [measured[c] for c in family_cases]
    cold = time_cold(dict.fromkeys([*settings.models, *settings.depth_models]), max(3, settings.analysis_repeat // 5))
    if settings.cli_runs:
        progress(f"command lines: {settings.cli_runs} processes each")
        cli: dict[str, Timing | str] = time_processes(CLI_COMMANDS, settings.cli_runs)
    else:
        cli = {label: "not asked for (--cli-runs 0)" for label in CLI_COMMANDS}
    if settings.oracles:
        time_tools(list(measured.values()), settings, progress)
    else:
        for r in measured.values():
            r.tools = {tool: "not asked for (--no-oracles)" for tool in TOOLS}
    bench = BenchResult(settings, machine_info(settings.oracles, load_at_start), started, results, depth, families,
                        cold, cli)
    bench.targets = evaluate_targets(bench)
    if settings.profile and any(t.passed is False for t in bench.targets):
        bench.profiled = model_to_profile(bench)
        progress(f"a target was missed: profiling {bench.profiled}'s load + analyse")
        bench.split = split_load_and_walk(bench.profiled)
        bench.profile = profile_analysis(bench.profiled)
    bench.duration_s = time.perf_counter() - began
    return bench


def model_to_profile(bench: BenchResult) -> str:
    """The model a missed speed target is about: the one furthest below 100x fvcore at 224x224,
    else resnet152 (its 5 ms goal)."""
    ratios = {r.case.model: r.ratio("fvcore") for r in bench.cases if r.case.size == 224 and r.case.batch == 1}
    below = {model: ratio for model, ratio in ratios.items() if ratio is not None and ratio < 100}
    return min(below, key=lambda model: below[model]) if below else "resnet152"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}x"


def evaluate_targets(bench: BenchResult) -> list[Target]:
    """The issue's goals, each with what this run measured; the resnet152 speed goal comes last."""
    targets = []
    at_224 = [r for r in bench.cases if r.case.size == 224 and r.case.batch == 1]
    ratios = {r.case.model: r.ratio("fvcore") for r in at_224}
    known = [v for v in ratios.values() if v is not None]
    targets.append(Target(
        "analysis >= 100x faster than fvcore on every model at 224x224 (batch 1)",
        ", ".join(f"{m} {_x(v)}" for m, v in ratios.items()) or "not measured",
        None if not known else min(known) >= 100 and len(known) == len(ratios),
    ))
    own = {r.case.model: r.ratio("fvcore") for r in bench.families}
    measured = [v for v in own.values() if v is not None]
    targets.append(Target(
        "analysis >= 100x faster than fvcore on the other families and the largest cases, at their default input",
        ", ".join(f"{r.case.model} {r.case.size} {_x(own[r.case.model])}" for r in bench.families) or "not asked for",
        None if not measured else min(measured) >= 100,  # (a case skipped for its size reads n/a)
    ))
    big = bench.find("resnet152", 1024, 1)
    ratio = big.ratio("fvcore") if big else None
    targets.append(Target("analysis >= 1000x faster than fvcore on resnet152 at 1024x1024", _x(ratio),
                          None if ratio is None else ratio >= 1000))
    targets.append(_flatness(bench, "from 224 to 1024 (batch 1)",
                             lambda r: r.case.batch == 1 and r.case.size == min(bench.settings.sizes),
                             lambda r: bench.find(r.case.model, max(bench.settings.sizes), 1)))
    targets.append(_flatness(bench, "from batch 1 to 32 (224x224)",
                             lambda r: r.case.batch == min(bench.settings.batches) and r.case.size == 224,
                             lambda r: bench.find(r.case.model, 224, max(bench.settings.batches))))
    peak = max((r.peak_bytes for r in bench.cases), default=0)
    targets.append(Target("analysis peak memory < 50 MB at every input size (tracemalloc)",
                          f"{peak / 1e6:.2f} MB at most", peak < 50e6 if bench.cases else None))
    targets.append(_process_target(bench, 'python -c "import torch"', 0.25))
    targets.append(_process_target(bench, IMPORT_FLOOR, 1.5))
    r152 = next((r for r in [*bench.cases, *bench.depth] if r.case == Case("resnet152", 224, 1)), None)
    targets.append(Target(
        "resnet152 analysed in < 5 ms in-process (load + analyse, warm)",
        f"{r152.analysis.median_s * 1e3:.2f} ms (the walk alone {r152.run_only.median_s * 1e3:.2f} ms)" if r152
        else "not measured",
        None if r152 is None else r152.analysis.median_s < 0.005,
    ))
    return targets


def _process_target(bench: BenchResult, base: str, limit: float) -> Target:
    """`archcalc table alexnet` as a whole process within `limit` x the process `base` (paired by round)."""
    goal = f"`archcalc table alexnet` process <= {limit:g}x `{base}`"
    table, other = bench.cli.get("archcalc table alexnet"), bench.cli.get(base)
    if not isinstance(table, Timing) or not isinstance(other, Timing):
        return Target(goal, f"not measured: {table if isinstance(table, str) else other}", None)
    share = paired_ratio(other, table)
    return Target(goal, f"{table.median_s:.3f} s / {other.median_s:.3f} s = {share:.2f}x (paired by round)",
                  share <= limit)


def paired_ratio(base: Timing, other: Timing) -> float:
    """Median over rounds of other / base, the i-th run of each taken in the same round
    (a tool that stopped early on its time budget has fewer runs: its first rounds)."""
    return statistics.median(o / b for b, o in zip(base.times_s, other.times_s))


def paired_change(base: Timing, other: Timing) -> float:
    """Median over rounds of other / base - 1, pairing the runs of one round-robin round.

    Both ran within milliseconds of each other in every round, so a burst of other work
    on the machine slows both and cancels out, where a ratio of two medians would not.
    """
    pairs = [o / b for b, o in zip(base.times_s, other.times_s)]
    return statistics.median(pairs) - 1 if pairs else other.median_s / base.median_s - 1


def _flatness(bench: BenchResult, span: str, is_base, partner) -> Target:
    """Largest relative change of the analysis time between each base case and its partner."""
    changes = []
    for r in bench.cases:
        other = partner(r) if is_base(r) else None
        if other is not None and other is not r:
            changes.append((r.case.model, paired_change(r.analysis, other.analysis)))
    if not changes:
        return Target(f"analysis time flat within 10% {span}", "not measured", None)
    worst = max(changes, key=lambda item: abs(item[1]))
    shown = ", ".join(f"{m} {v:+.1%}" for m, v in changes)
    return Target(f"analysis time flat within 10% {span}", f"{shown} (worst {worst[0]}; paired by round)",
                  abs(worst[1]) <= 0.10)
