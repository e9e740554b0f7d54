"""`families.md`: every family's variants side by side (VGG, ResNet and GoogLeNet in detail), and MACs
against input resolution."""

from __future__ import annotations

from archcalc import analyze, list_models
from archcalc.registry import families, family_description
from archcalc.errors import SpecError
from archcalc.reports import charts as drawing
from archcalc.reports.model_page import link
from archcalc.reports.common import GENERATED, md_table, n, pct
from archcalc.result import Result

RESOLUTION_MODELS = ("alexnet-torchvision", "vgg16", "googlenet-torchvision", "resnet18", "resnet50", "resnet152",
                     "mobilenet-v3-large", "efficientnet-b0", "convnext-tiny", "vit-b-16", "swin-t")
DETAILED = ("vgg", "resnet", "googlenet")  # families with sections of their own below
SIDES = (64, 128, 224, 320, 448, 512, 768, 1024)
CHART = "img/macs-vs-resolution.png"


def family(name: str) -> list[Result]:
    """Every built-in of a family (the file it is written in), ImageNet-sized first, then shallowest first."""
    results = [analyze(m) for m in list_models(name)]
    return sorted(results, key=lambda r: (r.input_shape[-1] < 100, r.total.depth, r.total.macs, r.model))


def totals_table(results: list[Result]) -> str:
    return md_table(
        ["model", "input", "params", "MACs", "depth", "receptive field (px)", "description"],
        [[link(r.model), "x".join(map(str, r.input_shape[1:])), r.total.params, r.total.macs,
          r.total.depth, r.total.receptive_field[0], r.description] for r in results],
    )


def batchnorm_table(results: list[Result]) -> str:
    """Each VGG beside its batch-norm twin: what batch norm adds."""
    by_name = {r.model: r for r in results}
    rows = []
    for r in results:
        twin = by_name.get(f"{r.model}-bn")
        if twin is None:
            continue
        bn = sum(x.params for x in twin.rows if x.op == "batchnorm2d")
        rows.append([r.model, twin.model, twin.total.params - r.total.params, bn, twin.total.macs - r.total.macs,
                     twin.total.fvcore_flops - r.total.fvcore_flops])
    return md_table(["model", "with batch norm", "extra params", "of which batch norm", "extra MACs",
                     "extra fvcore flops"], rows)


def stage_table(a: Result, b: Result) -> str:
    """MACs per top-level module of two variants of one network, matched by module name."""
    fa = {x.name: x for x in a.fold(1)}
    fb = {x.name: x for x in b.fold(1)}
    names = list(fa) + [name for name in fb if name not in fa]
    rows = []
    for name in names:
        x, y = fa.get(name), fb.get(name)
        if (x and x.macs) or (y and y.macs):
            shown = x if x is not None else y
            assert shown is not None
            rows.append([name, "x".join(map(str, shown.output_shape[1:])), x.macs if x else None,
                         y.macs if y else None, (y.macs if y else 0) - (x.macs if x else 0)])
    return md_table(["module", "output", f"{a.model} MACs", f"{b.model} MACs", "difference"], rows,
                    total=["total", "", a.total.macs, b.total.macs, b.total.macs - a.total.macs])


def sweep() -> list[tuple[str, list[int], list[int]]]:
    """MACs of each resolution model at each side it accepts."""
    series = []
    for name in RESOLUTION_MODELS:
        if name not in list_models():
            continue
        sides, macs = [], []
        for side in SIDES:
            try:
                result = analyze(name, input=(3, side, side))
            except SpecError:
                continue  # too small for this network
            sides.append(side)
            macs.append(result.total.macs)
        series.append((name, sides, macs))
    return series


def sweep_table(series: list[tuple[str, list[int], list[int]]]) -> str:
    rows = []
    for name, sides, macs in series:
        at = dict(zip(sides, macs))
        rows.append([f"`{name}`", *(at.get(s) for s in SIDES)])
    return md_table(["model", *(f"{s}x{s}" for s in SIDES)], rows)


