"""Walk a spec once, in execution order, and count every leaf layer.

Nothing is allocated per element: each layer costs a few integer operations,
whatever the batch and input size.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union, cast

from archcalc.errors import SpecError, shown
from archcalc.expressions import BlockInput, markers
from archcalc.ops import GLOBAL, HANDLERS, PER_FORWARD, ChannelsLast, Window, describe
from archcalc.ops.common import channels, subpixel
from archcalc.result import DTYPE_BYTES, Group, Result, Row, Totals
from archcalc.spec import (
    MAX_SIZE, Auxiliary, Concat, Conv2d, Gate, Layers, Linear, Model, MultiheadAttention, Node, PartitionAttention,
    Repeat, Residual, Sequential, ShiftedWindowAttention, resolved, spell_parts, too_big, valid_input,
)

# Rows and groups are made with tuple.__new__: a named tuple's own __new__ is Python code, and
# took an eighth of a GoogLeNet's analysis (py-spy).
_new = tuple.__new__
# what "depth" counts, as in "VGG-16" and "ResNet-152"; an attention layer counts as one
WEIGHT_LAYERS = (Conv2d, Linear, MultiheadAttention, ShiftedWindowAttention, PartitionAttention)
MAX_LAYERS = 100_000  # layers repeats may visit; a spec beyond this is a mistake, and would take long to print
# The largest cumulative stride (input pixels between neighbouring outputs): past it a path's strides
# multiply into integers of thousands of digits (each row keeps its own), and the receptive field
# stays below about 1e45 pixels (100,000 layers, kernels up to 2**31)
MAX_STRIDE = 10**30
MAX_RESOLVED = 100_000  # resolved layers a Model keeps between analyses


# The tensor flowing between layers (one sample), and its receptive field, as a plain tuple (one is
# made per layer): shape, receptive field (h, w), cumulative stride in input pixels (h, w), the H x W
# that the features index (kept through flatten), conv/linear layers on the longest path so far.
State = tuple[tuple[int, ...], tuple[int, int], tuple[int, int], tuple[int, int], int]


def count_layers(layers: Layers, memo: dict[int, int] | None = None) -> int:
    """Layers the walk will visit for a layer list, composites and every repeat copy included,
    without walking it (a repeat of an empty sequential makes no rows but still takes time)."""
    memo = {} if memo is None else memo
    total = 0
    for layer in layers:
        key = id(layer)
        if key not in memo:
            if isinstance(layer, (Sequential, Gate, Auxiliary)):
                memo[key] = 1 + count_layers(layer.layers, memo)
            elif isinstance(layer, Repeat):
                memo[key] = 1 + layer.times * count_layers(layer.layers, memo)
            elif isinstance(layer, Concat):
                memo[key] = 1 + sum(count_layers(b, memo) for b in layer.branches)
            elif isinstance(layer, Residual):
                memo[key] = 1 + count_layers(layer.body, memo) + count_layers(layer.shortcut, memo)
            else:
                memo[key] = 1
        total += memo[key]
        if total > MAX_LAYERS:
            break
    return total


def child_keys(layers: Layers) -> list[str]:
    """Module names for a list of layers: the layer's `name`, else its place in the list, where an
    inline repeat's copies take a place each (its key: its first copy's place, which the next
    layer takes when it has no copies)."""
    keys, place, modules = [], 0, []
    for layer in layers:
        key = layer.name or str(place)
        keys.append(key)
        if layer.__class__ is Repeat and layer.inline:
            if layer.name:
                raise _at(SpecError("an inline repeat's copies take their places in the list: it has no name of "
                                    "its own", op="repeat"), layer)
            place += layer.times
        else:
            modules.append((key, layer))
            place += 1
    names = [key for key, _ in modules]
    if len(set(names)) != len(names):
        dup, layer = next((key, layer) for key, layer in modules if names.count(key) > 1)
        raise _at(SpecError(f"two layers in the same list are named {shown(dup)}", op=layer.OP), layer)
    return keys


def _at(err: SpecError, layer: Node) -> SpecError:
    return err.located(file=layer.where.file if layer.where else None, line=layer.where.line if layer.where else None)


# A leaf layer on one input shape, worked out once per analysis: all its row needs but the path
# and the receptive field, which depend on where the layer stands. A plain tuple: its output shape;
# how it widens the receptive field (kernel h - 1, w - 1, stride h, w), GLOBAL, or None when it does
# not; the H x W its output's features index (None: its input's); whether depth counts it (conv,
# linear); the row's fields from op to activations, under a frozen parent and under a trainable one.
Step = tuple[tuple[int, ...], Union[Window, str, None], Optional[tuple[int, int]], bool, tuple[tuple, tuple]]


def _trailed(err: SpecError, layer: Node, parts: tuple[int | str, ...]) -> SpecError:
    """`err` on its way out of `layer`, which stands at `parts` of the spec path (innermost first).

    The first layer it leaves (the one that raised it, or the composite whose own check failed)
    gives its file, line and op. The path is spelled once, by `run`, from the parts collected on
    the way out: the walk builds no path for the layers that raise nothing.
    """
    trail = getattr(err, "trail", None)
    if trail is None:
        where = layer.where
        err = err.located(file=where.file if where else None, line=where.line if where else None, op=layer.OP)
        trail = err.trail = []  # type: ignore[attr-defined]
    trail.extend(parts)
    return err


def map_grid(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The H x W of a feature map in either layout; None for tokens and vectors (they keep the last map's)."""
    if len(shape) != 3:
        return None
    return (shape[0], shape[1]) if shape.__class__ is ChannelsLast else (shape[1], shape[2])


