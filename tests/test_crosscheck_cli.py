"""`archcalc crosscheck` through typer's CliRunner: the table, --all, JSON, exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from typer.testing import CliRunner

import archcalc
from archcalc.cli import app

torch = pytest.importorskip("torch")
pytest.importorskip("fvcore")

from archcalc import crosscheck, crosscheck_cli  # noqa: E402

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["crosscheck", *args])


def test_one_model_prints_every_layer_both_oracles_and_the_verdict():
    result = invoke("lenet", "--device", "cpu", "--runs", "2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "device cpu" in out and f"torch {torch.__version__}" in out and "fvcore 0." in out
    rows = archcalc.analyze("lenet").rows
    # closed form: conv1 5x5, 1 -> 6 channels, 28x28 out: 5*5*6*28*28 = 117,600 MACs
    conv1 = next(line for line in out.splitlines() if line.startswith("conv1 "))
    assert conv1.split()[-5:] == ["117,600", "117,600", "235,200", "235,200", "✓"]
    assert sum(line.rstrip().endswith("✓") for line in out.splitlines()) == len(rows) + 1  # and the totals
    assert "median" in out and "of 2 runs after 1 warm-up on cpu" in out and "FLOP/s" in out
    assert "torch.jit.script" not in result.output  # fvcore's own deprecation warning, filtered where it is called
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    assert "agree: all 12 rows and the totals" in out
    assert "aten::avg_pool2d" in out  # fvcore's skipped ops, summarised in one line


def test_json_input_and_set(monkeypatch):
    result = invoke("stacked-3x3", "--set", "C=8", "--input", "20", "--batch", "2", "--runs", "0", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and data["input_shape"] == [2, 8, 20, 20] and data["timing"] is None
    # three 3x3 convs, 8 -> 8 channels, no bias, same padding: 3 * 9 * 8 * 8 * 20 * 20 * 2 MACs
    assert data["totals"]["macs"] == 3 * 9 * 8 * 8 * 20 * 20 * 2


def test_all_prints_a_summary_and_progress(monkeypatch):
    monkeypatch.setattr(crosscheck_cli, "list_models", lambda: ["lenet", "resnet20"])
    result = invoke("--all", "--device", "cpu", "--runs", "1")
    assert result.exit_code == 0, result.output
    assert "2 of 2 models agree on every row and in total" in result.stdout
    assert [line.split()[0] for line in result.stdout.splitlines() if line.endswith("✓")] == ["lenet", "resnet20"]
    assert "lenet: agrees" in result.stderr and "resnet20: agrees" in result.stderr


def test_a_disagreement_exits_1_and_says_where(monkeypatch):
    real_run = crosscheck.run

    def wrong(model, **kwargs):
        result = real_run(model, **kwargs)
        rows = list(result.rows)
        rows[0] = rows[0]._replace(output_shape=(1, 6, 27, 27))
        return replace(result, rows=tuple(rows))

    monkeypatch.setattr(crosscheck, "run", wrong)
    result = invoke("lenet", "--device", "cpu", "--runs", "0")
    assert result.exit_code == 1
    assert "✗ shape" in result.stdout and "conv1: torch output 1x6x28x28" in result.stdout
    assert "DISAGREE: 1 of 12 rows" in result.stdout


def test_cuda_without_a_gpu_is_one_error_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = invoke("lenet", "--device", "cuda")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --device cuda: CUDA is not available") and result.stderr.count("\n") == 1


@pytest.mark.parametrize("args", [[], ["lenet", "--all"], ["nosuchmodel"], ["lenet", "--device", "tpu"]])
def test_usage_errors_exit_2(args):
    assert invoke(*args).exit_code == 2


def test_the_cli_loads_torch_only_for_crosscheck():
    code = "import sys, archcalc.cli, archcalc.crosscheck_cli; print(sorted({'torch', 'fvcore'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("rate, text", [(912_345_678, "912 MFLOP/s"), (1.234e9, "1.23 GFLOP/s"), (850, "850 FLOP/s"),
                                        (45_600, "45.6 KFLOP/s")])
def test_speed_in_the_unit_that_fits(rate: float, text: str) -> None:
    from archcalc.crosscheck_cli import _rate

    assert _rate(rate) == text


def test_torchvision_proves_a_builtin_and_reports_its_time(monkeypatch, tmp_path):
    pytest.importorskip("archcalc.torchvision_check").import_torchvision()
    result = invoke("--torchvision", "resnet18", "--input", "3x32x32")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("resnet18 "))
    assert row.split()[1:4] == ["3x32x32", "41", "0"] and row.endswith("✓")  # 20 convs, 20 norms, fc: exact
    assert "1 of 1 built-ins are torchvision's function" in result.stdout
    assert "resnet18: identical" in result.stderr
    # a disagreement exits 1 and names it; the page is rendered from the same records
    from archcalc import torchvision_check
    from archcalc.reports.identity_page import render

    real = torchvision_check.check_identity
    monkeypatch.setattr(torchvision_check, "check_identity",
                        lambda *a, **k: replace(real(*a, **k), max_abs_difference=1.0))
    monkeypatch.setattr(torchvision_check, "torchvision_builtins", lambda: ["resnet18"])
    result = invoke("--torchvision", "--all", "--input", "3x32x32", "--format", "json")
    assert result.exit_code == 1
    proofs = json.loads(result.stdout)
    assert [p["ok"] for p in proofs] == [False]
    page = render(proofs, {"torch": torch.__version__}, 12.0)
    assert "**0 of 1 built-ins are torchvision's function**" in page and "**DIFFERS** (outputs differ)" in page


@pytest.mark.parametrize("args", [["--torchvision", "lenet"], ["--torchvision", "resnet18", "--batch", "2"]])
def test_torchvision_usage_errors_exit_2(args):
    pytest.importorskip("archcalc.torchvision_check").import_torchvision()
    result = invoke(*args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
