"""`lenet-vs-alexnet.md`: the two side by side, layer by layer, and the "10x / 260x" claim."""

from __future__ import annotations

from itertools import zip_longest

from archcalc import analyze
from archcalc.reports.claims import PAIRINGS, claim, ratios, section
from archcalc.reports.common import GENERATED, md_table, n, pct, times, weight_rows
from archcalc.result import Result, Row


def aligned(small: Result, big: Result) -> list[tuple[str, Row | None, Row | None]]:
    """Weight layers paired by role: convolutions from the first, linear layers from the last (the classifier)."""
    def split(result: Result) -> tuple[list[Row], list[Row]]:
        rows = weight_rows(result)
        return [r for r in rows if r.op == "conv2d"], [r for r in rows if r.op == "linear"]

    (sc, sl), (bc, bl) = split(small), split(big)
    pairs = [(f"conv {i + 1}", a, b) for i, (a, b) in enumerate(zip_longest(sc, bc))]
    linear = list(zip_longest(reversed(sl), reversed(bl)))[::-1]
    count = len(linear)
    pairs += [(f"linear, {count - i} from the end" if count - i > 1 else "linear, the output", a, b)
              for i, (a, b) in enumerate(linear)]
    return pairs


def _ratio(a: int | None, b: int | None) -> float | None:
    return b / a if a and b is not None else None


def side_by_side(small: Result, big: Result) -> str:
    rows = []
    for role, a, b in aligned(small, big):
        rows.append([
            role,
            a.name if a else "-", "x".join(map(str, a.output_shape[1:])) if a else "-", a.params if a else None,
            a.macs if a else None,
            b.name if b else "-", "x".join(map(str, b.output_shape[1:])) if b else "-", b.params if b else None,
            b.macs if b else None,
            _ratio(a.params if a else None, b.params if b else None), _ratio(a.macs if a else None, b.macs if b else None),
        ])
    ta, tb = small.total, big.total
    total = ["total", "", "", ta.params, ta.macs, "", "", tb.params, tb.macs, tb.params / ta.params, tb.macs / ta.macs]
    return md_table(
        ["role", f"{small.model}", "output", "params", "MACs", f"{big.model}", "output", "params", "MACs",
         "params ratio", "MACs ratio"],
        rows, total=total,
    )


def where(result: Result) -> str:
    rows = weight_rows(result)
    fc_params = sum(r.params for r in rows if r.op == "linear")
    conv_macs = sum(r.macs for r in rows if r.op == "conv2d")
    return (f"`{result.model}`: {pct(fc_params, result.total.params)} of its parameters are in linear layers, "
            f"{pct(conv_macs, result.total.macs)} of its MACs in convolutions")


def why(small: Result, big: Result) -> str:
    """The single layers that alone outweigh the whole smaller network."""
    rows = weight_rows(big)
    heaviest = max(rows, key=lambda r: r.params)
    costliest = max(rows, key=lambda r: r.macs)
    return (
        f"`{big.model}`'s {heaviest.name} alone holds {n(heaviest.params)} parameters, "
        f"{times(heaviest.params / small.total.params)} the whole of `{small.model}` ({n(small.total.params)}); its "
        f"{costliest.name} alone costs {n(costliest.macs)} MACs, {times(costliest.macs / small.total.macs)} the whole "
        f"of `{small.model}` ({n(small.total.macs)}). The input grows from "
        f"{'x'.join(map(str, small.input_shape[1:]))} to {'x'.join(map(str, big.input_shape[1:]))} and the "
        f"channels from {max(r.output_shape[1] for r in weight_rows(small) if r.op == 'conv2d')} to "
        f"{max(r.output_shape[1] for r in rows if r.op == 'conv2d')} at the widest convolution."
    )


def _input(name: str) -> str:
    return "x".join(map(str, analyze(name).input_shape[1:]))


def render() -> str:
    the_claim = claim("ten-x")
    found = the_claim.find()
    ratio_rows = []
    for label, small_name, big_name in PAIRINGS:
        r = ratios(small_name, big_name)
        ratio_rows.append([label, f"`{small_name}`", f"`{big_name}`", r["params"], r["MACs"], r["FLOPs"], r["fvcore"]])
    ratio_rows.append(["the claim (000)", "", "", float(the_claim.claimed["params"]),
                       float(the_claim.claimed["compute"]), None, None])
    lines = [
        GENERATED,
        "# LeNet vs AlexNet",
        "",
        "AlexNet is often introduced as a bigger, deeper LeNet. How much bigger, layer by layer, for two pairings: "
        + "; ".join(f"{label}, `{a}` on {_input(a)} and `{b}` on {_input(b)}" for label, a, b in PAIRINGS)
        + ". Weight layers are paired by role: convolutions from the first, linear layers from the output backwards. "
        "`lenet5` is LeCun et al.'s LeNet-5 with the deviations its spec lists (full C3 connections, parameter-free "
        "subsampling, a linear output instead of RBF units).",
        "",
        "## The claim, and the ratios under each pairing and convention",
        "",
        md_table(["pairing", "LeNet", "AlexNet", "params", "MACs", "FLOPs (2 x MACs)", "fvcore flops"], ratio_rows),
        "",
        "A counting convention that scales both networks alike (FLOPs = 2 x MACs; fvcore's one flop per "
        "multiply-accumulate, with no batch norm in either network) cancels in the ratio, so every compute column "
        "agrees. Only the pairing moves the ratios, and no pairing comes near 10x or 260x.",
        "",
        section(the_claim, found, level="###"),
        "",
    ]
    for label, small_name, big_name in PAIRINGS:
        small, big = analyze(small_name), analyze(big_name)
        lines += [
            f"## {label[0].upper()}{label[1:]}: `{small_name}` vs `{big_name}`",
            "",
            side_by_side(small, big),
            "",
            f"- {where(small)}.",
            f"- {where(big)}.",
            f"- Why the ratios are so large: {why(small, big)}",
            "",
        ]
    return "\n".join(lines)
