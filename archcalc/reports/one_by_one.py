"""`one-by-one-convolutions.md`: what Inception's 1x1 reductions save, in one module and in all of GoogLeNet."""

from __future__ import annotations

from collections import OrderedDict

from archcalc import analyze, load
from archcalc.reports.claims import claim, section
from archcalc.reports.common import GENERATED, md_table, n, pct, times, u
from archcalc.reports.transforms import without_reductions
from archcalc.result import Result


def branches(result: Result) -> "OrderedDict[str, list]":
    """The rows of each branch of the model's first concat, keyed by branch index."""
    concat = next(g for g in result.groups if g.kind == "concat")
    depth = len(concat.path)
    out: OrderedDict[str, list] = OrderedDict()
    for r in result.rows[concat.start:concat.stop]:
        if len(r.path) > depth:
            out.setdefault(r.path[depth], []).append(r)
    return out


def branch_table(result: Result) -> str:
    rows = []
    for key, members in branches(result).items():
        macs = sum(r.macs for r in members)
        rows.append([key, " -> ".join(r.description for r in members), members[-1].output_shape[1],
                     sum(r.params for r in members), macs, pct(macs, result.total.macs)])
    join = result.rows[-1]
    return md_table(["branch", "layers", "output depth", "params", "MACs", "share of MACs"], rows,
                    total=["total", join.description, join.output_shape[1], result.total.params, result.total.macs, ""])


def modules(result: Result) -> "OrderedDict[str, tuple[int, int, int]]":
    """(params, MACs, output depth) of each top-level module whose name starts with 'inception'."""
    out: OrderedDict[str, tuple[int, int, int]] = OrderedDict()
    for r in result.rows:
        name = r.path[0]
        if name.startswith("inception"):
            p, m, _ = out.get(name, (0, 0, 0))
            out[name] = (p + r.params, m + r.macs, r.output_shape[1])
    return out


def _reduction_depth(result: Result) -> str:
    depths = sorted({r.output_shape[1] for rows in branches(result).values() for r in rows[:-1] if r.op == "conv2d"}
                    | {rows[-1].output_shape[1] for rows in branches(result).values() if rows[0].op == "maxpool2d"})
    return "/".join(map(str, depths))


def render() -> str:
    naive, neck = analyze("inception-naive"), analyze("inception-bottleneck")
    googlenet = load("googlenet")
    variants = [googlenet, without_reductions(googlenet), without_reductions(googlenet, projections=True)]
    results = [analyze(v) for v in variants]
    per_module = [modules(r) for r in results]
    base = results[0].total
    rebuilt = analyze(without_reductions(load("inception-bottleneck"), projections=True))
    lines = [
        GENERATED,
        "# 1x1 convolutions: what Inception's reductions save",
        "",
        "A 1x1 convolution mixes channels at each pixel. Placed before a 3x3 or 5x5 convolution it shrinks the depth "
        "that the larger kernel has to read; after a pool it shrinks the depth the pool passes on. MACs are "
        "multiply-accumulates of convolutions (bias adds not counted), batch 1.",
        "",
        f"## CS231n's module on a {'x'.join(map(str, naive.input_shape[1:]))} input (CxHxW)",
        "",
        f"Naive (`inception-naive`): {n(naive.total.macs)} MACs, {n(naive.total.params)} params, output depth "
        f"{naive.rows[-1].output_shape[1]}.",
        "",
        branch_table(naive),
        "",
        f"With {_reduction_depth(neck)}-channel 1x1 reductions (`inception-bottleneck`): {n(neck.total.macs)} MACs, "
        f"{n(neck.total.params)} params, output depth {neck.rows[-1].output_shape[1]}.",
        "",
        branch_table(neck),
        "",
        f"The reductions cut the module's MACs by {times(naive.total.macs / neck.total.macs)} "
        f"({u(naive.total.macs)} -> {u(neck.total.macs)}) and its parameters by "
        f"{times(naive.total.params / neck.total.params)}, and the output depth from "
        f"{naive.rows[-1].output_shape[1]} to {neck.rows[-1].output_shape[1]}. Check of the transform used below: "
        f"dropping every 1x1 reduction and projection from `inception-bottleneck` in code gives "
        f"{n(rebuilt.total.macs)} MACs, {'exactly' if rebuilt.total.macs == naive.total.macs else 'not'} "
        "`inception-naive`'s.",
        "",
        section(claim("inception-ops"), level="###"),
        "",
        "## Across the whole of GoogLeNet",
        "",
        "`googlenet` (Szegedy et al. 2014, Table 1) against the same network rebuilt in code without its 1x1 "
        "reductions: (a) the 3x3 and 5x5 convolutions read the module's full input, the pool projection kept; (b) "
        "the naive module of the paper's figure 2a, with no pool projection either, so the pooled input passes "
        "through whole and the depth compounds from module to module.",
        "",
        md_table(
            ["network", "params", "MACs", "MACs vs googlenet", "final Inception depth"],
            [[f"`{v.name}`", r.total.params, r.total.macs, r.total.macs / base.macs, list(m.values())[-1][2]]
             for v, r, m in zip(variants, results, per_module)],
        ),
        "",
        f"The reductions save {n(results[1].total.macs - base.macs)} MACs "
        f"({pct(results[1].total.macs - base.macs, results[1].total.macs)} of the network without them) and "
        f"{n(results[1].total.params - base.params)} parameters; against the naive modules, "
        f"{pct(results[2].total.macs - base.macs, results[2].total.macs)} of the MACs.",
        "",
        "Per Inception module (MACs; output depth in brackets):",
        "",
        md_table(
            ["module", "googlenet", "(a) no reductions", "(b) naive", "(a) / googlenet", "(b) / googlenet"],
            [[name, f"{n(per_module[0][name][1])} ({per_module[0][name][2]})",
              f"{n(per_module[1][name][1])} ({per_module[1][name][2]})",
              f"{n(per_module[2][name][1])} ({per_module[2][name][2]})",
              per_module[1][name][1] / per_module[0][name][1], per_module[2][name][1] / per_module[0][name][1]]
             for name in per_module[0]],
        ),
        "",
    ]
    return "\n".join(lines)
