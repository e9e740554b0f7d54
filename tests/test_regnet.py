"""RegNet's stage tables (architectures/regnet.yaml lists them as data) are torchvision's: each is
recomputed here from its builder's four numbers by BlockParams.from_init_params's algorithm, in pure
Python, and read back from the built-in's rows: blocks per stage, width, group width of the 3x3,
and (RegNetY) the squeeze width."""

from __future__ import annotations

import itertools
import math

import pytest

import archcalc
from archcalc.expressions import make_divisible

# torchvision.models.regnet: each builder's BlockParams.from_init_params(depth, w_0, w_a, w_m, group_width)
# (the Y builders add se_ratio=0.25; none sets the bottleneck multiplier, so it is 1)
BUILDERS = {
    "regnet-y-400mf": (16, 48, 27.89, 2.09, 8),
    "regnet-y-800mf": (14, 56, 38.84, 2.4, 16),
    "regnet-y-1-6gf": (27, 48, 20.71, 2.65, 24),
    "regnet-y-3-2gf": (21, 80, 42.63, 2.66, 24),
    "regnet-y-8gf": (17, 192, 76.82, 2.19, 56),
    "regnet-y-16gf": (18, 200, 106.23, 2.48, 112),
    "regnet-y-32gf": (20, 232, 115.89, 2.53, 232),
    "regnet-y-128gf": (27, 456, 160.83, 2.52, 264),
    "regnet-x-400mf": (22, 24, 24.48, 2.54, 16),
    "regnet-x-800mf": (16, 56, 35.73, 2.28, 16),
    "regnet-x-1-6gf": (18, 80, 34.01, 2.25, 24),
    "regnet-x-3-2gf": (25, 88, 26.31, 2.25, 48),
    "regnet-x-8gf": (23, 80, 49.56, 2.88, 120),
    "regnet-x-16gf": (22, 216, 55.59, 2.1, 128),
    "regnet-x-32gf": (23, 320, 69.86, 2.0, 168),
}
STEM_WIDTH = 32
SE_RATIO = 0.25


def stage_table(depth: int, w_0: int, w_a: float, w_m: float, group_width: int) -> list[tuple[int, int, int]]:
    """(blocks, width, group width) per stage, as BlockParams.from_init_params computes them.

    Block j's width w_0 + j * w_a is snapped to w_0 * w_m^e, e = round(log((w_0 + j * w_a) / w_0) / log(w_m)),
    and rounded to a multiple of 8; runs of blocks of one width are the stages. Then
    _adjust_widths_groups_compatibilty caps each group width at its stage's width and makes the width
    divisible by it. torchvision computes in float32, this in float64; Python's round and torch.round
    both round halves to even (regnet_x_1_6gf's 80 * 2.25 / 8 = 22.5 is one).
    """
    exponents = [round(math.log((w_0 + j * w_a) / w_0) / math.log(w_m)) for j in range(depth)]
    block_widths = [round(w_0 * w_m**e / 8) * 8 for e in exponents]
    table = []
    for width, run in itertools.groupby(block_widths):
        group = min(group_width, width)
        table.append((len(list(run)), make_divisible(width, group), group))
    return table


def builtin_table(name: str) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """The built-in's (blocks, width, group width) per stage, read from its grouped 3x3 convs, and
    (block input width, squeeze width) of every squeeze-and-excitation."""
    stages: dict[str, list[tuple[int, int]]] = {}
    squeezes, block_input = [], 0
    for row in archcalc.analyze(name).rows:
        if row.path[-2:] == ("a", "0"):  # a block's first 1x1 sees the block's input
            block_input = row.input_shape[1]
        elif row.path[-2:] == ("b", "0"):  # the 3x3: width x (width / groups) x 9 weights
            width = row.output_shape[1]
            stages.setdefault(row.path[1], []).append((width, row.params // (9 * width)))
        elif row.path[-3:] == ("se", "gate", "fc1"):
            squeezes.append((block_input, row.output_shape[1]))
    table = []
    for blocks in stages.values():
        assert len(set(blocks)) == 1, f"a stage's blocks differ: {blocks}"
        table.append((len(blocks), *blocks[0]))
    return table, squeezes


@pytest.mark.parametrize("name", BUILDERS)
def test_stage_table_is_torchvisions_quantized_widths(name: str) -> None:
    table, squeezes = builtin_table(name)
    assert table == stage_table(*BUILDERS[name])
    first_widths = [STEM_WIDTH] + [width for _, width, _ in table[:-1]]  # each stage's first block input
    expected = [] if "-x-" in name else [
        (w_in, int(round(SE_RATIO * w_in)))
        for (blocks, width, _), stage_in in zip(table, first_widths)
        for w_in in [stage_in] + [width] * (blocks - 1)
    ]
    assert squeezes == expected


def test_a_stage_can_have_one_block_and_a_group_width_can_be_capped() -> None:
    # regnet-x-400mf's first stage is one block (its `rest` repeats 0 times); regnet-x-8gf's is 80 wide,
    # below its group width 120: one group of 80
    assert stage_table(*BUILDERS["regnet-x-400mf"])[0] == (1, 32, 16)
    assert builtin_table("regnet-x-8gf")[0][0] == (2, 80, 80)


@pytest.mark.parametrize("name", BUILDERS)
def test_pure_python_table_is_torchvisions_own(name: str, torchvision_models) -> None:
    from torchvision.models.regnet import BlockParams

    depth, w_0, w_a, w_m, group_width = BUILDERS[name]
    params = BlockParams.from_init_params(depth=depth, w_0=w_0, w_a=w_a, w_m=w_m, group_width=group_width)
    assert stage_table(*BUILDERS[name]) == list(zip(params.depths, params.widths, params.group_widths))
