"""Every report, generated in memory: report name -> bytes. Nothing is written here."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

from archcalc import analyze, list_models
from archcalc.bench_report import PLOT_KINDS, plot_name
from archcalc.reports import accuracy, charts, claims, model_page, index
from archcalc.reports import families, lenet_alexnet, one_by_one, stacked, training_memory

CROSSCHECK = "crosscheck.md"
PERFORMANCE = "performance.md"
# written by `archcalc report --crosscheck` and `archcalc bench` (they need torch), never stale or orphaned here
IMPORT = "import-torchvision.md"  # tests/check_import_torchvision.py (needs torch and torchvision)
IDENTITY = "torchvision-identity.md"  # `archcalc report --torchvision` (needs torchvision)
TRAINING_CHECK = "training-check.md"  # `python -m archcalc.training_check --all --batch 1 8` (needs torch)
WRITTEN_ELSEWHERE = (CROSSCHECK, PERFORMANCE, IMPORT, IDENTITY, TRAINING_CHECK, *(plot_name(Path(PERFORMANCE).stem, kind) for kind in PLOT_KINDS))

# (file, what it shows, its module: `render() -> str`, and `charts() -> {path: png}` where it draws any);
# the per-model pages come after these
REPORTS: tuple[tuple[str, str, ModuleType], ...] = (
    ("lenet-vs-alexnet.md", "LeNet vs AlexNet layer by layer, and the course notes' \"10x parameters, 260x compute\"",
     lenet_alexnet),
    ("one-by-one-convolutions.md", "Inception's 1x1 reductions: CS231n's module, and GoogLeNet with and without them",
     one_by_one),
    ("stacked-3x3.md", "One 7x7 (5x5) convolution vs stacked 3x3: weights, receptive field, VGG vs AlexNet",
     stacked),
    ("families.md", "Every family's variants side by side (VGG, ResNet and GoogLeNet in detail); MACs against input "
     "resolution",
     families),
    ("claims.md", "Every numeric claim of the course notes this project audits, recomputed, with a verdict", claims),
    ("accuracy.md", "ImageNet top-1 against MACs and against parameters for every torchvision built-in, Pareto fronts "
     "marked", accuracy),
    ("training-memory.md", "Training memory against batch size (AdamW, bf16-mixed) with 16/24/40/80 GB budgets, and "
     "where the memory goes", training_memory),
)
CROSSCHECK_LINE = (CROSSCHECK, "Every built-in run in torch and compared layer by layer with fvcore and FlopCounterMode "
                   "(`archcalc report --crosscheck`; needs torch)")
IDENTITY_LINE = (IDENTITY, "Every built-in that names a torchvision builder, with torchvision's weights, gives "
                 "torchvision's output (`archcalc report --torchvision`; needs torchvision)")
IMPORT_LINE = (IMPORT, "torchvision's models imported with `archcalc import`: the built-ins' totals and "
               "torchvision's output (`python tests/check_import_torchvision.py`)")
TRAINING_CHECK_LINE = (TRAINING_CHECK, "One training step of every built-in in torch against `archcalc train`: backward "
                       "MACs per layer, saved activations, gradients and optimizer state "
                       "(`python -m archcalc.training_check --all --batch 1 8`; needs torch)")
PERFORMANCE_LINE = (PERFORMANCE, "archcalc timed against fvcore, FlopCounterMode and a forward pass "
                    "(`archcalc bench`; needs torch)")


def steps(models: Sequence[str] | None = None) -> int:
    """How many times `generate` reports progress: once per report and once per model page."""
    return len(REPORTS) + len(list(models) if models is not None else list_models())


def generate(models: Sequence[str] | None = None, progress: Callable[[str], None] | None = None) -> dict[str, bytes]:
    """Every report except the cross-check: markdown as UTF-8, charts as PNG bytes (`progress`: told each
    report's name once it is done)."""
    done = progress or (lambda name: None)
    names = list(models) if models is not None else list_models()
    results = [analyze(name) for name in names]
    files: dict[str, bytes] = {}
    files["README.md"] = index.render(results, [(f, what) for f, what, _ in REPORTS] + [CROSSCHECK_LINE, IDENTITY_LINE, IMPORT_LINE, TRAINING_CHECK_LINE, PERFORMANCE_LINE]).encode()
    for name, _, module in REPORTS:
        _add(files, name, module.render().encode())
        for chart, data in (module.charts() if hasattr(module, "charts") else {}).items():
            _add(files, chart, data)
        done(name)
    for result in results:
        _add(files, model_page.page_path(result.model), model_page.render(result).encode())
        _add(files, model_page.chart_path(result.model), charts.layer_costs(result))
        done(result.model)
    return files


def _add(files: dict[str, bytes], name: str, data: bytes) -> None:
    """Add a file, refusing to overwrite one already generated (a model named like a report)."""
    if name in files:
        raise ValueError(f"two reports would be written to {name}")
    files[name] = data


def identity_report(proofs: Sequence[Mapping[str, Any]], versions: Mapping[str, str], seconds: float) -> dict[str, bytes]:
    """`torchvision-identity.md` from `Identity.to_dict()`s (the caller ran the proofs)."""
    from archcalc.reports import identity_page

    return {IDENTITY: identity_page.render(proofs, versions, seconds).encode()}


def crosscheck_report(checks: Sequence[Mapping[str, Any]]) -> dict[str, bytes]:
    """`crosscheck.md` from `CheckResult.to_dict()`s (the caller ran the check; this module never imports torch)."""
    from archcalc.reports import crosscheck_page

    return {CROSSCHECK: crosscheck_page.render(checks).encode()}