class _Walker:
    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.rows: list[Row] = []
        self.groups: list[Group | None] = []  # in walk order: a composite before what it holds
        # repeat copies and shared blocks share layer objects: work out each (layer, input shape)
        # once per analysis, and name each shared layer list once
        self.steps: dict[tuple[int, tuple[int, ...], type], Step] = {}
        self.keys: dict[int, list[str]] = {}
        self.repeated = 0  # layers the outermost repeats visit, all told
        self.repeating = False
        self.counts: dict[int, int] = {}
        self.inputs: dict[BlockInput, int] = {}  # what in_channels is for each block being walked
        # layers with in_channels resolved (the Model's, or this walk's), and the blocks each one reads
        self.resolved_layers: dict[tuple, Node] = {}
        self.markers: dict[int, tuple[BlockInput, ...]] = {}
        self.fractional = False  # whether a receptive field or jump may hold a Fraction (rows round them up)
        # for `archcalc explain`: row index -> (layer, input shape, receptive field, stride, grid) as it entered
        self.entering: dict[int, tuple] | None = None

    def sequence(self, layers: Layers, state: State, prefix: tuple[str, ...], trainable: bool,
                 outer: tuple[int | str, ...], single: bool = False) -> State:
        """Layers in order, each at `prefix` + its name (`single`: one layer, at `prefix` itself).

        `outer`: where the list stands in the spec. Leaf layers are walked here, the state in
        locals; a composite's visit walks its own lists.
        """
        keys = None
        if not single:
            keys = self.keys.get(id(layers))
            if keys is None:
                keys = self.keys[id(layers)] = child_keys(layers)
        shape, rf, jump, grid, depth = state
        steps, rows, groups, entering = self.steps, self.rows, self.groups, self.entering
        i = 0
        try:
            for i, layer in enumerate(layers):
                if layer.deferred:  # reads in_channels: this place's values
                    layer = self.resolved(layer)
                path = prefix if keys is None else prefix + (keys[i],)
                key = (id(layer), shape, shape.__class__)  # the class: a channels-last map equals its tuple
                step = steps.get(key)
                if step is None:
                    visit = _COMPOSITES.get(layer.__class__)
                    if keys is not None and layer.__class__ is Repeat and layer.inline:  # no group: its copies stand here
                        shape, rf, jump, grid, depth = self.repeat(
                            layer, (shape, rf, jump, grid, depth), prefix, trainable and layer.trainable, int(keys[i]))
                        continue
                    if visit is not None:  # its rows, and a Group spanning them before its children's groups
                        start, index = len(rows), len(groups)
                        if start + index > MAX_LAYERS:  # a Model made in Python can share one node everywhere
                            raise SpecError(f"the model expands to more than {MAX_LAYERS:,} layers")
                        groups.append(None)
                        shape, rf, jump, grid, depth = visit(
                            self, layer, (shape, rf, jump, grid, depth), path, trainable and layer.trainable)
                        if len(rows) == start:  # no rows (a repeat of zero copies): nothing to span or explain
                            del groups[index:]
                            continue
                        kind = (layer.block or "sequential") if layer.__class__ is Sequential else layer.OP
                        groups[index] = _new(Group, (path, kind, start, len(rows)))
                        continue
                    step = steps[key] = self.step(layer, shape)
                if entering is not None:
                    entering[len(rows)] = (layer, shape, rf, jump, grid)
                shape, widen, new_grid, weighted, fields = step
                if widen is not None:
                    if isinstance(widen, str):  # GLOBAL: the whole grid
                        rf = (rf[0] + (grid[0] - 1) * jump[0], rf[1] + (grid[1] - 1) * jump[1])
                    else:
                        rf = (rf[0] + widen[0] * jump[0], rf[1] + widen[1] * jump[1])
                        if widen[2] != 1 or widen[3] != 1:
                            jump = (jump[0] * widen[2], jump[1] * widen[3])
                            if jump[0] > MAX_STRIDE or jump[1] > MAX_STRIDE:
                                raise SpecError(f"the cumulative stride exceeds {MAX_STRIDE:.0e} input pixels "
                                                "(strides multiply along a path)")
                            if jump[0].__class__ is not int or jump[1].__class__ is not int:
                                jump = (_subpixel(jump[0]), _subpixel(jump[1]))
                rows.append(_new(Row, (path,) + fields[trainable] + (rf, jump)))
                if new_grid is not None:
                    grid = new_grid
                depth += weighted
        except SpecError as err:
            raise _trailed(err, layers[i], (i, *outer)) from None
        return (shape, rf, jump, grid, depth)

    def resolved(self, layer: Node) -> Node:
        """The layer with its in_channels expressions evaluated, one node per distinct result.

        Kept in the Model (`resolved_layers`) by the widths it read, so that analysing it again
        evaluates nothing: a mobile network's blocks read in_channels in most of their layers.
        """
        cache = self.resolved_layers
        read = self.markers.get(id(layer))
        if read is None:
            read = self.markers[id(layer)] = tuple(m for f in layer.deferred for m in markers(layer.__dict__[f]))
        inputs = self.inputs
        key = (id(layer), *[inputs.get(m) for m in read])
        node = cache.get(key)
        if node is None:
            node = resolved(layer, inputs)
            if len(cache) > MAX_RESOLVED:  # a Model analysed at very many input widths: start again
                cache.clear()
            # equal results share one node, and so its steps
            node = cache[key] = cache.setdefault((id(layer), "=", *[node.__dict__[f] for f in layer.deferred]), node)
        return node

    def step(self, layer: Node, shape: tuple[int, ...]) -> Step:
        handler = HANDLERS.get(layer.__class__)
        if handler is None:
            raise SpecError(f"{type(layer).__name__} is not a layer archcalc knows")
        output, params, macs, fvcore, window = handler(layer, shape)
        n = self.batch
        if output is shape and window is None:  # a 3-d input's H x W is the grid already
            grid = None
        else:
            grid = map_grid(output) or ((1, 1) if window == GLOBAL else None)
        if window is not None and not isinstance(window, str):  # kept as the receptive field's growth
            window = (window[0] - 1, window[1] - 1, window[2], window[3])
            if window[0].__class__ is not int or window[1].__class__ is not int:  # an upsampling adaptive pool's
                self.fractional = True  # Fractions (its kernel and stride are both one on that axis)
            if window == (0, 0, 1, 1):  # 1x1, stride 1: widens nothing
                window = None
        op, description, given, made = layer.OP, describe(layer), (n, *shape), (n, *output)
        macs, fvcore, activations = n * macs, n * fvcore, n * math.prod(output)
        once = PER_FORWARD.get(layer.__class__)
        if once is not None:
            macs, fvcore = macs + once(layer), fvcore + once(layer)
        frozen = (op, description, given, made, params, 0, macs, fvcore, 2 * macs, activations)
        trained = (op, description, given, made, params, params, macs, fvcore, 2 * macs, activations) \
            if layer.trainable else frozen
        return (output, window, grid, isinstance(layer, WEIGHT_LAYERS), (frozen, trained))

    def sequential(self, layer: Sequential, state: State, path: tuple[str, ...], trainable: bool) -> State:
        if layer.block_input is not None:
            self.inputs[layer.block_input] = channels(state[0])
        return self.sequence(layer.layers, state, path, trainable, ("." + (layer.block or "sequential"),))

    def auxiliary(self, layer: Auxiliary, state: State, path: tuple[str, ...], trainable: bool) -> State:
        """Its rows, with their shapes and parameters but no cost: it does not run at inference.
        The tensor, its receptive field and the depth go on as they came."""
        start = len(self.rows)
        self.sequence(layer.layers, state, path, trainable, (".auxiliary",))
        self.rows[start:] = [row._replace(macs=0, fvcore_flops=0, torch_flops=0, activations=0)
                             for row in self.rows[start:]]
        return state

    def repeat(self, layer: Repeat, state: State, path: tuple[str, ...], trainable: bool,
               first: int | None = None) -> State:
        """The copies at `path`.0, .1, ...; an inline repeat's at `path`.first, .first + 1, ... in the list at `path`."""
        layers = layer.layers
        if not layers:
            raise SpecError("repeat has no layers")
        outermost = not self.repeating
        if outermost:  # only a repeat multiplies the layers written: bound what it will visit first
            self.repeated += layer.times * count_layers(layers, self.counts)
            if self.repeated > MAX_LAYERS:
                raise SpecError(f"{layer.times:,} copies expand to more than {MAX_LAYERS:,} layers")
        self.repeating = True
        single = len(layers) == 1
        try:
            for copy in range(layer.times):
                key = str(copy if first is None else first + copy)
                state = self.sequence(layers, state, path + (key,), trainable, (".repeat.layers",), single)
        finally:
            self.repeating = not outermost
        return state

    def concat(self, layer: Concat, state: State, path: tuple[str, ...], trainable: bool) -> State:
        if not layer.branches:
            raise SpecError("concat has no branches")
        outs = [
            self.sequence(b, state, path + (str(i),), trainable, (i, ".concat"), len(b) == 1)
            for i, b in enumerate(layer.branches)
        ]
        shapes = [o[0] for o in outs]
        if any(len(s) != len(shapes[0]) or s[1:] != shapes[0][1:] for s in shapes):
            sizes = ", ".join("x".join(map(str, s[1:])) or "flat" for s in shapes)
            raise SpecError(f"concat branches must agree in H x W (and rank), got {sizes}")
        shape = (sum(s[0] for s in shapes), *shapes[0][1:])
        new = _merge(outs, shape)
        self._join(path, "concat", f"concat {len(outs)} branches", state, new)
        return new

    def residual(self, layer: Residual, state: State, path: tuple[str, ...], trainable: bool) -> State:
        body = layer.body
        if not body:
            raise SpecError("residual has an empty body")
        new = self.sequence(body, state, path + ("body",), trainable, (".residual.body",), len(body) == 1)
        short = state
        if layer.shortcut:
            short = self.sequence(layer.shortcut, state, path + ("shortcut",), trainable, (".residual.shortcut",),
                                  len(layer.shortcut) == 1)
        if new[0] != short[0]:
            raise SpecError(f"residual body gives {_dims(new[0])} but the shortcut gives {_dims(short[0])}")
        new = _merge([new, short], new[0])
        self._join(path, "add", "add (projection shortcut)" if layer.shortcut else "add (identity shortcut)", state, new)
        return new

    def gate(self, layer: Gate, state: State, path: tuple[str, ...], trainable: bool) -> State:
        if not layer.layers:
            raise SpecError("gate has no layers")
        scale = self.sequence(layer.layers, state, path, trainable, (".gate",))
        shape, factor = state[0], scale[0]
        if len(factor) != len(shape) or any(f != 1 and f != s for f, s in zip(factor, shape)):
            raise SpecError(f"gate layers give {_dims(factor)}, which does not broadcast over the input {_dims(shape)}")
        # the product keeps the input's positions (grid, stride) and sees what either factor sees, per axis
        widest = (max(state[1][0], scale[1][0]), max(state[1][1], scale[1][1]))
        new = (shape, widest, state[2], state[3], max(state[4], scale[4]))
        self._join(path, "mul", f"mul by {_dims(factor)}", state, new)
        return new

    def _join(self, path, op: str, description: str, before: State, after: State) -> None:
        """The row of a concat, residual add or gate's mul: no parameters, no multiply-adds."""
        n = self.batch
        shape = after[0]
        self.rows.append(_new(Row, (path, op, description, (n, *before[0]), (n, *shape), 0, 0, 0, 0, 0,
                                    n * math.prod(shape), after[1], after[2])))


