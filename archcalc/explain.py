"""`archcalc explain`: a layer's numbers with the arithmetic that gives them, the values put in.

One source: the numbers are the op's handler's (the code that fills the table), run again on the
layer's input with `recording()` on, so `output_size` and adaptive pooling say what they computed;
an op's `EXPLANATIONS` entry (archcalc/ops/) writes its params and MACs as products. An op without
one still gets its handler's numbers and its output sizes. The receptive field is worked out from
what entered the layer in the walk (`run(..., entering=...)`) and the window its handler gives.
"""

from __future__ import annotations

import math

import difflib
import textwrap
from dataclasses import dataclass
from typing import Sequence

from archcalc.analysis import run
from archcalc.errors import SpecError
from archcalc.ops import EXPLANATIONS, GLOBAL, HANDLERS, PER_FORWARD, Axis, Bins, Line, recording
from archcalc.ops.common import axis_formula, times
from archcalc.result import Group, Result, Row
from archcalc.spec import Model
from archcalc.tables import briefly

AXES = ("H", "W")
NO_MACS = "no multiply-accumulates"  # what MACs count is said once, under the output (`conventions`)


@dataclass(frozen=True)
class Explanation:
    """One layer (or a composite's sum): its lines, and the numbers they arrive at, as the table has them."""

    name: str
    description: str
    input_shape: tuple[int, ...]  # with the batch
    output_shape: tuple[int, ...]
    lines: tuple[Line, ...]
    params: int
    macs: int
    flops: int
    fvcore_flops: int
    receptive_field: tuple[int, int]
    stride: tuple[int, int]


class UnknownLayerError(SpecError):
    """A layer name that is no layer's path or unique suffix."""


def explain(model: Model, names: Sequence[str] = (), *, batch: int = 1, input: tuple[int, ...] | None = None,
            depth: int | None = None) -> list[Explanation]:
    """The layers named (a path or a unique suffix, or a composite's path), else every row of the table
    (folded at `depth` as `archcalc table --depth` does)."""
    entering: dict[int, tuple] = {}
    result = run(model, batch=batch, input=input, entering=entering)
    index = {id(row): i for i, row in enumerate(result.rows)}
    groups = {".".join(g.path): g for g in result.groups}
    idle = _idle_rows(result)
    if names:
        return [_explain_name(result, entering, groups, idle, name) for name in names]
    rows = result.fold(depth) if depth is not None else result.rows
    return [_explain_row(result, entering, index[id(row)], index[id(row)] in idle) if id(row) in index
            else _explain_group(result, groups[row.name]) for row in rows]


def _idle_rows(result: Result) -> set[int]:
    """The rows of `auxiliary` composites: their parameters count, but they do not run at inference."""
    return {i for g in result.groups if g.kind == "auxiliary" for i in range(g.start, g.stop)}


def layer_names(result: Result) -> list[str]:
    """Every name `explain` takes: each row's path and each composite's."""
    return [*dict.fromkeys([*(row.name for row in result.rows), *(".".join(g.path) for g in result.groups)])]


