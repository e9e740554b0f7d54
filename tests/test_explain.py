"""`archcalc explain`: for every layer of every built-in, the explained numbers are the table's, and
every formula it prints evaluates to the number it states."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import archcalc
from archcalc.cli import app
from archcalc.explain import Explanation, UnknownLayerError, explain, to_markdown
from archcalc.registry import load
from archcalc.spec import AdaptiveAvgPool2d, Conv2d, MaxPool2d, Model, ReLU

runner = CliRunner()


def evaluate(formula: str) -> int:
    """A formula as `explain` writes it, computed: · × − ⌊a / b⌋ ⌈a / b⌉, `bias` and thousands commas."""
    expr = formula.replace("·", "*").replace("−", "-").replace(",", "").replace(" bias", "")
    expr = re.sub(r"⌊(.*?) / (\d+)⌋", r"((\1) // \2)", expr)
    expr = re.sub(r"⌈(.*?) / (\d+)⌉", r"(-(-(\1) // \2))", expr)
    assert re.fullmatch(r"[\d\s()+*/-]+", expr), expr
    return eval(expr)


def assert_worked_out(e: Explanation) -> None:
    for line in e.lines:
        if line.formula:
            assert evaluate(line.formula) == line.value, f"{e.name}: {line}"


def assert_matches(e: Explanation, row) -> None:
    assert (e.name, e.input_shape, e.output_shape) == (row.name, row.input_shape, row.output_shape)
    assert (e.params, e.macs, e.flops, e.fvcore_flops) == (row.params, row.macs, row.torch_flops, row.fvcore_flops)
    assert (e.receptive_field, e.stride) == (row.receptive_field, row.stride), e.name
    assert_worked_out(e)


@pytest.mark.parametrize("name", archcalc.list_models())
def test_every_layer_of_every_builtin_is_explained_as_the_table_has_it(name: str) -> None:
    model = load(name)
    result = archcalc.analyze(name)
    explained = explain(model)
    assert len(explained) == len(result.rows)
    for e, row in zip(explained, result.rows):
        assert_matches(e, row)
    # folded as `table --depth 1`: a composite is the sum of its rows
    for e, row in zip(explain(model, depth=1), result.fold(1)):
        assert_matches(e, row)


def test_dilation_ceil_mode_same_padding_adaptive_pooling_and_batch() -> None:
    model = Model(name="odd", input=(3, 5, 5), layers=[
        MaxPool2d(kernel_size=3, stride=3, padding=1, ceil_mode=True),  # ceil mode drops a window: 2, not 3
        Conv2d(out_channels=4, kernel_size=3, padding="same"),
        Conv2d(out_channels=6, kernel_size=2, dilation=2, padding=1, groups=2, bias=False),
        ReLU(),
        AdaptiveAvgPool2d(output_size=(3, 2)),
    ])
    result = archcalc.analyze(model, batch=2)
    explained = explain(model, batch=2)
    for e, row in zip(explained, result.rows):
        assert_matches(e, row)
    pool, same, dilated, relu, adaptive = explained
    assert pool.lines[0].formula == "⌈(5 + 2·1 − 3) / 3⌉ + 1 − 1" and "drops the last window" in pool.lines[0].note
    assert "'same'" in same.lines[0].note
    assert dilated.lines[0].formula == "⌊(2 + 2·1 − 2·(2 − 1) − 1) / 1⌋ + 1" and "dilation 2" in dilated.lines[0].note
    assert "groups 2: each filter sees 4 / 2 = 2" in next(l.note for l in dilated.lines if l.what == "params")
    assert any(l.what == "MACs, batch 2" for l in dilated.lines)
    assert relu.params == relu.macs == 0
    assert "adaptive" in adaptive.lines[0].note


def test_layers_by_path_or_unique_end() -> None:
    model = load("resnet18")
    [e] = explain(model, ["layer4.rest.0.residual.body.conv2"])
    assert e.name.startswith("layer4.rest.0.residual.body.conv2")
    assert [x.name for x in explain(load("alexnet"), ["fc6"])] == ["classifier.fc6"]
    with pytest.raises(UnknownLayerError, match="ends 17 layer paths"):
        explain(model, ["relu"])
    with pytest.raises(UnknownLayerError, match="did you mean conv1"):
        explain(load("alexnet"), ["cnv1"])
    [stage] = explain(model, ["layer1"])  # a composite: the sum of its rows
    assert stage.params == sum(r.params for r in archcalc.analyze("resnet18").rows if r.name.startswith("layer1."))


def test_cli_shows_the_arithmetic() -> None:
    result = runner.invoke(app, ["explain", "alexnet", "conv1", "pool1"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("⌊(224 + 2·1 − 11) / 4⌋ + 1 = 54", "96 · (1 · 11 · 11) + 96 bias = 11,712",
                 "96 · 54 · 54 · (1 · 11 · 11) = 33,872,256", "11 + (3 − 1) · 4 = 19"):
        assert text in out
    md = runner.invoke(app, ["explain", "alexnet", "conv1", "--format", "markdown"]).stdout
    assert md == to_markdown(explain(load("alexnet"), ["conv1"])) and "| params | 96 · (1 · 11 · 11)" in md
    bad = runner.invoke(app, ["explain", "alexnet", "cnv1"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: alexnet has no layer 'cnv1' (did you mean conv1?)")


def test_shell_completion_offers_layer_names() -> None:
    env = {**os.environ, "_ARCHCALC_COMPLETE": "complete_bash", "COMP_WORDS": "archcalc explain alexnet classifier.f",
           "COMP_CWORD": "3"}
    done = subprocess.run([sys.executable, "-m", "archcalc"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["classifier.fc6", "classifier.fc7", "classifier.fc8"]


def test_an_op_without_its_own_explanation_gets_its_handlers_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    # as a newly added op would: no EXPLANATIONS entry, yet output sizes (from output_size) and numbers
    monkeypatch.setattr("archcalc.explain.EXPLANATIONS", {})
    for name in ("alexnet-paper", "googlenet-torchvision", "resnet50"):
        for e, row in zip(explain(load(name)), archcalc.analyze(name).rows):
            assert_matches(e, row)
    conv1 = explain(load("alexnet"), ["conv1"])[0]
    assert conv1.lines[0].formula == "⌊(224 + 2·1 − 11) / 4⌋ + 1"
    assert next(l for l in conv1.lines if l.what == "params").value == 11_712


def test_an_auxiliary_head_is_explained_with_its_parameters_and_no_cost() -> None:
    """As the table has it: an auxiliary's layers keep their shapes and parameters, and cost nothing."""
    from archcalc.spec import Auxiliary, Flatten, Linear

    head = [AdaptiveAvgPool2d(output_size=1), Flatten(), Linear(out_features=10)]
    model = Model(name="aux", input=(3, 16, 16), layers=[Conv2d(out_channels=8, kernel_size=3),
                                                          Auxiliary(layers=head), ReLU()])
    result = archcalc.analyze(model)
    explained = explain(model)
    for e, row in zip(explained, result.rows):
        assert_matches(e, row)
    pool, _, fc = explained[1:4]
    assert (fc.params, fc.macs, fc.flops) == (8 * 10 + 10, 0, 0)
    assert [line.what for line in fc.lines][:2] == ["params", "MACs, FLOPs"]
    assert "does not run at inference" in fc.lines[1].note
    assert pool.lines[1].what == "params, MACs, FLOPs" and pool.lines[1].value == 0
