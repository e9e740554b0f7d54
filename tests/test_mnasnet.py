"""MnasNet's widths (architectures/mnasnet.yaml writes them as make_divisible(base * alpha, 8)) are
torchvision's _get_depths(alpha), read back from the built-ins' rows."""

from __future__ import annotations

import pytest

import archcalc

# torchvision.models.mnasnet: _get_depths's base widths, and each builder's depth multiplier
BASE_WIDTHS = [32, 16, 24, 40, 80, 96, 192, 320]
ALPHAS = {"mnasnet0-5": 0.5, "mnasnet0-75": 0.75, "mnasnet1-0": 1.0, "mnasnet1-3": 1.3}
# _get_depths(alpha), worked out by hand with _round_to_multiple_of(width * alpha, 8): e.g. 0.75 x 40 = 30
# rounds to 32; 1.3 x 16 = 20.8 to 24 (int(20.8 + 4) // 8 * 8 = 24); 0.5 x 16 = 8
DEPTHS = {
    "mnasnet0-5": [16, 8, 16, 24, 40, 48, 96, 160],
    "mnasnet0-75": [24, 16, 24, 32, 64, 72, 144, 240],
    "mnasnet1-0": BASE_WIDTHS,
    "mnasnet1-3": [40, 24, 32, 56, 104, 128, 248, 416],
}


def builtin_widths(name: str) -> list[int]:
    """The stem's two widths, then the width of each stack (its first block's output)."""
    rows = archcalc.analyze(name).rows
    stem = [row.output_shape[1] for row in rows if row.path in (("layers", "0", "0"), ("layers", "4", "0"))]
    stacks = [row.output_shape[1] for row in rows if row.path[2:] == ("first", "4", "0")]
    return stem + stacks


@pytest.mark.parametrize("name", ALPHAS)
def test_widths_are_torchvisions_get_depths(name: str) -> None:
    assert builtin_widths(name) == DEPTHS[name]


@pytest.mark.parametrize("name", ALPHAS)
def test_hand_worked_widths_are_torchvisions_own(name: str, torchvision_models) -> None:
    from torchvision.models.mnasnet import _get_depths

    assert _get_depths(ALPHAS[name]) == DEPTHS[name]
