"""Walk a spec once, in execution order, and count every leaf layer.

Nothing is allocated per element: each layer costs a few integer operations,
whatever the batch and input size.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from archcalc.errors import SpecError, shown
from archcalc.ops import GLOBAL, HANDLERS, Cost, Window, describe
from archcalc.result import DTYPE_BYTES, Group, Result, Row, Totals
from archcalc.spec import Concat, Conv2d, Layers, Linear, Model, Node, Repeat, Residual, Sequential, SpecPath, spell

# Rows and states are made with tuple.__new__: a named tuple's own __new__ is Python code, and
# took an eighth of a GoogLeNet's analysis (py-spy).
_new = tuple.__new__
WEIGHT_LAYERS = (Conv2d, Linear)  # what "depth" counts, as in "VGG-16" and "ResNet-152"
MAX_LAYERS = 100_000  # layers repeats may visit; a spec beyond this is a mistake, and would take long to print


class State(NamedTuple):
    """The tensor flowing between layers (one sample), and its receptive field."""

    shape: tuple[int, ...]
    rf: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)  # cumulative stride, in input pixels
    grid: tuple[int, int] = (1, 1)  # the H x W that the features index (kept through flatten)
    depth: int = 0  # conv/linear layers on the longest path so far


def count_layers(layers: Layers, memo: dict[int, int] | None = None) -> int:
    """Layers the walk will visit for a layer list, composites and every repeat copy included,
    without walking it (a repeat of an empty sequential makes no rows but still takes time)."""
    memo = {} if memo is None else memo
    total = 0
    for layer in layers:
        key = id(layer)
        if key not in memo:
            if isinstance(layer, Sequential):
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
    """Module names for a list of layers: the layer's `name`, else its index."""
    keys = [layer.name or str(i) for i, layer in enumerate(layers)]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        layer = layers[keys.index(dup)]
        raise SpecError(f"two layers in the same list are named {dup!r}", op=layer.OP).located(
            file=layer.where.file if layer.where else None, line=layer.where.line if layer.where else None
        )
    return keys


class Step(NamedTuple):
    """A leaf layer on one input shape, worked out once per analysis: all a row needs but the
    receptive field, which depends on the path taken to the layer."""

    output: tuple[int, ...]
    window: Window | str | None  # the kernel and stride that widen the receptive field, GLOBAL, or None
    grid: tuple[int, int] | None  # the H x W the output's features index; None: the input's
    weighted: bool  # a conv or linear layer (counted in depth)
    op: str
    description: str
    input_shape: tuple[int, ...]  # with the batch
    output_shape: tuple[int, ...]  # with the batch
    params: int
    macs: int  # these four for the whole batch
    fvcore_flops: int
    torch_flops: int
    activations: int


