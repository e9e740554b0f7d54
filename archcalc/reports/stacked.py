"""`stacked-3x3.md`: one large kernel vs stacked 3x3 kernels, and VGG vs AlexNet as the real-world case."""

from __future__ import annotations

from archcalc import analyze, load
from archcalc.reports.claims import claim, section
from archcalc.reports.common import GENERATED, leaves, md_table
from archcalc.spec import Conv2d, pair

PAIRS = (("conv7x7", "stacked-3x3", 7), ("conv5x5", "stacked-3x3-2", 5))
CHANNELS = (32, 64, 128, 256, 512)
SIZES = (112, 56, 28, 14)
REAL = ("alexnet-paper", "alexnet-torchvision", "vgg11", "vgg16", "vgg19")


def weights_table(big: str, stack: str) -> str:
    rows = []
    for c in CHANNELS:
        a, b = analyze(big, params={"C": c}).total, analyze(stack, params={"C": c}).total
        rows.append([c, a.params, f"{a.params / c**2:g}C²", b.params, f"{b.params / c**2:g}C²", b.params / a.params])
    return md_table(["C", f"{big} params", "as C²", f"{stack} params", "as C² ", "ratio"], rows)


def macs_table(big: str, stack: str, c: int = 256) -> str:
    rows = []
    for s in SIZES:
        a, b = analyze(big, input=(c, s, s)).total, analyze(stack, input=(c, s, s)).total
        rows.append([f"{c}x{s}x{s}", a.macs, b.macs, b.macs / a.macs])
    return md_table(["input", f"{big} MACs", f"{stack} MACs", "ratio"], rows)


def field_table(big: str, stack: str) -> str:
    rows = []
    for name in (big, stack):
        result = analyze(name)
        for r in result.rows:
            rows.append([f"`{name}`", r.name, r.description, r.receptive_field[0], "yes" if r.op == "relu" else ""])
    return md_table(["model", "layer", "op", "receptive field (px)", "non-linearity"], rows)


def nonlinearities(name: str) -> int:
    return sum(r.op == "relu" for r in analyze(name).rows)


def largest_kernel(name: str) -> str:
    sizes = [pair(x.kernel_size) for x in leaves(load(name)) if isinstance(x, Conv2d)]
    kh, kw = max(sizes)
    return f"{kh}x{kw}"


def real_table() -> str:
    rows = []
    for name in REAL:
        result = analyze(name)
        t = result.total
        convs = [r for r in result.rows if r.op == "conv2d"]
        rows.append([f"`{name}`", "x".join(map(str, result.input_shape[1:])), len(convs), largest_kernel(name),
                     t.params, t.macs, t.depth, t.receptive_field[0]])
    return md_table(["model", "input", "convolutions", "largest kernel", "params", "MACs", "depth",
                     "receptive field (px)"], rows)


def vgg_growth(name: str = "vgg16") -> str:
    result = analyze(name)
    convs = [r for r in result.rows if r.op in ("conv2d", "maxpool2d")]
    return " -> ".join(f"{r.receptive_field[0]}{'p' if r.op == 'maxpool2d' else ''}" for r in convs)


def _first_convs(name: str) -> str:
    convs = [r.description for r in analyze(name).rows if r.op == "conv2d"]
    return f"`{convs[0]}` then `{convs[1]}`"


def _first_map(name: str) -> str:
    first = next(r for r in analyze(name).rows if r.op == "conv2d")
    return "x".join(map(str, first.output_shape[2:]))


def render() -> str:
    lines = [
        GENERATED,
        "# Stacked 3x3 convolutions vs one large kernel",
        "",
        "VGG's argument (Simonyan & Zisserman 2015, section 2.3): a stack of stride-1 3x3 convolutions sees the same "
        "window as one large kernel, with fewer weights and a non-linearity after every layer. The lessons' specs "
        "take C channels in and out (a spec parameter), stride 1, \"same\" padding and no bias.",
        "",
    ]
    for big, stack, k in PAIRS:
        layers = analyze(stack).total.depth
        lines += [
            f"## One {k}x{k} vs {layers} stacked 3x3",
            "",
            f"Weights for a few channel counts C (`--set C=...`):",
            "",
            weights_table(big, stack),
            "",
            "MACs grow with the input's H x W at the same ratio (C = 256):",
            "",
            macs_table(big, stack),
            "",
            f"The receptive field, layer by layer: the stack reaches the {k}x{k} window of the single kernel, with "
            f"{nonlinearities(stack)} non-linearities instead of {nonlinearities(big)} "
            f"({nonlinearities(stack) - nonlinearities(big)} more).",
            "",
            field_table(big, stack),
            "",
        ]
    lines += [
        section(claim("stacked-7"), level="###"),
        "",
        section(claim("stacked-5"), level="###"),
        "",
        "## The real-world case: VGG vs AlexNet",
        "",
        f"AlexNet opens with {_first_convs('alexnet-paper')}; VGG uses only 3x3 convolutions. VGG is deeper and sees "
        f"a comparable window, but its 3x3 convolutions run on far larger feature maps ({_first_map('vgg16')} "
        f"out of its first convolution, against {_first_map('alexnet-paper')} for `alexnet-paper`), so it costs "
        "far more MACs.",
        "",
        real_table(),
        "",
        f"`vgg16`'s receptive field after each convolution and pool (p): {vgg_growth()}.",
        "",
    ]
    return "\n".join(lines)
