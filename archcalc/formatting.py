"""One row model for every command's output, rendered as a rich table, markdown, CSV or JSON.

A `Table` holds raw values (int, float ratio, shape tuple, text); how a value reads is
decided here only: `cell()` for people (thousands separators, or K/M/G with units),
`raw()` for machines (CSV, JSON).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from archcalc.errors import visible

Value = Any  # int | float (a ratio) | tuple[int, ...] (a shape) | str | None
MAX_CELL = 1000  # characters of one text cell; names are at most 100
MAX_LINE = 10_000  # of a title or a note (they hold names: at most a few hundred)
UNITS = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))


@dataclass(frozen=True)
class Column:
    key: str  # the CSV / JSON name
    header: str  # what people read, with its unit
    numeric: bool = True  # right-aligned
    wrap: bool = False  # may wrap between words on a narrow terminal (descriptions); numbers and shapes never do
    drop: int = 0  # on a terminal too narrow for every column, the highest `drop` goes first; 0: always shown


@dataclass
class Table:
    """Columns, rows of raw values, an optional totals row, and the lines around the table."""

    columns: Sequence[Column]
    rows: Sequence[Sequence[Value]] = field(default_factory=list)
    total: Sequence[Value] | None = None
    title: str = ""  # the header line
    notes: list[str] = field(default_factory=list)  # lines after the table
    group_by: int | None = None  # a column whose runs of equal values a terminal shows as sections, named once

    def records(self) -> list[dict[str, Value]]:
        """Rows (and the totals row) as dicts of raw values keyed by column key."""
        rows = [*self.rows, *([self.total] if self.total is not None else [])]
        return [{c.key: raw(v) for c, v in zip(self.columns, row)} for row in rows]


def number(n: int, units: bool = False) -> str:
    """`46,764,746`, or with units `46.8M` (three significant digits; K = 1e3, M = 1e6, G = 1e9)."""
    if not units or abs(n) < 1000:
        return f"{n:,}"
    for i, (size, suffix) in enumerate(UNITS):
        if abs(n) >= size:
            value = n / size
            digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
            text = f"{value:.{digits}f}"
            if abs(float(text)) >= 1000 and i > 0:  # 999.7M rounds to 1000M: say 1.00G
                size, suffix = UNITS[i - 1]
                text = f"{n / size:.2f}"
            return f"{text}{suffix}"
    raise AssertionError("unreachable")


def shape(dims: Iterable[int]) -> str:
    return "x".join(str(d) for d in dims)


def cell(value: Value, units: bool = False) -> str:
    """A raw value as people read it."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return number(value, units)
    if isinstance(value, float):  # a ratio
        # .3g below 999.5 (it would print 999.7 as 1e+03), whole numbers from there
        return f"{value:,.3g}x" if value < 999.5 else f"{value:,.0f}x"
    if isinstance(value, tuple):
        return shape(value)
    return visible(value, MAX_CELL)


def raw(value: Value) -> Value:
    """A raw value for CSV and JSON: shapes as lists, ratios rounded."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def plain_output(stream=None) -> bool:
    """Plain text (no colour, no box drawing, no wrapping) unless writing to a terminal without NO_COLOR."""
    stream = stream or sys.stdout
    return bool(os.environ.get("NO_COLOR")) or not (hasattr(stream, "isatty") and stream.isatty())


def _tabulate(table: Table, units: bool) -> str:
    """A markdown pipe table: numbers right-aligned, the totals row in bold."""
    from tabulate import tabulate

    rows = [[_md(cell(v, units)) for v in row] for row in table.rows]
    if table.total is not None:
        rows.append(["" if v in (None, "") else f"**{_md(cell(v, units))}**" for v in table.total])
    return tabulate(
        rows,
        headers=[_md(visible(c.header)) for c in table.columns],
        tablefmt="pipe",
        colalign=["right" if c.numeric else "left" for c in table.columns],
        disable_numparse=True,
    )


def _md(text: str) -> str:
    """A markdown cell's text: `|` would end the cell."""
    return text.replace("|", "\\|")


def _aligned(table: Table, units: bool) -> str:
    """Fixed-width columns two spaces apart, a rule under the header and above the totals.

    Written out rather than through tabulate: this is the path `archcalc table` takes when
    piped, and importing tabulate (with wcwidth) costs about a tenth of the command's time.
    """
    header = [visible(c.header) for c in table.columns]
    rows = [[cell(v, units) for v in row] for row in table.rows]
    total = [] if table.total is None else [["" if v is None else cell(v, units) for v in table.total]]
    widths = [max(len(r[i]) for r in [header, *rows, *total]) for i in range(len(header))]
    rule = "  ".join("-" * w for w in widths)

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if col.numeric else c.ljust(w) for c, w, col in zip(cells, widths, table.columns)
        ).rstrip()

    body = [line(header), rule, *map(line, rows)]
    if total:
        body += [rule, line(total[0])]
    return "\n".join(body)


