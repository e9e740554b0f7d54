"""`${...}` arithmetic, `in_channels`, and blocks imported from other files."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archcalc
from archcalc import SpecError
from archcalc.expressions import evaluate, make_divisible, parse


@pytest.mark.parametrize("text, value", [
    ("${c * 6}", 96),
    ("${max(1, c // 4)}", 4),
    ("${k // 2}", 1),
    ("${(c + 2) % 5}", 3),
    ("${c * 0.25}", 4.0),
    ("${c if c > 8 else 8}", 16),
    ("${c > 8 and k == 3}", True),
    ("${not c}", False),
    ("${-k + abs(-2)}", -1),
    ("${ceil(c / 3)}", 6),
    ("${floor(c / 3)}", 5),
    ("${int(7.9)}", 7),
    ("${round(2.5)}", 2),  # Python's round: halves to even
    ("${make_divisible(c * 0.25, 8)}", 8),
    ("${min(c, k, 2)}", 2),
])
def test_expressions_evaluate_like_python(text: str, value) -> None:
    result = evaluate(text, {"c": 16, "k": 3})
    assert result == value and type(result) is type(value)


# torchvision.ops.misc._make_divisible / mobilenetv2._make_divisible, values as torchvision computes them
@pytest.mark.parametrize("args, expected", [
    ((16 * 0.25, 8), 8), ((96 * 0.25, 8), 24), ((32 * 1.0, 8), 32), ((37, 8), 40), ((35.9, 8), 40),
    ((11, 8), 16), ((1280 * 1.2, 8), 1536), ((3, 8, 1), 9), ((0.5, 8, 1), 1),
])
def test_make_divisible_is_torchvisions(args, expected) -> None:
    def torchvision(v, divisor, min_value=None):  # the reference implementation, verbatim
        if min_value is None:
            min_value = divisor
        new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
        if new_v < 0.9 * v:
            new_v += divisor
        return new_v

    assert make_divisible(*args) == torchvision(*args) == expected


@pytest.mark.parametrize("text, reason", [
    ("${c ** 2}", "** is not allowed"),
    ("${c.real}", "attribute access is not allowed"),
    ("${open('x')}", "calling 'open'"),
    ("${[c][0]}", "is not allowed"),
    ("${'a' * 3}", "the literal 'a'"),
    ("${(lambda: 1)()}", "calling anything but a function by name"),
    ("${c // 0}", "divides by zero"),
    ("${c * 10000000000 * 10000000000}", "exceeds"),
    ("${max(c, key=c)}", "keyword argument"),
    ("${c +}", "does not parse"),
    ("${}", "is empty"),
    ("${" + "(" * 240 + "c" + ")" * 240 + "}", "does not parse"),  # too many nested parentheses
    ("${" + "c+" * 400 + "c}", "limited to 500 characters"),
    ("${d}", "unknown name 'd'"),
    ("${x * 2}", "x is [1, 2], not a number"),
])
def test_hostile_or_wrong_expressions_are_one_clear_error(text: str, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        evaluate(text, {"c": 16, "x": [1, 2]})
    assert reason in str(info.value) and "\n" not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="c k 0123456789+-*/%()<>=!.,_abcdefghijklmnopqrstuvwxyz'\"[]{}", max_size=80))
def test_any_text_evaluates_or_is_a_spec_error_quickly(text: str) -> None:
    start = time.perf_counter()
    try:
        evaluate("${" + text + "}", {"c": 16, "k": 3})
    except SpecError:
        pass
    assert time.perf_counter() - start < 0.5


def test_parsed_expressions_are_kept_per_text() -> None:
    assert parse("${c * 2}") is parse("${c * 2}")


SE = """
name: net
input: [16, 8, 8]
defaults: {width: 32}
blocks:
  mbconv:
    params: [expand]
    defaults: {k: 3}
    layers:
      - {conv2d: {out_channels: "${in_channels * expand}", kernel_size: 1}, name: expand}
      - conv2d:
          out_channels: ${in_channels * expand}
          kernel_size: $k
          padding: ${k // 2}
          groups: ${in_channels * expand}
        name: dw
      - {squeeze: {c: "${in_channels}"}, name: se}
  squeeze:
    params: [c]
    layers:
      - {conv2d: {out_channels: "${max(8, c // 4)}", kernel_size: 1}, name: reduce}
      - {conv2d: {out_channels: "${make_divisible(in_channels * 0.25, 8)}", kernel_size: 1}, name: other}
layers:
  - {conv2d: {out_channels: $width, kernel_size: 3, padding: 1}, name: stem}
  - {mbconv: {expand: 6}, name: b1}
  - {mbconv: {expand: 2, k: 5}, name: b2}
"""


def _write(tmp_path, text: str, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_in_channels_is_the_incoming_width_of_the_block_it_is_written_in(tmp_path) -> None:
    result = archcalc.analyze(_write(tmp_path, SE))
    channels = {row.name: row.output_shape[1] for row in result.rows}
    # b1: 32 in, x6; its se's `c` is b1's input (32 // 4 = 8), `other` reads the squeeze block's own input (192)
    assert channels["b1.expand"] == channels["b1.dw"] == 192
    assert channels["b1.se.reduce"] == max(8, 32 // 4) and channels["b1.se.other"] == make_divisible(192 * 0.25, 8)
    # b2 takes b1's output (48 channels), so the same block resolves differently
    assert channels["b2.expand"] == 96 and channels["b2.se.reduce"] == 12 and channels["b2.se.other"] == 24
    assert result.rows[2].description == "conv2d 3x3 p1 g192"


def test_in_channels_follows_the_input_size(tmp_path) -> None:
    path = _write(tmp_path, SE)
    assert archcalc.analyze(path, input=(16, 8, 8)).total.params == archcalc.analyze(path, input=(16, 32, 32)).total.params
    assert archcalc.analyze(path, params={"width": 64}).rows[1].output_shape[1] == 384


def test_in_channels_at_the_top_is_the_models_input(tmp_path) -> None:
    path = _write(tmp_path, "name: n\ninput: [3, 8, 8]\nlayers:\n"
                            "  - {conv2d: {out_channels: '${in_channels * 2}', kernel_size: 1}}\n")
    assert archcalc.analyze(path).rows[0].output_shape == (1, 6, 8, 8)
    assert archcalc.analyze(path, input=(5, 8, 8)).rows[0].output_shape == (1, 10, 8, 8)


def test_in_channels_cannot_be_a_parameter(tmp_path) -> None:
    path = _write(tmp_path, "name: n\ninput: [3, 8, 8]\ndefaults: {in_channels: 3}\nlayers: [relu]\n")
    with pytest.raises(SpecError, match="in_channels is the model's input width"):
        archcalc.load(path)


def test_torch_build_resolves_in_channels_the_same_way(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    path = _write(tmp_path, SE)
    module = archcalc.build_module(path)
    assert sum(p.numel() for p in module.parameters()) == archcalc.analyze(path).total.params
    assert module(torch.zeros(1, 16, 8, 8)).shape == (1, 24, 8, 8)


IMPORTING = """
name: resnext-like
input: [3, 64, 64]
import: [resnet, ./mine.yaml]
layers:
  - {stem: {}, name: stem}
  - {bottleneck_stage: {width: 128, out: 256, more: 1, stride_1x1: 1, stride_3x3: 1, stride: 1}, name: layer1}
  - {se: {}, name: se}
"""
MINE = """
name: unused
input: [3, 8, 8]
blocks:
  se:
    layers:
      - {conv2d: {out_channels: "${in_channels // 4}", kernel_size: 1}, name: fc1}
      - {conv2d: {out_channels: "${in_channels * 4}", kernel_size: 1, stride: 0}, name: fc2}
layers: [relu]
"""


def test_blocks_of_a_builtin_family_and_of_another_file_are_used_without_copying(tmp_path) -> None:
    _write(tmp_path, MINE.replace(", stride: 0", ""), "mine.yaml")
    result = archcalc.analyze(_write(tmp_path, IMPORTING))
    resnet50 = archcalc.analyze("resnet50", input=(3, 64, 64))
    # the stem and a stage are resnet.yaml's own blocks: the same rows as in resnet50
    stem = [r for r in resnet50.rows if r.name.startswith("stem")]
    assert [(r.name, r.params, r.macs) for r in result.rows[:len(stem)]] == [(r.name, r.params, r.macs) for r in stem]
    assert [r.name for r in result.rows][-2:] == ["se.fc1", "se.fc2"]
    assert result.rows[-2].output_shape[1] == 64 and result.rows[-1].output_shape[1] == 1024


def test_an_error_in_an_imported_block_names_that_file(tmp_path) -> None:
    mine = _write(tmp_path, MINE, "mine.yaml")
    with pytest.raises(SpecError) as info:
        archcalc.analyze(_write(tmp_path, IMPORTING))
    assert str(info.value).startswith(f"{mine}:8:") and "stride must be" in str(info.value)