class _Walker:
    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.rows: list[Row] = []
        self.groups: list[Group | None] = []  # in walk order: a composite before what it holds
        # repeat copies and shared blocks share layer objects: work out each (layer, input shape)
        # once per analysis, and name each shared layer list once
        self.steps: dict[tuple[int, tuple[int, ...]], Step] = {}
        self.descriptions: dict[int, str] = {}
        self.repeated = 0  # layers the outermost repeats visit, all told
        self.repeating = False
        self.counts: dict[int, int] = {}
        self.keys: dict[int, list[str]] = {}

    def sequence(self, layers: Layers, state: State, prefix: tuple[str, ...], spec_path: SpecPath,
                 trainable: bool) -> State:
        keys = self.keys.get(id(layers))
        if keys is None:
            keys = self.keys[id(layers)] = child_keys(layers)
        for i, (key, layer) in enumerate(zip(keys, layers)):
            state = self.layer(layer, state, prefix + (key,), (spec_path, i), trainable)
        return state

    def branch(self, layers: Layers, state: State, path: tuple[str, ...], spec_path: SpecPath,
               trainable: bool) -> State:
        """A branch, repeat copy or residual side: a single layer stands at `path` itself."""
        if len(layers) == 1:
            return self.layer(layers[0], state, path, (spec_path, 0), trainable)
        return self.sequence(layers, state, path, spec_path, trainable)

    def layer(self, layer: Node, state: State, path: tuple[str, ...], spec_path: SpecPath, trainable: bool) -> State:
        shape, rf, jump, grid, depth = state
        key = (id(layer), shape)
        step = self.steps.get(key)
        if step is None:
            handler = HANDLERS.get(type(layer))
            if handler is None:
                return self.group(layer, state, path, spec_path, trainable and layer.trainable)
            try:
                step = self.steps[key] = self.step(layer, handler(layer, shape), shape)
            except SpecError as err:
                raise self._locate(err, layer, spec_path) from None
        (output, window, new_grid, weighted, op, description, input_shape, output_shape, params, macs, fvcore_flops,
         torch_flops, activations) = step
        if window is not None:
            kh, kw, sh, sw = (*grid, 1, 1) if isinstance(window, str) else window  # GLOBAL: the whole grid
            rf = (rf[0] + (kh - 1) * jump[0], rf[1] + (kw - 1) * jump[1])
            jump = (jump[0] * sh, jump[1] * sw)
        trainable_params = params if trainable and layer.trainable else 0
        self.rows.append(_new(Row, (path, op, description, input_shape, output_shape, params, trainable_params,
                                    macs, fvcore_flops, torch_flops, activations, rf, jump)))
        return _new(State, (output, rf, jump, grid if new_grid is None else new_grid, depth + weighted))

    def step(self, layer: Node, cost: Cost, shape: tuple[int, ...]) -> Step:
        description = self.descriptions.get(id(layer))
        if description is None:
            description = self.descriptions[id(layer)] = describe(layer)
        n, output = self.batch, cost.output
        grid = output[1:] if len(output) == 3 else (1, 1) if cost.window == GLOBAL else None
        return _new(Step, (
            output, cost.window, grid, isinstance(layer, WEIGHT_LAYERS), layer.OP, description,
            (n, *shape), (n, *output), cost.params, n * cost.macs, n * cost.fvcore, 2 * n * cost.macs,
            n * math.prod(output),
        ))

    def group(self, layer: Node, state: State, path: tuple[str, ...], spec_path: SpecPath, trainable: bool) -> State:
        """A composite: its rows, and a Group spanning them, which goes before its children's groups."""
        start, index = len(self.rows), len(self.groups)
        self.groups.append(None)  # its place, filled once its rows are known
        try:
            new = self.composite(layer, state, path, spec_path, trainable)
        except SpecError as err:
            raise self._locate(err, layer, spec_path) from None
        kind = layer.block if isinstance(layer, Sequential) and layer.block else layer.OP
        self.groups[index] = _new(Group, (path, kind, start, len(self.rows)))
        return new

    def composite(self, layer: Node, state: State, path: tuple[str, ...], spec_path: SpecPath,
                  trainable: bool) -> State:
        if isinstance(layer, Sequential):
            label = layer.block or "sequential"
            return self.sequence(layer.layers, state, path, (spec_path, "." + label), trainable)
        if isinstance(layer, Repeat):
            if not layer.layers:
                raise SpecError("repeat has no layers")
            outermost = not self.repeating
            if outermost:  # only a repeat multiplies the layers written: bound what it will visit first
                self.repeated += layer.times * count_layers(layer.layers, self.counts)
                if self.repeated > MAX_LAYERS:
                    raise SpecError(f"{layer.times:,} copies expand to more than {MAX_LAYERS:,} layers")
            self.repeating = True
            try:
                for copy in range(layer.times):
                    state = self.branch(layer.layers, state, path + (str(copy),), (spec_path, ".repeat.layers"),
                                        trainable)
            finally:
                self.repeating = not outermost
            return state
        if isinstance(layer, Concat):
            return self.concat(layer, state, path, spec_path, trainable)
        if isinstance(layer, Residual):
            return self.residual(layer, state, path, spec_path, trainable)
        raise SpecError(f"{type(layer).__name__} is not a layer archcalc knows")

    def concat(self, layer: Concat, state: State, path, spec_path, trainable) -> State:
        if not layer.branches:
            raise SpecError("concat has no branches")
        outs = [
            self.branch(b, state, path + (str(i),), ((spec_path, ".concat"), i), trainable)
            for i, b in enumerate(layer.branches)
        ]
        shapes = [o.shape for o in outs]
        if any(len(s) != len(shapes[0]) or s[1:] != shapes[0][1:] for s in shapes):
            sizes = ", ".join("x".join(map(str, s[1:])) or "flat" for s in shapes)
            raise SpecError(f"concat branches must agree in H x W (and rank), got {sizes}")
        shape = (sum(s[0] for s in shapes), *shapes[0][1:])
        new = _merge(outs, shape)
        self._join(path, "concat", f"concat {len(outs)} branches", state, new)
        return new

    def residual(self, layer: Residual, state: State, path, spec_path, trainable) -> State:
        if not layer.body:
            raise SpecError("residual has an empty body")
        body = self.branch(layer.body, state, path + ("body",), (spec_path, ".residual.body"), trainable)
        short = state
        if layer.shortcut:
            short = self.branch(layer.shortcut, state, path + ("shortcut",), (spec_path, ".residual.shortcut"),
                                trainable)
        if body.shape != short.shape:
            fmt = lambda s: "x".join(map(str, s))  # noqa: E731
            raise SpecError(f"residual body gives {fmt(body.shape)} but the shortcut gives {fmt(short.shape)}")
        new = _merge([body, short], body.shape)
        kind = "projection" if layer.shortcut else "identity"
        self._join(path, "add", f"add ({kind} shortcut)", state, new)
        return new

    def _join(self, path, op: str, description: str, before: State, after: State) -> None:
        """The row of a concat or residual add: no parameters, no multiply-adds."""
        n = self.batch
        self.rows.append(Row(path, op, description, (n, *before.shape), (n, *after.shape), 0, 0, 0, 0, 0,
                             n * math.prod(after.shape), after.rf, after.jump))

    @staticmethod
    def _locate(err: SpecError, layer: Node, spec_path: SpecPath) -> SpecError:
        where = layer.where
        return err.located(
            file=where.file if where else None, line=where.line if where else None, path=spell(spec_path), op=layer.OP
        )