def _framed(table: Table, body: str, gap: str) -> str:
    """The title line, the table, the notes."""
    parts = [visible(table.title, MAX_LINE), body, "\n".join(visible(note, MAX_LINE) for note in table.notes)]
    return gap.join(p for p in parts if p) + "\n"


def to_markdown(table: Table, units: bool = False) -> str:
    """A pipe table (right-aligned numbers, bold totals) between the title and the notes."""
    return _framed(table, _tabulate(table, units), "\n\n")


def to_text(table: Table, units: bool = False) -> str:
    """Plain text for pipes: no colour, no box drawing, one line per row, a rule above the totals."""
    return _framed(table, _aligned(table, units), "\n")


def to_csv(table: Table) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([_inert(c.key) for c in table.columns])
    for record in table.records():
        writer.writerow(["x".join(map(str, v)) if isinstance(v, list) else "" if v is None else _inert(v)
                         for v in record.values()])
    return out.getvalue()


def _inert(value: Value) -> Value:
    """A CSV text cell that a spreadsheet will not run as a formula (OWASP's rule: a leading
    = + - @, tab or carriage return gets a `'`), with invisible characters escaped."""
    if not isinstance(value, str):
        return value
    value = visible(value, MAX_CELL)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def to_json(data: Any) -> str:
    import json

    return json.dumps(data, indent=2) + "\n"


WRAP_WIDTH = 30  # a wrapping column keeps at least this width (or its widest cell's) before it may squeeze more


@dataclass(frozen=True)
class Fit:
    """What a rich table shows on a terminal of some width: which columns, exact or K/M/G, how text wraps."""

    columns: tuple[int, ...]  # indexes into Table.columns
    units: bool
    dropped: tuple[str, ...] = ()  # headers of the columns left out
    wrap: int = 0  # 0: nothing wraps; 1: wrapping columns wrap between words, at least WRAP_WIDTH wide; 2: as narrow as needed
    overflow: bool = False  # nothing fits: full-width lines, which the terminal wraps


def _grid(table: Table, fit: Fit, widths: dict[int, int] | None = None):
    """The rich table for `fit` (`widths`: set widths of some columns): headers in bold, numbers right-aligned,
    totals as a bold footer."""
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    grid = RichTable(box=box.SIMPLE, show_footer=table.total is not None, header_style="bold",
                     footer_style="bold", pad_edge=False, show_edge=False, collapse_padding=True)
    footer = [None if v is None else cell(v, fit.units) for v in table.total] if table.total is not None else None
    cells = [[cell(row[i], fit.units) for i in fit.columns] for row in table.rows]
    for j, i in enumerate(fit.columns):
        column = table.columns[i]
        wraps = fit.wrap and column.wrap
        widest = max([len(column.header), len(footer[i] or "") if footer else 0, *(len(row[j]) for row in cells)])
        # a column that does not wrap is as wide as its widest cell or header, never less (rich would cut it)
        # every cell a Text: what it holds is never read as markup
        grid.add_column(Text(visible(column.header)), footer=Text(footer[i] or "") if footer else "", no_wrap=not wraps,
                        overflow="fold",
                        min_width=None if fit.wrap == 2 and wraps else widest if not wraps else min(widest, WRAP_WIDTH),
                        width=(widths or {}).get(i),
                        justify="right" if column.numeric else "left")
    shown_group = table.group_by if table.group_by in fit.columns else None
    for n, row in enumerate(cells):
        if shown_group is not None and n and table.rows[n][shown_group] == table.rows[n - 1][shown_group]:
            row[fit.columns.index(shown_group)] = ""
        elif n and table.group_by is not None and table.rows[n][table.group_by] != table.rows[n - 1][table.group_by]:
            grid.add_section()
        grid.add_row(*map(Text, row))
    return grid


def _measure(console, grid):
    """The grid's narrowest and widest rendering, unclamped by the console's width."""
    return console.measure(grid, options=console.options.update_width(10**6))


