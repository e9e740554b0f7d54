"""The receptive field against brute force: which input positions each output position can reach.

The brute force follows every output position back through every layer, one axis at a time (conv,
pooling and adaptive pooling act on H and W separately), and takes the widest span over the output
positions. Padding counts, as the calculator says: a position in a layer's padding stands where the
layer before would have put its next output, so a window reaching into padding reaches on into the
input's own padding. For conv and pooling windows, and for joins of branches centred alike, the
calculator's figure is exactly this; through an adaptive pool that does not divide its input evenly
it is an upper bound (bins of uneven width and step), and never compounds (an upsampling pool).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archcalc
from archcalc import (
    AdaptiveAvgPool2d, AvgPool2d, Concat, Conv2d, Flatten, Linear, MaxPool2d, Model, ReLU, Residual, SpecError,
)
from archcalc.ops import output_size

# A layer on one axis, as the brute force sees it: ("window", kernel, stride, padding, dilation, ceil_mode),
# ("adaptive", out), ("join", [branch, ...]) with each branch a list of layers, ("global",) for flatten + linear.


def span(layers: list, size: int) -> tuple[int, bool]:
    """The widest span of input positions an output position reaches, and whether the layers are ones
    the calculator must match exactly (no adaptive pool that divides unevenly or upsamples)."""
    positions, size, exact = _reach(layers, lambda x: (x, x), size)
    lows_highs = [positions(q) for q in range(size)]
    return max(high - low + 1 for low, high in lows_highs), exact


def _reach(layers, before, size):
    """(position -> (lowest, highest) input position it reaches, for any integer position; output size;
    whether exact)."""
    exact = True
    for layer in layers:
        kind = layer[0]
        if kind == "window":
            _, k, s, p, d, ceil = layer
            before = _window(before, k, s, p, d)
            size = output_size(size, k, s, p, d, ceil)
        elif kind == "adaptive":
            out = layer[1]
            before = _adaptive(before, size, out)
            exact = exact and out <= size and size % out == 0
            size = out
        elif kind == "join":
            reached = [_reach(branch, before, size) for branch in layer[1]]
            assert len({r[1] for r in reached}) == 1, "branches agree in size"
            before = _union([r[0] for r in reached])
            size = reached[0][1]
            exact = exact and all(r[2] for r in reached)
        else:  # global: every position of the grid
            grid, previous = size, before
            before = lambda q, grid=grid, previous=previous: _hull(previous(x) for x in range(grid))  # noqa: E731
            size = 1
    return before, size, exact


def _hull(spans) -> tuple[int, int]:
    spans = list(spans)
    return min(s[0] for s in spans), max(s[1] for s in spans)


def _window(before, k, s, p, d):
    return lru_cache(maxsize=None)(lambda q: _hull(before(q * s - p + d * j) for j in range(k)))


def _adaptive(before, n, o):
    # torch's bins, start floor(i*n/o) and end ceil((i+1)*n/o), taken for every integer i
    return lru_cache(maxsize=None)(lambda i: _hull(before(x) for x in range(i * n // o, -(-(i + 1) * n // o))))


def _union(reaches):
    return lru_cache(maxsize=None)(lambda q: _hull(r(q) for r in reaches))


# ---- random specs, the same layers for both axes' brute force and for the calculator -------------


@st.composite
def window_layer(draw, size_h: int, size_w: int):
    op = draw(st.sampled_from(["conv2d", "maxpool2d", "avgpool2d"]))
    axes = []
    for n in (size_h, size_w):
        k = draw(st.integers(1, 5))
        d = draw(st.integers(1, 3)) if op != "avgpool2d" else 1
        p = draw(st.integers(0, k // 2 if op != "conv2d" else 3))
        s = draw(st.integers(1, 3))
        if d * (k - 1) + 1 > n + 2 * p:
            k, d, p = 1, 1, 0
        axes.append((k, s, p, d))
    ceil = op != "conv2d" and draw(st.booleans())
    (kh, sh, ph, dh), (kw, sw, pw, dw) = axes
    args = dict(kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw))
    if op == "conv2d":
        node = Conv2d(out_channels=4, dilation=(dh, dw), **args)
    elif op == "maxpool2d":
        node = MaxPool2d(dilation=(dh, dw), ceil_mode=ceil, **args)
    else:
        node = AvgPool2d(ceil_mode=ceil, **args)
    return node, [("window", k, s, p, d, ceil) for k, s, p, d in axes]


@st.composite
def centred_branch(draw, channels: int):
    """1-2 stride-1 convs that keep the size and stay centred (odd kernels, padding half the dilated
    kernel), ending with `channels` channels."""
    nodes, axes = [], ([], [])
    for _ in range(draw(st.integers(1, 2))):
        ks = (draw(st.sampled_from([1, 3, 5, 7])), draw(st.sampled_from([1, 3, 5, 7])))
        ds = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        pads = tuple(d * (k - 1) // 2 for k, d in zip(ks, ds))
        nodes.append(Conv2d(out_channels=channels, kernel_size=ks, padding=pads, dilation=ds))
        for axis in (0, 1):
            axes[axis].append(("window", ks[axis], 1, pads[axis], ds[axis], False))
    return nodes, axes


@st.composite
def random_spec(draw):
    h, w = draw(st.integers(4, 16)), draw(st.integers(4, 16))
    nodes: list = []
    axes: tuple[list, list] = ([], [])
    sizes = [h, w]
    channels = 2
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["window", "window", "adaptive", "join", "residual"]))
        if kind == "window":
            node, per_axis = draw(window_layer(*sizes))
            try:
                sizes = [output_size(n, k, s, p, d, c) for n, (_, k, s, p, d, c) in zip(sizes, per_axis)]
            except SpecError:
                continue
            nodes.append(node)
            channels = 4 if isinstance(node, Conv2d) else channels
        elif kind == "adaptive":
            outs = (draw(st.integers(1, sizes[0] * 3)), draw(st.integers(1, sizes[1] * 3)))
            nodes.append(AdaptiveAvgPool2d(output_size=outs))
            per_axis = [("adaptive", outs[0]), ("adaptive", outs[1])]
            sizes = list(outs)
        else:
            branches = [draw(centred_branch(channels)) for _ in range(draw(st.integers(1, 3)))]
            if kind == "join":
                channels *= len(branches)
                nodes.append(Concat(branches=[b[0] for b in branches]))
                per_axis = [("join", [b[1][axis] for b in branches]) for axis in (0, 1)]
            else:  # body, and a shortcut (the identity, or a branch)
                shortcut = branches[1][0] if len(branches) > 1 else []
                nodes.append(Residual(body=branches[0][0], shortcut=shortcut))
                per_axis = [("join", [branches[0][1][axis], branches[1][1][axis] if shortcut else []])
                            for axis in (0, 1)]
        axes[0].append(per_axis[0])
        axes[1].append(per_axis[1])
    if draw(st.booleans()):
        nodes += [ReLU(), Flatten(), Linear(out_features=3)]
        axes[0].append(("global",))
        axes[1].append(("global",))
    return Model(name="random", input=(2, h, w), layers=nodes), axes  # channels grow at most 2 * 3**6


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_spec())
def test_receptive_field_matches_brute_force(case) -> None:
    model, axes = case
    calculated = archcalc.analyze(model).total.receptive_field
    for axis, layers in enumerate(axes):
        brute, exact = span(layers, model.input[1 + axis])
        if exact:
            assert calculated[axis] == brute, (axis, layers)
        else:  # an upper bound (how far above: test_upsampling_adaptive_pool_does_not_compound)
            assert calculated[axis] >= brute, (axis, layers)


def test_a_join_takes_the_widest_extent_per_axis() -> None:
    model = Model(name="join", input=(1, 16, 16), layers=[
        Concat(branches=[[Conv2d(out_channels=1, kernel_size=(7, 1), padding=(3, 0))],
                         [Conv2d(out_channels=1, kernel_size=3, padding=1)]]),
        Residual(body=[Conv2d(out_channels=2, kernel_size=(1, 5), padding=(0, 2))]),
    ])
    rows = archcalc.analyze(model).rows
    assert rows[2].receptive_field == (7, 3)  # the concat: 7 high (first branch), 3 wide (second)
    assert rows[-1].receptive_field == (7, 7)  # the add: 1x5 more on the 7x3


@pytest.mark.parametrize("n, out", [(10**5, 99_991), (5000, 4999), (4097 * 3, 4097), (7, 3), (5, 3)])
def test_adaptive_pool_widest_bin_over_every_bin(n: int, out: int) -> None:
    row = archcalc.analyze(Model(name="a", input=(1, n, 1), layers=[AdaptiveAvgPool2d(output_size=(out, 1))])).rows[0]
    widest = max(-(-(i + 1) * n // out) - (i * n // out) for i in range(out))
    assert row.receptive_field[0] == widest


def squeeze_excite_stack(blocks: int) -> Model:
    """Each block: a 3x3 conv, then x + (x pooled to 1x1 and spread back to 8x8), as an SE block multiplies."""
    block = [Conv2d(out_channels=4, kernel_size=3, padding=1),
             Residual(body=[AdaptiveAvgPool2d(output_size=1), Conv2d(out_channels=4, kernel_size=1),
                            AdaptiveAvgPool2d(output_size=8)])]
    return Model(name="se", input=(4, 8, 8), layers=block * blocks)


def test_upsampling_adaptive_pool_does_not_compound() -> None:
    fields = [archcalc.analyze(squeeze_excite_stack(b)).total.receptive_field[0] for b in range(1, 13)]
    brute = [span([("window", 3, 1, 1, 1, False), ("join", [[("adaptive", 1), ("adaptive", 8)], []])] * b, 8)[0]
             for b in range(1, 13)]
    assert all(f >= b for f, b in zip(fields, brute))
    steps = {b - a for a, b in zip(fields, fields[1:])}
    assert max(steps) <= 2 * 8 + 2, fields  # grows by a few pooled grids per block, not by a factor


def test_fractional_jumps_are_rounded_up_in_rows() -> None:
    model = Model(name="up", input=(1, 3, 3), layers=[AdaptiveAvgPool2d(output_size=7), MaxPool2d(kernel_size=2)])
    rows = archcalc.analyze(model).rows
    assert all(isinstance(v, int) for row in rows for v in (*row.receptive_field, *row.stride))
    assert rows[0].stride == (1, 1)  # 3/7 of an input pixel, rounded up
    assert Fraction(3, 7) < 1