def _merge(states: list[State], shape: tuple[int, ...]) -> State:
    """Join of parallel paths: the widest receptive field and the deepest path win."""
    widest = max(states, key=lambda s: s.rf[0] * s.rf[1])
    grid = shape[1:] if len(shape) == 3 else widest.grid
    return State(shape, widest.rf, widest.jump, grid, max(s.depth for s in states))


def run(model: Model, *, batch: int = 1, input: tuple[int, ...] | None = None, dtype: str = "float32") -> Result:
    """Analyse a model spec: every leaf layer's shape and cost, and the totals."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise SpecError(f"batch must be a positive integer, got {batch!r}")
    if dtype not in DTYPE_BYTES:
        raise SpecError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    shape = tuple(input) if input is not None else model.input
    if not (len(shape) in (1, 3) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)):
        raise SpecError(f"input must be C x H x W or F of positive integers, got {shown(shape)}")
    file = model.where.file if model.where else None
    walker = _Walker(batch)
    try:
        start = State(shape, grid=shape[1:] if len(shape) == 3 else (1, 1))
        final = walker.sequence(model.layers, start, (), (None, "layers"), True)
    except SpecError as err:
        raise err.located(file=file) from None
    except RecursionError:
        raise SpecError(f"{model.name} nests composites too deeply", file=file) from None
    rows = tuple(walker.rows)
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
        depth=final.depth,
        receptive_field=rows[-1].receptive_field if rows else (1, 1),
    )
    groups = tuple(g for g in walker.groups if g is not None)  # all are filled once the walk ends
    return Result(model.name, (batch, *shape), dtype, rows, groups, total, model.description, model.source)