def _plans(table: Table, units: bool | None):
    """Every way to show the table, fullest first: exact before K/M/G (unless `units` says), then fewer columns
    (highest `drop` first), each without wrapping and then with wrapping text; squeezed text last of all."""
    everything = tuple(range(len(table.columns)))
    order = sorted((i for i in everything if table.columns[i].drop), key=lambda i: -table.columns[i].drop)
    wraps = (0, 1) if any(c.wrap for c in table.columns) else (0,)
    choices = [units] if units is not None else [False, True]

    def plan(use_units: bool, n: int, wrap: int) -> Fit:
        dropped = order[:n]
        return Fit(tuple(i for i in everything if i not in dropped), use_units,
                   tuple(table.columns[i].header for i in sorted(dropped)), wrap)

    for use_units in choices:
        for n in range(len(order) + 1):
            for wrap in wraps:
                yield plan(use_units, n, wrap)
    if len(wraps) > 1:
        for use_units in choices:
            yield plan(use_units, len(order), 2)


def _squeeze(table: Table, fit: Fit, console, narrowest: int = 8):
    """The grid with its wrapping columns sharing what the others leave (in proportion to their widest
    cells, at least `narrowest` each, long words folded), or None when that is too little."""
    wrapping = [i for i in fit.columns if table.columns[i].wrap]
    rest = Fit(tuple(i for i in fit.columns if i not in wrapping), fit.units)
    room = console.width - _measure(console, _grid(table, rest)).maximum - len(wrapping)
    natural = {i: max(len(cell(v, fit.units)) for v in [table.columns[i].header, *(row[i] for row in table.rows)])
               for i in wrapping}
    if room < sum(min(natural[i], narrowest) for i in wrapping):
        return None
    base = {i: min(natural[i], narrowest) for i in wrapping}
    spare, wanting = room - sum(base.values()), sum(natural[i] - base[i] for i in wrapping) or 1
    widths = {i: min(natural[i], base[i] + spare * (natural[i] - base[i]) // wanting) for i in wrapping}
    grid = _grid(table, fit, widths)
    excess = _measure(console, grid).maximum - console.width  # the separators the wrapping columns add
    while excess > 0:
        widest = max(widths, key=widths.__getitem__)
        if widths[widest] - excess < narrowest:
            return None
        widths[widest] -= excess
        grid = _grid(table, fit, widths)
        excess = _measure(console, grid).maximum - console.width
    return grid


def fit_to(table: Table, console, units: bool | None = None, wide: bool = False) -> tuple[Fit, object]:
    """The fullest version of `table` that fits the console's width (see `_plans`), and its rich grid.
    A number is never cut: when nothing fits, or with `wide`, lines run past the edge (the terminal wraps them)."""
    if not wide:
        for fit in _plans(table, units):
            if fit.wrap == 2:
                squeezed = _squeeze(table, fit, console)
                if squeezed is not None:
                    return fit, squeezed
                continue
            grid = _grid(table, fit)
            measured = _measure(console, grid)
            if (measured.minimum if fit.wrap else measured.maximum) <= console.width:
                return fit, grid
    fit = Fit(tuple(range(len(table.columns))), bool(units), overflow=True)
    return fit, _grid(table, fit)


def fit_notes(fit: Fit, units: bool | None, width: int) -> list[str]:
    """What the terminal's width changed, and how to get it back."""
    notes = []
    if fit.dropped:
        notes.append(f"not shown at {width} columns: {', '.join(fit.dropped)} (--wide shows every column; "
                     "piped output always does)")
    if fit.units and units is None:
        notes.append(f"K/M/G units (K = 1e3) to fit {width} columns: --exact for exact integers")
    return notes


def print_rich(table: Table, units: bool | None = None, wide: bool = False, console=None) -> None:
    """A rich table that fits the terminal (see `fit_to`), its title above and its notes below."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console(highlight=False)
    fit, grid = fit_to(table, console, units, wide)
    if table.title:
        console.print(Text(visible(table.title, MAX_LINE)))
    if fit.overflow:  # full-width lines: the terminal wraps them, nothing is cut
        width = console.width
        console.width = max(width, _measure(console, grid).maximum)
        console.print(grid, crop=False)
        console.width = width
    else:
        console.print(grid)
    for note in [*table.notes, *fit_notes(fit, units, console.width)]:
        console.print(Text(visible(note, MAX_LINE)))


def render(table: Table, fmt: str, units: bool | None = False, wide: bool = False) -> None:
    """Print a table in one of the non-JSON formats; `units` None: exact unless the terminal is too narrow."""
    if fmt == "table" and not plain_output():
        print_rich(table, units, wide)
    elif fmt == "table":
        sys.stdout.write(to_text(table, bool(units)))
    elif fmt == "markdown":
        sys.stdout.write(to_markdown(table, bool(units)))
    elif fmt == "csv":
        sys.stdout.write(to_csv(table))
    else:  # json of a generic table: its records
        sys.stdout.write(to_json(table.records()))
