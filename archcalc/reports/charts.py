"""Deterministic PNG charts (matplotlib, Agg, no pyplot): the same input gives the same bytes.

Fixed size and dpi, DejaVu Sans (shipped with matplotlib), and no `Software` metadata, so
`archcalc report --check` can compare charts byte for byte on one matplotlib version.
matplotlib is imported inside the functions: the calculator never loads it.
"""

from __future__ import annotations

import hashlib
import io
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from archcalc.formatting import number
from archcalc.result import Result, Row

WIDTH_IN = 10.0
DPI = 100
COLOURS = {"conv2d": "#4C72B0", "linear": "#DD8452"}
OTHER = "#8C8C8C"
VERSION_KEY = "Drawn with"  # PNG text key: charts are byte-stable for one matplotlib version, not across versions
SOURCE_KEY = "Drawn from"  # PNG text key: a digest of the data drawn, the same on every version
MAX_BARS = 60
MIN_PARAMS_SHARE = 0.001
CHAR_IN = 0.068  # width of one 9 pt DejaVu Sans character, roughly, in inches
RC: dict[Any, Any] = {  # matplotlib types its keys as literals
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "archcalc",
    "path.simplify": False,
}


class ChartsUnavailable(RuntimeError):
    """matplotlib is not installed."""


@contextmanager
def _figure(height_in: float) -> Iterator:
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ChartsUnavailable("the report's charts need matplotlib: pip install 'archcalc[report]'") from err
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI)
        FigureCanvasAgg(fig)
        yield fig


def _png(fig, drawn_from: object = None) -> bytes:
    """The figure as PNG bytes, with the matplotlib version and a digest of the data drawn (`drawn_from`:
    its repr) as text chunks, so that a chart drawn with another version can still be told apart."""
    import matplotlib

    buf = io.BytesIO()
    # no "Software" (it would carry the version anyway); the version under our own key, see `drawn_with`
    metadata = {"Software": None, VERSION_KEY: f"matplotlib {matplotlib.__version__}"}
    if drawn_from is not None:
        metadata[SOURCE_KEY] = "sha256 " + hashlib.sha256(repr(drawn_from).encode()).hexdigest()
    fig.savefig(buf, format="png", dpi=DPI, metadata=metadata)
    return buf.getvalue()


def drawn_with(png: bytes) -> str | None:
    """The `matplotlib X.Y.Z` a chart of ours was drawn with (its tEXt chunk), or None."""
    return _text(png, VERSION_KEY)


def drawn_from(png: bytes) -> str | None:
    """The digest of the data a chart of ours was drawn from (its tEXt chunk), or None."""
    return _text(png, SOURCE_KEY)


def _text(png: bytes, key: str) -> str | None:
    pos = 8  # after the signature: chunks of length, type, data, CRC
    while pos + 8 <= len(png):
        length = int.from_bytes(png[pos:pos + 4], "big")
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and data.startswith(key.encode() + b"\0"):
            return data.split(b"\0", 1)[1].decode("latin-1")
        if kind == b"IDAT":
            return None  # text chunks written by matplotlib come before the image data
        pos += 12 + length
    return None


def current_version() -> str | None:
    """`matplotlib X.Y.Z` if matplotlib is installed."""
    try:
        from importlib.metadata import version

        return f"matplotlib {version('matplotlib')}"
    except Exception:  # noqa: BLE001 (not installed, or no metadata)
        return None


def _units(value: float, _pos=None) -> str:
    return number(int(round(value)), units=True)


def chart_rows(result: Result, limit: int = MAX_BARS) -> list[Row]:
    """The layers with MACs or a visible share of params, folded to the finest module depth that gives at most `limit` bars."""
    deepest = max((len(r.path) for r in result.rows), default=1)
    for depth in range(deepest, 0, -1):
        rows = list(result.rows) if depth == deepest else result.fold(depth)
        # a layer with no MACs and a sliver of the params (batch norm) would only crowd the axis
        costly = [r for r in rows if r.macs or r.params >= MIN_PARAMS_SHARE * result.total.params]
        if len(costly) <= limit or depth == 1:
            return costly
    return []