def _attention_growth(series: list[tuple[str, list[int], list[int]]]) -> list[str]:
    """ViT's global attention grows faster than H x W (its token count squared), Swin's windows do not."""
    at = {name: dict(zip(sides, macs)) for name, sides, macs in series}
    if not {"vit-b-16", "swin-t"} <= set(at) or not {224, 1024} <= set(at["vit-b-16"]) & set(at["swin-t"]):
        return []
    area = (1024 / 224) ** 2
    return [
        f"From 224 to 1024 the area grows {area:.1f}x; `vit-b-16`'s MACs grow "
        f"{at['vit-b-16'][1024] / at['vit-b-16'][224]:.1f}x, since its attention matmuls grow with the square of "
        f"the token count, while `swin-t`'s grow {at['swin-t'][1024] / at['swin-t'][224]:.1f}x: its attention stays "
        "within fixed windows (padded to whole windows, which is why it steps at small sizes).",
    ]


def charts() -> dict[str, bytes]:
    """The resolution chart (build.py collects every report module's `charts()`)."""
    return {CHART: drawing.macs_vs_resolution(sweep())}


def _pair(first: str, second: str) -> tuple[Result, Result] | None:
    names = list_models()
    return (analyze(first), analyze(second)) if first in names and second in names else None


def render() -> str:
    vgg, resnet, googlenet = family("vgg"), family("resnet"), family("googlenet")
    lines = [
        GENERATED,
        "# Families side by side",
        "",
        "Every built-in family at its default input, batch 1: VGG, ResNet and GoogLeNet in detail, then every "
        "other family. MACs count conv and linear multiply-accumulates and attention's matmuls (bias adds not "
        "counted); depth counts conv, linear and attention layers on the longest path; the receptive field is "
        "per axis, through the widest path (the first axis is shown).",
        "",
        "## VGG (with and without batch norm)",
        "",
        totals_table(vgg),
        "",
        "Batch norm adds parameters (a scale and a shift per channel) but no MACs under this convention; fvcore "
        "counts it as flops:",
        "",
        batchnorm_table(vgg),
        "",
        "## ResNet",
        "",
        totals_table(resnet),
        "",
    ]
    pair = _pair("resnet50", "resnet50-paper")
    if pair:
        a, b = pair
        lines += [
            f"### Where the stride sits: `{a.model}` vs `{b.model}`",
            "",
            f"Same parameters ({n(a.total.params)} and {n(b.total.params)}); `{b.model}` strides in the first 1x1 "
            f"of each downsampling block, so its 3x3 convolutions already run at the reduced size: "
            f"{n(b.total.macs)} MACs against {n(a.total.macs)} ({pct(b.total.macs - a.total.macs, a.total.macs)}). "
            f"Their receptive fields differ too: {b.total.receptive_field[0]} px against "
            f"{a.total.receptive_field[0]} px.",
            "",
            stage_table(a, b),
            "",
        ]
    lines += ["## GoogLeNet: the paper vs torchvision", "", totals_table(googlenet), ""]
    pair = _pair("googlenet", "googlenet-torchvision")
    if pair:
        a, b = pair
        lines += [stage_table(a, b), ""]
    for other in families():
        if other not in DETAILED:
            lines += [f"## {other}: {family_description(other)}", "", totals_table(family(other)), ""]
    series = sweep()
    lines += [
        "## MACs against input resolution",
        "",
        "Convolution MACs grow with H x W; layers after an adaptive pool (the classifiers of `alexnet-torchvision` "
        "and `vgg16`, every network's final linear layer) do not, which bends the curves at small sizes.",
        *_attention_growth(series),
        "",
        f"![MACs against input resolution]({CHART})",
        "",
        sweep_table(series),
        "",
    ]
    return "\n".join(lines)