_COMPOSITES: dict[type[Node], Callable[..., State]] = {  # how the walk visits each composite
    Sequential: _Walker.sequential, Auxiliary: _Walker.auxiliary, Repeat: _Walker.repeat, Concat: _Walker.concat,
    Residual: _Walker.residual, Gate: _Walker.gate,
}


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _merge(states: list[State], shape: tuple[int, ...]) -> State:
    """Join of parallel paths, per axis: the widest receptive field and the largest jump (a 7x1 branch
    beside a 3x3 one sees 7x3; the branches are taken as centred alike, as equal output sizes make
    stride-1 branches), the largest grid a flat input's features index; and the deepest path."""
    rf = (max(s[1][0] for s in states), max(s[1][1] for s in states))
    jump = (max(s[2][0] for s in states), max(s[2][1] for s in states))
    grid = map_grid(shape) or (max(s[3][0] for s in states), max(s[3][1] for s in states))
    return (shape, rf, jump, grid, max(s[4] for s in states))


def _subpixel(value):
    """A fractional jump kept to multiples of 1/SUBPIXEL (rounded up), so that its denominator cannot grow."""
    return subpixel(value) if value.__class__ is not int else value


def _ceil(pair: tuple) -> tuple[int, int]:
    return (math.ceil(pair[0]), math.ceil(pair[1]))