def layer_costs(result: Result) -> bytes:
    """Two horizontal bar panels, params and MACs per layer (or per folded module), coloured by op."""
    rows = chart_rows(result)
    names = [r.name for r in rows]
    colours = [COLOURS.get(r.op, OTHER) for r in rows]
    height = 1.3 + 0.22 * max(len(rows), 3)
    # margins fixed in inches, from the label lengths: a layout engine measuring text costs 0.2 s a chart
    label_in = 0.3 + CHAR_IN * max((len(name) for name in names), default=1)
    with _figure(height) as fig:
        from matplotlib.patches import Patch
        from matplotlib.ticker import FuncFormatter

        left, right = fig.subplots(1, 2, sharey=True)
        ys = list(range(len(rows)))
        for ax, values, label in ((left, [r.params for r in rows], "params"), (right, [r.macs for r in rows], "MACs")):
            ax.barh(ys, values, color=colours)
            ax.set_title(label)
            ax.xaxis.set_major_formatter(FuncFormatter(_units))
            ax.grid(axis="x", color="#DDDDDD", linewidth=0.6)
            ax.set_axisbelow(True)
        left.set_yticks(ys, names)
        left.invert_yaxis()
        handles = [Patch(color=COLOURS[op], label=op) for op in COLOURS if any(r.op == op for r in rows)]
        others = sorted({r.op for r in rows if r.op not in COLOURS})
        if others:
            handles.append(Patch(color=OTHER, label=", ".join(others)))
        fig.subplots_adjust(left=label_in / WIDTH_IN, right=1 - 0.35 / WIDTH_IN, top=1 - 0.6 / height,
                            bottom=0.75 / height, wspace=0.08)
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
        fig.suptitle(f"{result.model} at {'x'.join(map(str, result.input_shape[1:]))}: params and MACs per layer")
        return _png(fig, (result.model, result.input_shape, [(r.name, r.op, r.params, r.macs) for r in rows]))


