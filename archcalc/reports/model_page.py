"""`<model>.md`: one built-in, what it is, its shape chain, where its cost sits, every layer."""

from __future__ import annotations

from collections import defaultdict

from archcalc.reports.common import GENERATED, chain, md_table, n, pct, u
from archcalc.result import CONVENTIONS, Result
from archcalc.tables import header_line, layer_table
from archcalc.formatting import to_markdown


def page_path(model: str) -> str:
    """Where a model's page lives under reports/ (a folder of its own: `stacked-3x3` is also a report's name)."""
    return f"models/{model}.md"


def chart_path(model: str) -> str:
    return f"models/img/{model}.png"


def link(model: str) -> str:
    """A markdown link to a model's page from a report at the top of reports/."""
    return f"[{model}]({page_path(model)})"


def cost_by_op(result: Result) -> list[tuple[str, int, int, int]]:
    """(op, layers, params, MACs) for every op that has params or MACs, costliest first."""
    count: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in result.rows:
        if r.params or r.macs:
            entry = count[r.op]
            entry[0] += 1
            entry[1] += r.params
            entry[2] += r.macs
    return sorted(((op, v[0], v[1], v[2]) for op, v in count.items()), key=lambda t: (-t[3], -t[2], t[0]))


def cost_summary(result: Result) -> str:
    """One sentence: which op holds most of the parameters, which most of the MACs."""
    ops = cost_by_op(result)
    total = result.total
    by_params = max(ops, key=lambda t: t[2])
    by_macs = max(ops, key=lambda t: t[3])
    return (
        f"{pct(by_params[2], total.params)} of the parameters sit in the {by_params[0]} layers "
        f"({n(by_params[2])} of {n(total.params)}), and {pct(by_macs[3], total.macs)} of the MACs in the "
        f"{by_macs[0]} layers ({n(by_macs[3])} of {n(total.macs)})."
    )


def _layers(result: Result) -> str:
    table = layer_table(result, result.rows)
    table.title = ""  # the page says it once, above
    return to_markdown(table).rstrip("\n")


def render(result: Result) -> str:
    """The page's markdown, at `page_path(model)` (its chart, drawn by `charts.layer_costs`, at `chart_path`)."""
    t = result.total
    lines = [
        GENERATED,
        f"[All reports](../README.md)",
        "",
        f"# {result.model}",
        "",
        result.description or "",
        "",
        f"Source: {result.source}" if result.source else "Source: not given in the spec.",
        "",
        f"{header_line(result)}.",
        "",
        "## Shape chain",
        "",
        f"`{chain(result)}`",
        "",
        "## Totals",
        "",
        md_table(
            ["params", "trainable", "MACs", "FLOPs", "activations", "weights (bytes)", "activations (bytes)", "depth",
             "receptive field (px)"],
            [[t.params, t.trainable_params, t.macs, t.flops, t.activations, t.params_bytes, t.activation_bytes,
              t.depth, f"{t.receptive_field[0]}x{t.receptive_field[1]}"]],
        ),
        "",
        f"About {u(t.params)} parameters and {u(t.macs)} MACs. Depth = {CONVENTIONS['depth']}.",
        "",
        "## Where the cost sits",
        "",
        md_table(
            ["op", "layers", "params", "share of params", "MACs", "share of MACs"],
            [[op, k, p, pct(p, t.params), m, pct(m, t.macs)] for op, k, p, m in cost_by_op(result)],
        ),
        "",
        cost_summary(result),
        "",
        f"![params and MACs per layer of {result.model}](img/{result.model}.png)",
        "",
        "## Layers",
        "",
        _layers(result),
        "",
    ]
    return "\n".join(lines)
