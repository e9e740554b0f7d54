"""`archcalc explain`: for every layer of every built-in, the explained numbers are the table's, and
every formula it prints evaluates to the number it states."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import archcalc
from archcalc.cli import app
from archcalc.explain import Explanation, UnknownLayerError, conventions, explain, to_markdown
from archcalc.loader import SpecFile
from archcalc.registry import load
from archcalc.spec import AdaptiveAvgPool2d, Conv2d, MaxPool2d, Model, ReLU
from archcalc.yamlfile import parse
from spec_strategies import valid_specs

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
    assert md == to_markdown(explain(load("alexnet"), ["conv1"])) + "\n" + conventions()
    assert "| params | 96 · (1 · 11 · 11)" in md and out.endswith("\n\n" + conventions())
    assert "MACs: multiply-accumulates of conv2d, linear and attention's matmuls" in conventions()  # said once
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


def _lines(e: Explanation) -> dict[str, str]:
    """`what` -> `formula = value` as printed."""
    return {line.what: f"{line.formula} = {line.value:,}" if line.formula else f"{line.value:,}" for line in e.lines}


@pytest.mark.parametrize("name", archcalc.list_models())
def test_every_op_that_costs_or_changes_the_shape_works_it_out(name: str) -> None:
    # a leaf row with params, MACs or a new shape gets its op's own arithmetic, and its MACs as a product
    from archcalc.analysis import run
    from archcalc.ops import EXPLANATIONS

    model = load(name)
    entering: dict[int, tuple] = {}
    run(model, entering=entering)
    explained = explain(model)
    for i, (layer, shape, *_) in entering.items():
        e = explained[i]
        if e.params or e.macs or e.output_shape[1:] != shape:
            assert layer.__class__ in EXPLANATIONS, f"{name}: {layer.OP} has no explanation"
        if e.macs:
            assert next(line for line in e.lines if line.what == "MACs").formula, e.name


def test_attention_shows_its_projections_and_both_matmuls() -> None:
    [mha] = explain(load("vit-b-16"), ["encoder.layers.0.attention.body.self_attention"])
    lines = _lines(mha)
    assert lines["params"] == "4 · 768 · 768 + 4 · 768 bias = 2,362,368"
    assert lines["MACs Q, K, V, out"] == "4 · 197 · 768 · 768 = 464,781,312"
    assert lines["MACs Q·Kᵀ"] == lines["MACs attention·V"] == "197 · 197 · 768 = 29,805,312"
    assert lines["MACs"] == "464,781,312 + 29,805,312 + 29,805,312 = 524,391,936"
    # Swin at 200 x 168: stage 1 is 50 x 42, padded to whole 7 x 7 windows
    [swin] = explain(load("swin-t"), ["features.1.0.0.0.attention.body.attn"], input=(3, 200, 168))
    lines = _lines(swin)
    assert lines["padded H"] == "⌈50 / 7⌉ · 7 = 56" and lines["windows"] == "8 · 6 = 48"
    assert lines["params"] == "4 · 96 · 96 + 3 · 96 + 96 + 13 · 13 · 3 = 37,755"
    assert lines["MACs Q·Kᵀ"] == "48 · 49 · 49 · 96 = 11,063,808"
    # Swin V2: the bias MLP's parameters, and its MACs once per forward whatever the batch
    [v2] = explain(load("swin-v2-t"), ["features.1.0.0.1.attention.body.attn"], batch=2)
    lines = _lines(v2)
    assert lines["params"] == "4 · 96 · 96 + 3 · 96 + 96 + 3 + 2 · 512 + 512 + 512 · 3 = 40,323"
    assert lines["MACs once per forward"] == "15 · 15 · (2 · 512 + 512 · 3) = 576,000"
    assert lines["MACs in all"] == f"{2 * 201_326_592:,} + 576,000 = {2 * 201_326_592 + 576_000:,}"


def test_tokens_norms_and_channel_ops_show_their_arithmetic() -> None:
    vit = {e.name: _lines(e) for e in explain(load("vit-b-16"), ["tokens", "class_token", "encoder.pos_embedding",
                                                                  "encoder.ln", "class_token_out"])}
    assert vit["tokens"]["tokens N"] == "14 · 14 = 196"
    assert vit["class_token"]["tokens N"] == "196 + 1 = 197" and vit["class_token"]["params"] == "768"
    assert vit["encoder.pos_embedding"]["params"] == "197 · 768 = 151,296"
    assert vit["encoder.ln"]["params"] == "2 · 768 = 1,536" and vit["encoder.ln"]["fvcore"] == "197 · 768 · 5 = 756,480"
    assert vit["class_token_out"]["output"] == "768"
    shuffle = {e.name: _lines(e) for e in explain(load("shufflenet-v2-x1-0"), ["stage2.rest.0.branches.0",
                                                                               "stage2.rest.0.shuffle"])}
    assert shuffle["stage2.rest.0.branches.0"]["part size"] == "⌈116 / 2⌉ = 58"
    assert shuffle["stage2.rest.0.shuffle"]["channels per group"] == "116 / 2 = 58"
    [merge] = explain(load("swin-t"), ["features.2.merge"])
    assert _lines(merge)["output C"] == "4 · 96 = 384" and _lines(merge)["output H, W"] == "⌈56 / 2⌉ = 28"
    [pad] = explain(load("resnet20"), ["layer2.first.residual.shortcut.pad"])
    assert _lines(pad)["output C"] == "16 + 16 = 32"
    [pool] = explain(load("alexnet"), ["pool1"])
    assert _lines(pool)["windows"] == "96 · 26 · 26 = 64,896"
    [flatten] = explain(load("alexnet"), ["flatten"])
    assert _lines(flatten)["output"] == "256 · 5 · 5 = 6,400"


def test_joins_show_how_their_paths_meet() -> None:
    # a composite named by its path shows its join's arithmetic above the sums of its rows
    [inception] = explain(load("googlenet"), ["inception3a.branches"])
    assert _lines(inception)["output channels"] == "64 + 128 + 32 + 32 = 256"
    rows = {e.name: e for e in explain(load("mobilenet-v3-small"))}
    gate = rows["features.1.block.1.se"]  # the mul row, in the full listing
    assert gate.description == "mul by 16x1x1" and "16x1x1 factor (broadcast" in gate.lines[0].note
    assert _lines(gate)["output values"] == "16 · 56 · 56 = 50,176"
    residual = next(e for e in explain(load("resnet18")) if e.description == "add (identity shortcut)")
    assert _lines(residual)["output values"] == "64 · 56 · 56 = 200,704"


def test_on_a_terminal_long_lines_break_between_words_to_its_width() -> None:
    from archcalc.explain import to_text

    explained = explain(load("swin-v2-t"), ["features.1.0.0.1.attention.body.attn", "features.0.2"])
    whole = to_text(explained)  # piped: one line per number, however long
    assert max(map(len, whole.splitlines())) > 120
    for width in (80, 100, 120):
        text = to_text(explained, width)
        assert max(map(len, text.splitlines())) <= width
        assert text.split() == whole.split()  # the same words, numbers never cut
    assert runner.invoke(app, ["explain", "swin-v2-t", "features.0.2"]).stdout == to_text(explained[1:]) + "\n" + conventions()


def test_an_auxiliary_head_has_its_parameters_and_no_cost_as_the_table() -> None:
    from archcalc.spec import Auxiliary, Flatten, Gate, Linear, Sigmoid

    model = Model(name="heads", input=(3, 16, 16), layers=[
        Conv2d(out_channels=8, kernel_size=3, padding=1),
        Auxiliary(name="aux", layers=[AdaptiveAvgPool2d(output_size=1), Flatten(), Linear(out_features=10)]),
        ReLU(),
        Gate(name="se", layers=[AdaptiveAvgPool2d(output_size=1), Conv2d(out_channels=8, kernel_size=1), Sigmoid()]),
    ])
    result = archcalc.analyze(model, batch=3)
    explained = explain(model, batch=3)
    for e, row in zip(explained, result.rows):
        assert_matches(e, row)
    head = next(e for e in explained if e.name == "aux.2")
    assert _lines(head)["params"] == "8 · 10 + 10 bias = 90" and head.macs == 0
    [aux] = explain(model, ["aux"], batch=3)
    assert aux.macs == 0 and "FLOPs" not in _lines(aux)


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=valid_specs(), batch=st.integers(1, 3))
def test_random_specs_are_explained_as_the_table_has_them(spec, batch) -> None:
    # every op and composite the random-spec generator makes (tests/spec_strategies.py), at any batch
    model = SpecFile("random.yaml", parse(yaml.safe_dump(spec, sort_keys=False), "random.yaml")).model()
    result = archcalc.analyze(model, batch=batch)
    explained = explain(model, batch=batch)
    assert len(explained) == len(result.rows)
    for e, row in zip(explained, result.rows):
        assert_matches(e, row)


GOLDEN = Path(__file__).parent / "golden"
# one layer (or composite) of each kind of op, from the built-ins that have them
EXPLAINED_OPS = {
    "alexnet": ["conv1", "pool1", "flatten", "fc6"],
    "vit-b-16": ["tokens", "class_token", "encoder.pos_embedding", "encoder.layers.0.attention.body.ln_1",
                 "encoder.layers.0.attention.body.self_attention", "class_token_out"],
    "swin-v2-t": ["features.0.1", "features.1.0.0.1.attention.body.attn", "features.2.merge"],
    "convnext-tiny": ["features.1.0.0.residual.body.layer_scale", "features.1.0.0.residual"],
    "shufflenet-v2-x1-0": ["stage2.rest.0.branches.1.0", "stage2.rest.0.branches", "stage2.rest.0.shuffle"],
    "mobilenet-v3-small": ["features.1.block.1.se"],
    "googlenet-torchvision": ["inception3a.branches"],
    "resnet20": ["layer2.first.residual.shortcut.pad"],
    "maxvit-t": ["blocks.0.0.window_attention.attn_layer.body.attention"],
    "inception-v3": ["AuxLogits.head.conv0.unit.conv"],  # an auxiliary head's layer: parameters, no cost
}


@pytest.mark.parametrize("suffix", ["txt", "80.txt", "md"])
def test_explained_ops_golden(suffix: str, update_golden: bool) -> None:
    from archcalc.explain import to_text

    explained = [e for model, names in EXPLAINED_OPS.items() for e in explain(load(model), names)]
    out = {"txt": to_text(explained), "80.txt": to_text(explained, 80), "md": to_markdown(explained)}[suffix]
    path = GOLDEN / f"explain_ops.{suffix}"
    if update_golden:
        path.write_text(out)
    assert out == path.read_text(), f"{path.name} changed: review, then rerun with pytest --update-golden"


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