def macs_vs_resolution(series: Sequence[tuple[str, Sequence[int], Sequence[int]]]) -> bytes:
    """MACs against input side, log-log, one line per model: (label, sides, MACs)."""
    with _figure(5.5) as fig:
        from matplotlib.ticker import FuncFormatter

        ax = fig.subplots()
        markers = "osD^v<>ph*"
        for i, (label, sides, macs) in enumerate(series):
            ax.plot(sides, macs, marker=markers[i % len(markers)], markersize=4, linewidth=1.4, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        sides_all = sorted({s for _, sides, _ in series for s in sides})
        ax.set_xticks(sides_all, [str(s) for s in sides_all])
        ax.minorticks_off()
        ax.yaxis.set_major_formatter(FuncFormatter(_units))
        ax.set_xlabel("input side H = W (px)")
        ax.set_ylabel("MACs (batch 1)")
        ax.set_title("MACs against input resolution")
        ax.grid(color="#DDDDDD", linewidth=0.6)
        ax.legend(frameon=False, fontsize=8)
        fig.subplots_adjust(left=0.09, right=0.97, top=0.93, bottom=0.1)
        return _png(fig, [(label, list(sides), list(macs)) for label, sides, macs in series])


def accuracy_vs_cost(points: Sequence[Any], fronts: dict[str, Sequence[Any]]) -> bytes:
    """Two panels, top-1 against MACs and against params (log x), one colour per family, each panel's
    Pareto front drawn and named. `points` have .model, .family, .macs, .params, .top1."""
    families = sorted({p.family for p in points})
    with _figure(6.0) as fig:
        from matplotlib.ticker import FuncFormatter

        panels = fig.subplots(1, 2, sharey=True)
        markers = "os^Dv<>ph*"
        for ax, cost, label in ((panels[0], "macs", "MACs (batch 1)"), (panels[1], "params", "parameters")):
            for i, family in enumerate(families):
                members = [p for p in points if p.family == family]
                ax.scatter([getattr(p, cost) for p in members], [p.top1 for p in members], s=22,
                           color=f"C{i % 10}", marker=markers[i // 10 % len(markers)], label=family, zorder=3)
            front = fronts[cost]
            ax.step([getattr(p, cost) for p in front], [p.top1 for p in front], where="post", color="#333333",
                    linewidth=1.0, linestyle="--", zorder=2, label="Pareto front")
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(_units))
            ax.set_xlabel(label)
            ax.grid(color="#DDDDDD", linewidth=0.6)
        panels[0].set_ylabel("ImageNet-1K top-1 (%)")
        handles, labels = panels[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), frameon=False, fontsize=7.5)
        fig.suptitle("Top-1 accuracy against MACs and against parameters (torchvision's weights)")
        fig.subplots_adjust(left=0.07, right=0.98, top=0.92, bottom=0.2, wspace=0.06)
        for ax, cost in ((panels[0], "macs"), (panels[1], "params")):  # once the axes are laid out
            ax.autoscale_view()
            ax.set_autoscale_on(False)  # a label does not move the axes it is placed by
            _label_without_overlap(ax, [(p.model, getattr(p, cost), p.top1) for p in fronts[cost]])
        return _png(fig, [tuple(p) for p in points])


# where a point's label may go, in points from it: below right, above right, below left, above left
LABEL_PLACES = ((3, -9, "left"), (3, 3, "left"), (-3, -9, "right"), (-3, 3, "right"))


def _label_without_overlap(ax: Any, labelled: Sequence[tuple[str, float, float]]) -> None:
    """Each (text, x, y) named beside its point at the first place where it covers no label already
    placed; a point with no such place goes unnamed (the report's table names it)."""
    renderer = ax.figure.canvas.get_renderer()
    placed: list[Any] = []
    for text, x, y in labelled:
        for dx, dy, align in LABEL_PLACES:
            label = ax.annotate(text, (x, y), fontsize=6.5, xytext=(dx, dy), textcoords="offset points", ha=align)
            box = label.get_window_extent(renderer).expanded(1.05, 1.1)
            if not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            label.remove()


def training_memory(series: Sequence[tuple[str, Sequence[int], Sequence[int]]], budgets: Sequence[int]) -> bytes:
    """Peak training memory against batch size, one line per model: (label, batches, bytes); each budget a
    dashed horizontal line."""
    with _figure(5.5) as fig:
        from matplotlib.ticker import FuncFormatter

        ax = fig.subplots()
        markers = "osD^v<>ph*"
        for i, (label, batches, peaks) in enumerate(series):
            ax.plot(batches, peaks, marker=markers[i % len(markers)], markersize=4, linewidth=1.4, label=label)
        for budget in budgets:
            ax.axhline(budget, color="#999999", linestyle="--", linewidth=0.8)
            ax.text(0.995, budget, f"{budget // 10**9} GB budget", transform=ax.get_yaxis_transform(), ha="right",
                    va="bottom", fontsize=8, color="#555555")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        batches_all = sorted({b for _, batches, _ in series for b in batches})
        ax.set_xticks(batches_all, [str(b) for b in batches_all])
        ax.minorticks_off()
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos=None: f"{value / 1e9:g} GB"))
        ax.set_xlabel("batch size")
        ax.set_ylabel("peak training memory (GB = 1e9 bytes)")
        ax.set_title("One training step's peak memory against batch size (AdamW, bf16-mixed)")
        ax.grid(color="#DDDDDD", linewidth=0.6)
        ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(0.08, 1.0))
        fig.subplots_adjust(left=0.1, right=0.97, top=0.93, bottom=0.1)
        return _png(fig, ([(label, list(b), list(p)) for label, b, p in series], list(budgets)))