def resolve(result: Result, name: str) -> str:
    """The full path `name` stands for: itself, or the one path it ends (after a dot)."""
    known = layer_names(result)
    if name in known:
        return name
    matches = [path for path in known if path.endswith("." + name)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(matches[:6]) + (", ..." if len(matches) > 6 else "")
        raise UnknownLayerError(f"{name!r} ends {len(matches)} layer paths of {result.model} ({shown}): give more of the path")
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) or difflib.get_close_matches(
        name, [p.rpartition(".")[2] for p in known], n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UnknownLayerError(f"{result.model} has no layer {name!r}{hint}; `archcalc table {result.model}` lists them")


def _explain_name(result: Result, entering: dict[int, tuple], groups: dict[str, Group], idle: set[int],
                  name: str) -> Explanation:
    path = resolve(result, name)
    if path in groups:
        return _explain_group(result, groups[path])
    i = next(i for i, row in enumerate(result.rows) if row.name == path)
    return _explain_row(result, entering, i, i in idle)


def _same(lines: list[Line]) -> list[Line]:
    """An H line and a W line that read alike become one `H, W` line."""
    out: list[Line] = []
    for line in lines:
        last = out[-1] if out else None
        if (last is not None and last.what.endswith(" H") and line.what == last.what[:-1] + "W"
                and (last.formula, last.value, last.note) == (line.formula, line.value, line.note)):
            out[-1] = last._replace(what=last.what + ", W")
        else:
            out.append(line)
    return out


def _output_lines(record: list) -> list[Line]:
    """What `output_size` and adaptive pooling recorded, one line per axis."""
    lines = []
    for axis, what in zip(record, AXES):
        if isinstance(axis, Axis):
            notes = []
            if axis.dilation != 1:
                notes.append(f"dilation {axis.dilation}: the kernel spans {axis.dilation}·({axis.kernel} − 1) + 1 = "
                             f"{axis.dilation * (axis.kernel - 1) + 1}")
            if axis.dropped:
                notes.append("ceil mode: torch drops the last window, which would start in the padding")
            lines.append(Line(f"output {what}", axis_formula(axis), axis.out, "; ".join(notes)))
        elif isinstance(axis, Bins):
            lines.append(Line(f"output {what}", "", axis.out,
                              f"adaptive: {axis.size} split into {axis.out} bins, the widest {axis.widest}, "
                              f"one starting every {axis.step} (torch: ⌊i·{axis.size}/{axis.out}⌋ to "
                              f"⌈(i + 1)·{axis.size}/{axis.out}⌉)"))
    return lines


def _whole(pair: tuple) -> tuple[int, int]:
    """A receptive field or stride as its row shows it: past an upsampling adaptive pool it is a
    fraction of a pixel, which rows round up (an upper bound)."""
    return (math.ceil(pair[0]), math.ceil(pair[1]))


def _receptive_lines(window, rf: tuple[int, int], jump: tuple[int, int], grid: tuple[int, int]) -> tuple[list[Line], tuple[int, int], tuple[int, int]]:
    """How the layer's window widens the receptive field and multiplies the stride, per axis."""
    lines, new_rf, new_jump = [], [], []
    for a, what in enumerate(AXES):
        if window is None:
            lines.append(Line(f"RF {what}", "", rf[a], "unchanged: this op looks at one position"))
            new_rf.append(rf[a])
            new_jump.append(jump[a])
        elif window == GLOBAL:
            value = rf[a] + (grid[a] - 1) * jump[a]
            lines.append(Line(f"RF {what}", f"{rf[a]} + ({grid[a]} − 1) · {jump[a]}", value,
                              f"every output sees the whole {grid[0]}x{grid[1]} grid"))
            new_rf.append(value)
            new_jump.append(jump[a])
        else:
            kernel, stride = window[a], window[2 + a]
            value = rf[a] + (kernel - 1) * jump[a]
            lines.append(Line(f"RF {what}", f"{rf[a]} + ({kernel} − 1) · {jump[a]}", value))
            new_rf.append(value)
            new_jump.append(jump[a] * stride)
            if stride != 1:
                lines.append(Line(f"stride {what}", times(jump[a], stride), jump[a] * stride,
                                  "input pixels between neighbouring outputs"))
    order = [line for what in ("RF", "stride") for line in lines if line.what.startswith(what)]
    return order, (new_rf[0], new_rf[1]), (new_jump[0], new_jump[1])


def _explain_row(result: Result, entering: dict[int, tuple], i: int, idle: bool = False) -> Explanation:
    row = result.rows[i]
    if i not in entering:  # where a concat, residual or gate joins its paths
        return _joined(result, i)
    layer, shape, rf, jump, grid = entering[i]
    with recording() as record:
        cost = HANDLERS[layer.__class__](layer, shape)
    worked = EXPLANATIONS.get(layer.__class__)
    own = worked(layer, shape, cost) if worked else []
    if idle:
        return _idle_row(row, record, own, cost, rf, jump, grid)
    lines = _output_lines(record) + [line for line in own if line.what != "fvcore"]
    said = {line.what for line in lines + own}
    n = result.batch
    once = PER_FORWARD[layer.__class__](layer) if layer.__class__ in PER_FORWARD else 0
    macs = n * cost.macs + once
    if not (cost.params or cost.macs or said & {"params", "MACs"}):
        lines.append(Line("params, MACs", "", 0, f"no weights, {NO_MACS}"))
    else:
        if "params" not in said:
            lines.append(Line("params", "", cost.params))
        if "MACs" not in said:
            lines.append(Line("MACs", "", cost.macs, "" if cost.macs else NO_MACS))
        if n != 1 and cost.macs:
            lines.append(Line(f"MACs, batch {n}", times(n, f"{cost.macs:,}"), n * cost.macs))
        if once:
            if "MACs once per forward" not in said:
                lines.append(Line("MACs once per forward", "", once, "whatever the batch"))
            lines.append(Line("MACs in all", f"{n * cost.macs:,} + {once:,}", macs))
        if macs:
            lines.append(Line("FLOPs", times(2, f"{macs:,}"), 2 * macs))
    lines += [line for line in own if line.what == "fvcore"]  # after MACs and FLOPs, as the table's columns
    if cost.fvcore != cost.macs and "fvcore" not in said:
        lines.append(Line("fvcore", "", cost.fvcore))
    if n != 1 and cost.fvcore != cost.macs:
        lines.append(Line(f"fvcore, batch {n}", times(n, f"{cost.fvcore:,}"), n * cost.fvcore))
    rf_lines, new_rf, new_jump = _receptive_lines(cost.window, rf, jump, grid)
    return Explanation(row.name, row.description, row.input_shape, (n, *cost.output), tuple(_same(lines + rf_lines)),
                       cost.params, macs, 2 * macs, n * cost.fvcore + once, _whole(new_rf), _whole(new_jump))


def _idle_row(row: Row, record: list, own: list[Line], cost, rf, jump, grid) -> Explanation:
    """A layer of an `auxiliary` composite: its shapes and parameters as worked out, no cost (the table's zeros)."""
    params = [line for line in own if line.what == "params"] or ([Line("params", "", cost.params)] if cost.params else [])
    idle = Line("MACs, FLOPs" if params else "params, MACs, FLOPs", "", 0,
                "auxiliary: it does not run at inference" + (" (its parameters count)" if params else ""))
    rf_lines, new_rf, new_jump = _receptive_lines(cost.window, rf, jump, grid)
    return Explanation(row.name, row.description, row.input_shape, row.output_shape,
                       tuple(_same(_output_lines(record) + params + [idle] + rf_lines)), cost.params, 0, 0, 0,
                       _whole(new_rf), _whole(new_jump))


def _joined(result: Result, i: int) -> Explanation:
    """The row where a concat, a residual or a gate joins its paths: no weights, no MACs; its
    receptive field is the widest of the paths' (the gate's: its input's or its factor's)."""
    row = result.rows[i]
    group = next(g for g in result.groups if g.stop == i + 1 and ".".join(g.path) == row.name)
    lines = JOINS[row.op](result, row, result.rows[group.start:i])
    rf_notes = {"concat": "the widest of its branches'", "add": "the wider of the body's and the shortcut's",
                "mul": "the wider of its input's and its factor's"}
    lines += [Line("params, MACs", "", 0, f"no weights, {NO_MACS}"),
              *_same([Line(f"RF {what}", "", rf, rf_notes[row.op]) for what, rf in zip(AXES, row.receptive_field)])]
    return Explanation(row.name, row.description, row.input_shape, row.output_shape, tuple(lines), 0, 0, 0, 0,
                       row.receptive_field, row.stride)


def _branch_ends(row: Row, inner: Sequence[Row]) -> list[tuple[int, ...]]:
    """What each of a concat's branches gives: its last row's output, or the input for an empty branch."""
    ends = {}
    for r in inner:
        branch = r.name[len(row.name) + 1:].split(".", 1)[0]
        ends[int(branch)] = r.output_shape
    return [ends.get(b, row.input_shape) for b in range(max(ends, default=-1) + 1)]


def _concat(result: Result, row: Row, inner: Sequence[Row]) -> list[Line]:
    widths = [shape[1] for shape in _branch_ends(row, inner)]
    axis = "features" if len(row.output_shape) == 2 else "channels"
    return [Line(f"output {axis}", " + ".join(map(str, widths)), row.output_shape[1],
                 f"the {len(widths)} branches' {axis} side by side")]


def _residual(result: Result, row: Row, inner: Sequence[Row]) -> list[Line]:
    shortcut = "its projection" if "projection" in row.description else "the block's input"
    return [Line("output values", times(*row.output_shape[1:]), math.prod(row.output_shape[1:]),
                 f"the body's output plus {shortcut}, value by value (the adds are not MACs)")]


def _gate(result: Result, row: Row, inner: Sequence[Row]) -> list[Line]:
    factor = inner[-1].output_shape[1:] if inner else row.input_shape[1:]
    spread = " (broadcast where it is 1)" if factor != row.input_shape[1:] else ""
    return [Line("output values", times(*row.output_shape[1:]), math.prod(row.output_shape[1:]),
                 f"the input times the gate's {_shape(factor)} factor{spread}, value by value (not MACs); "
                 "the gate's own layers are rows of their own")]


# how each join's output is made, by the op of its row
JOINS = {"concat": _concat, "add": _residual, "mul": _gate}


def _sum(what: str, values: list[int]) -> Line:
    """The rows' values added up (written out unless there are more than 12)."""
    terms = [f"{v:,}" for v in values if v]
    formula = " + ".join(terms) if 1 < len(terms) <= 12 else ""
    return Line(what, formula, sum(values), f"the sum over its {len(values)} rows" if len(terms) > 12 else "")


def _explain_group(result: Result, group: Group) -> Explanation:
    """A composite: how its paths join (a concat, residual or gate), the sums of the rows it spans; its
    receptive field and stride are its last row's."""
    rows = result.rows[group.start:group.stop]
    last = rows[-1]
    name = ".".join(group.path)
    joined = JOINS[last.op](result, last, rows[:-1]) if last.name == name and last.op in JOINS else []
    macs = sum(r.macs for r in rows)
    lines = (*joined, _sum("params", [r.params for r in rows]), _sum("MACs", [r.macs for r in rows]),
             *([Line("FLOPs", times(2, f"{macs:,}"), sum(r.torch_flops for r in rows))] if macs else []),
             *_same([Line(f"RF {what}", "", rf, "as its last row's") for what, rf in zip(AXES, last.receptive_field)]))
    return Explanation(name, f"{group.kind} ({len(rows)} rows)", rows[0].input_shape,
                       last.output_shape, lines, sum(r.params for r in rows), sum(r.macs for r in rows),
                       sum(r.torch_flops for r in rows), sum(r.fvcore_flops for r in rows), last.receptive_field,
                       last.stride)


# ---- rendering -----------------------------------------------------------------------------


def _shape(dims: Sequence[int]) -> str:
    return "x".join(map(str, dims))


def _worked(line: Line) -> str:
    return f"{line.formula} = {line.value:,}" if line.formula else f"{line.value:,}"


def _wrapped(text: str, width: int | None, indent: str) -> list[str]:
    """`text` as it is, or broken between words into lines of at most `width` (never inside a number)."""
    if width is None or len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def to_text(explanations: Sequence[Explanation], width: int | None = None) -> str:
    """Each layer: a heading line, then one line per number, aligned; notes after a `--`. With a
    `width` (a terminal's), a longer line is broken between words, under its worked-out column."""
    blocks = []
    for e in explanations:
        column = max(len(line.what) for line in e.lines)
        indent = " " * (column + 4)
        body = [f"{e.name}: {e.description}, {_shape(e.input_shape)} -> {_shape(e.output_shape)}"]
        body = _wrapped(body[0], width, "    ")
        for line in e.lines:
            worked = f"  {line.what:<{column}}  {_worked(line)}"
            note = f"  -- {line.note}" if line.note else ""
            if width is None or len(worked + note) <= width:
                body.append(worked + note)
                continue
            body += _wrapped(worked, width, indent)
            if note:
                body += _wrapped(indent + note.strip(), width, indent + "   ")
        blocks.append("\n".join(body))
    return "\n\n".join(blocks) + "\n"


def conventions(width: int | None = None) -> str:
    """The counting conventions, said once under the explanations (as under a table)."""
    text = briefly("MACs", "FLOPs", "RF", more="`archcalc table --explain-columns` says more")
    return "\n".join(_wrapped(text, width, "")) + "\n"


def to_markdown(explanations: Sequence[Explanation]) -> str:
    """Each layer as a heading and a two-column table, for notes and slides."""
    blocks = []
    for e in explanations:
        rows = [f"| {line.what} | {_worked(line)}{f' ({line.note})' if line.note else ''} |" for line in e.lines]
        blocks.append("\n".join([f"### `{e.name}`: {e.description}", "",
                                 f"{_shape(e.input_shape)} → {_shape(e.output_shape)}", "",
                                 "| | worked out |", "| --- | --- |", *rows]))
    return "\n\n".join(blocks) + "\n"
