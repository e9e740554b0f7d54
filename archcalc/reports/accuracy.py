"""ImageNet top-1 accuracy against MACs and against parameters, for every built-in that carries
torchvision's published accuracy (`published: top1`), with each chart's Pareto front marked.

The accuracy is torchvision's, for the weights named in the spec; the MACs and parameters are
the calculator's at the model's default input (equal to torchvision's published figures, which
tests/test_published.py checks)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

from archcalc import analyze, list_models, load
from archcalc.reports import charts as drawing
from archcalc.reports.common import GENERATED, md_table
from archcalc.reports.model_page import link

CHART = "img/accuracy.png"


class Point(NamedTuple):
    model: str
    family: str
    weights: str
    input: str
    macs: int
    params: int
    top1: float


def points(names: Sequence[str] | None = None) -> list[Point]:
    """Every built-in with a published top-1, cheapest first."""
    found = []
    for name in names if names is not None else list_models():
        model = load(name)
        if "top1" not in model.published:
            continue
        total = analyze(model).total
        family = Path(model.where.file).stem if model.where and model.where.file else name
        found.append(Point(name, family, str(model.published.get("weights", "")), "x".join(map(str, model.input)),
                           total.macs, total.params, float(model.published["top1"])))
    return sorted(found, key=lambda p: (p.macs, p.model))


def pareto(found: Sequence[Point], cost: str) -> list[Point]:
    """The models no other beats on accuracy at the same or lower cost, cheapest first."""
    front: list[Point] = []
    for point in sorted(found, key=lambda p: (getattr(p, cost), -p.top1)):
        if not front or point.top1 > front[-1].top1:
            front.append(point)
    return front


def render() -> str:
    found = points()
    on_macs, on_params = {p.model for p in pareto(found, "macs")}, {p.model for p in pareto(found, "params")}
    rows = [[link(p.model), p.family, p.input, p.macs, p.params, f"{p.top1:.3f}", p.weights,
             ("MACs" if p.model in on_macs else "") + (", " if p.model in on_macs and p.model in on_params else "")
             + ("params" if p.model in on_params else "")] for p in found]
    return "\n".join([
        GENERATED,
        "# Accuracy against cost",
        "",
        f"ImageNet-1K top-1 accuracy of the {len(found)} built-ins that carry torchvision's published accuracy, "
        "against their MACs and their parameters at their default input (torchvision's evaluation crop). "
        "The accuracy is torchvision's `weights.meta[\"_metrics\"]` for the weights named; the costs are "
        "computed here and equal torchvision's published `num_params` and GFLOPS. A model is on the Pareto "
        "front of a chart when no other built-in is at least as accurate for the same or less.",
        "",
        f"![Top-1 accuracy against MACs and against parameters]({CHART})",
        "",
        md_table(["model", "family", "input", "MACs", "params", "top-1 %", "weights", "Pareto front"], rows),
        "",
    ])


def charts() -> dict[str, bytes]:
    found = points()
    return {CHART: drawing.accuracy_vs_cost(found, {"macs": pareto(found, "macs"), "params": pareto(found, "params")})}