def run(model: Model, *, batch: int = 1, input: tuple[int, ...] | None = None, dtype: str = "float32",
        entering: dict[int, tuple] | None = None) -> Result:
    """Analyse a model spec: every leaf layer's shape and cost, and the totals.

    `entering` (for `archcalc explain`) is filled with each leaf row's layer and what entered it:
    row index -> (layer, input shape, receptive field, stride, grid H x W).
    """
    if not isinstance(model, Model):
        raise SpecError(f"model must be a Model, got {shown(model)}")
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_SIZE:
        raise SpecError(f"batch must be a positive integer, got {shown(batch)}{too_big(batch)}")
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise SpecError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {shown(dtype)}")
    shape = model.input if input is None else input
    if not valid_input(shape):
        raise SpecError(f"input must be C x H x W or F of positive integers, got {shown(shape)}{too_big(shape)}")
    shape = tuple(shape)
    file = model.where.file if model.where else None
    walker = _Walker(batch)
    walker.entering = entering
    walker.resolved_layers = model.resolved_layers
    if model.block_input is not None:
        walker.inputs[model.block_input] = channels(shape)
    try:
        start: State = (shape, (1, 1), (1, 1), shape[1:] if len(shape) == 3 else (1, 1), 0)
        final = walker.sequence(model.layers, start, (), True, ("layers",))
    except SpecError as err:
        trail: list[int | str] | None = getattr(err, "trail", None)
        raise err.located(file=file, path=spell_parts(reversed(trail)) if trail else None) from None
    except RecursionError:
        raise SpecError(f"{model.name} nests composites too deeply", file=file) from None
    rows = tuple(walker.rows)
    if walker.fractional:
        rows = tuple(row._replace(receptive_field=_ceil(row.receptive_field), stride=_ceil(row.stride)) for row in rows)
    size = DTYPE_BYTES[dtype]
    summed = dict.fromkeys(("params", "trainable_params", "macs", "fvcore_flops", "torch_flops", "activations"), 0)
    for name, column in zip(Row._fields, zip(*rows)):
        if name in summed:
            summed[name] = sum(column)
    total = Totals(
        **summed,
        flops=2 * summed["macs"],
        params_bytes=summed["params"] * size,
        activation_bytes=summed["activations"] * size,
        depth=final[4],
        receptive_field=rows[-1].receptive_field if rows else (1, 1),
    )
    groups = cast(tuple[Group, ...], tuple(walker.groups))  # each filled once its composite's walk returned
    return Result(model.name, (batch, *shape), dtype, rows, groups, total, model.description, model.source)
