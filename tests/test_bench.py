"""`archcalc bench`: runs end to end with tiny settings and writes valid markdown; target logic.

No assertion here is about how fast anything is: timings are never reproducible. The
figures checked are counts (GMAC) with published sources, and the pass/fail logic of
the targets on made-up timings.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archcalc.bench import (
    IMPORT_FLOOR, BenchResult, Case, CaseResult, Settings, Timing, evaluate_targets, model_to_profile, paired_change, plan_skip,
    time_processes,
)
from archcalc.bench_report import render_markdown, seconds
from archcalc.cli import app

pytest.importorskip("torch")
pytest.importorskip("fvcore")
pytest.importorskip("matplotlib")


def _tables(markdown: str) -> list[list[str]]:
    """Each markdown table as its lines."""
    tables, current = [], []
    for line in markdown.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables + ([current] if current else [])


def _assert_valid_tables(markdown: str) -> None:
    tables = _tables(markdown)
    assert tables
    for table in tables:
        assert len(table) >= 3, table  # header, separator, at least one row
        assert re.fullmatch(r"\|(-+\|)+", table[1].replace(":", "-")), table[1]
        widths = {line.count("|") for line in table}
        assert len(widths) == 1, table  # every row has the header's number of cells


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench") / "perf.md"
    result = CliRunner().invoke(app, [
        "bench", "--quick", "-m", "resnet18", "--size", "64,96", "--batch", "1,2",
        "--depth-model", "resnet18,resnet34", "--repeat", "2", "--tool-repeat", "1", "--cli-runs", "0",
        "--max-gmac", "0.5", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    return out, result.stdout


def test_bench_writes_markdown_with_every_section(report):
    out, stdout = report
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# archcalc performance\n")
    for heading in ("## Machine", "## Targets", "## archcalc against the counters", "## Time vs depth",
                    "## Cold start", "## The command line as a whole process", "## Not measured"):
        assert heading in text, heading
    assert "`archcalc bench --quick --model resnet18" in text  # the command line, for rerunning it
    cold = text.split("## Cold start")[1].split("##")[0]
    assert [line.split("|")[1].strip() for line in cold.splitlines() if line.startswith("| resnet")] == [
        "resnet18", "resnet34"]
    _assert_valid_tables(text)
    assert "target" in stdout and "wrote" in stdout


def test_bench_plots_are_pngs_linked_from_the_report(report):
    out, _ = report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", out.read_text(encoding="utf-8"))
    assert sorted(links) == ["perf-depth.png", "perf-size.png"]
    for name in links:
        assert (out.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_rows_hold_published_counts_and_every_tool(report):
    out, _ = report
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line for line in out.read_text().splitlines()
            if line.startswith("| resnet")}
    # torchvision's model table: ResNet-18 1.81 GFLOPS (MACs), ResNet-34 3.66, at 224x224
    assert "| 1.8 " in rows[("resnet18", "224x224", "1")]
    assert "| 3.7 " in rows[("resnet34", "224x224", "1")]
    # 64x64 batch 1 is ~0.15 GMAC: timed by every tool; 96x96 batch 2 (~0.67 GMAC) is over the 0.5 limit
    small = rows[("resnet18", "64x64", "1")].split("|")
    assert all(re.fullmatch(r"[\d.]+ (s|ms|µs)", cell.strip()) for cell in small[8:14:2]), small
    assert rows[("resnet18", "96x96", "2")].count("| - ") == 6
    assert "resnet18 96x96 x2: 1 GMAC per pass > the 0.5 GMAC limit" in out.read_text()


def test_bench_command_imports_no_torch():
    code = "import sys, archcalc.cli, archcalc.bench, archcalc.bench_report; " \
           "loaded = sorted({'torch', 'fvcore', 'matplotlib'} & set(sys.modules)); print(loaded); sys.exit(bool(loaded))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_bench_refuses_quick_and_full():
    result = CliRunner().invoke(app, ["bench", "--quick", "--full", "--out", "-"])
    assert result.exit_code == 2


def test_bench_refuses_unknown_model():
    result = CliRunner().invoke(app, ["bench", "-m", "resnet19", "--out", "-"])
    assert result.exit_code == 2 and "resnet19" in result.output


def test_process_timing_reports_failures():
    timings = time_processes({"ok": ["-c", "pass"], "bad": ["-c", "raise SystemExit('boom')"]}, runs=2)
    assert isinstance(timings["ok"], Timing) and timings["ok"].n == 2
    assert timings["bad"] == "exit 1: boom"


def test_timing_median_and_units():
    assert Timing((3.0, 1.0, 2.0)).median_s == 2.0
    assert [seconds(v) for v in (12.34, 0.003414, 84.2e-6, None)] == ["12.3 s", "3.41 ms", "84.2 µs", "-"]


# ---- the targets, on made-up timings --------------------------------------------------


def _case(model: str, size: int, batch: int, analysis_s: float, fvcore_s: float | None, macs: int = 10**9,
          memory: int = 10**6) -> CaseResult:
    r = CaseResult(Case(model, size, batch), macs, 50, memory, Timing((analysis_s,)), Timing((analysis_s / 2,)), 10**5)
    r.tools = {"fvcore": Timing((fvcore_s,)) if fvcore_s else "skipped", "flopcounter": "skipped", "forward": "skipped"}
    return r


def _bench(cases: list[CaseResult], cli: dict, families: list[CaseResult] | None = None) -> BenchResult:
    settings = Settings(models=("resnet152",), sizes=(224, 1024), batches=(1, 32))
    bench = BenchResult(settings, {"CPU": "test"}, "today", cases, [], families or [], {}, cli)
    bench.targets = evaluate_targets(bench)
    return bench


def test_targets_pass_and_fail_on_the_ratios():
    cli = {"archcalc table alexnet": Timing((0.2,)), 'python -c "import torch"': Timing((1.0,)), IMPORT_FLOOR: Timing((0.15,))}
    good = _bench([
        _case("resnet152", 224, 1, 0.004, 0.5), _case("resnet152", 224, 32, 0.0042, None),
        _case("resnet152", 1024, 1, 0.0043, 5.0), _case("resnet152", 1024, 32, 0.004, None),
    ], cli)
    assert [t.passed for t in good.targets] == [True, None] + [True] * 7  # (no family cases asked for)
    assert "1.33x" in good.targets[7].measured  # 0.2 s over the 0.15 s import floor
    assert "125x" in good.targets[0].measured and "1,163x" in good.targets[2].measured
    bad = _bench([
        _case("resnet152", 224, 1, 0.006, 0.5), _case("resnet152", 224, 32, 0.0075, None),
        _case("resnet152", 1024, 1, 0.006, 5.0), _case("resnet152", 1024, 32, 0.006, None),
    ], {"archcalc table alexnet": Timing((0.3,)), 'python -c "import torch"': Timing((1.0,)), IMPORT_FLOOR: Timing((0.15,))})
    # 83x < 100x; 833x < 1000x; 1024 vs 224 flat (0%); batch 32 +25%; memory fine; 0.3x; 2x the floor; 6 ms
    assert [t.passed for t in bad.targets] == [False, None, False, True, False, True, False, False, False]
    assert "resnet152 +25.0%" in bad.targets[4].measured
    text = render_markdown(bad, "archcalc bench", {})
    _assert_valid_tables(text)
    assert text.count("**FAIL**") == 6


def test_the_profile_is_of_the_model_furthest_below_100x():
    cli = {"archcalc table alexnet": Timing((0.2,)), 'python -c "import torch"': Timing((1.0,))}
    cases = [_case("alexnet", 224, 1, 0.0003, 0.027), _case("googlenet", 224, 1, 0.002, 0.16),
             _case("resnet152", 224, 1, 0.003, 0.6)]  # 90x, 80x, 200x
    assert model_to_profile(_bench(cases, cli)) == "googlenet"
    assert model_to_profile(_bench(cases[2:], cli)) == "resnet152"  # then the 5 ms goal is what missed


def test_targets_unmeasured_are_not_failures():
    bench = _bench([_case("resnet152", 224, 1, 0.004, None)], {label: "not asked for" for label in ("a", "b")})
    assert [t.passed for t in bench.targets] == [None, None, None, None, None, True, None, None, True]


def test_every_family_at_its_default_input_is_a_target():
    cli = {"archcalc table alexnet": Timing((0.2,))}
    families = [_case("vit-h-14", 518, 1, 0.002, 30.0), _case("inception-v3", 299, 1, 0.003, 0.2)]  # 15,000x, 67x
    target = _bench([], cli, families).targets[1]
    assert target.passed is False and "vit-h-14 518 15,000x" in target.measured and "inception-v3 299 67x" in target.measured
    families[1].tools["fvcore"] = "skipped: 30 GMAC per pass > the 20 GMAC limit"  # --quick leaves giants out
    target = _bench([], cli, families).targets[1]
    assert target.passed is True and "inception-v3 299 n/a" in target.measured


def test_ratio_uses_archcalc_timed_alongside_the_tools():
    r = _case("resnet152", 224, 1, 0.004, 0.5)
    assert r.ratio("fvcore") == pytest.approx(125)
    r.alongside = Timing((0.005, 0.006, 0.005))  # the machine slowed down before the torch phase
    assert r.ratio("fvcore") == pytest.approx(100)
    assert r.ratio("forward") is None  # skipped


def test_ratio_pairs_each_tool_run_with_archcalc_in_the_same_round():
    r = _case("resnet152", 224, 1, 0.004, 0.5)
    # round 2 ran during a burst of other work that slowed both 2x; in round 3 only the tool was slowed
    r.tools["fvcore"] = Timing((0.50, 1.00, 0.80))
    r.alongside = Timing((0.005, 0.010, 0.005))
    assert r.ratio("fvcore") == pytest.approx(100)  # rounds: 100x, 100x, 160x
    assert r.seconds("fvcore") / r.alongside.median_s == pytest.approx(160)  # what unpaired medians say


def test_flatness_pairs_the_runs_of_each_round():
    # rounds 3-4 ran during a burst of other work that slowed both cases 2x, round 5 during
    # one that slowed only the other: it is 5% slower in 4 rounds of 5, its median 2.1x the base's
    base = Timing((1.0, 1.0, 2.0, 2.0, 1.0))
    other = Timing((1.05, 1.05, 2.1, 2.1, 2.1))
    assert paired_change(base, other) == pytest.approx(0.05)
    assert other.median_s / base.median_s == pytest.approx(2.1)


def test_plan_skips_on_memory_then_on_work():
    settings = Settings(max_gmac=100)
    heavy = _case("vgg16", 1024, 32, 0.001, None, macs=10_265 * 10**9, memory=76 * 10**9)
    assert plan_skip(heavy, settings, limit_bytes=12 * 10**9).startswith("could need 76.0 GB")
    slow = _case("vgg16", 1024, 1, 0.001, None, macs=321 * 10**9)
    assert plan_skip(slow, settings, limit_bytes=12 * 10**9) == "321 GMAC per pass > the 100 GMAC limit (too slow here)"
    required = _case("resnet152", 1024, 1, 0.001, None, macs=241 * 10**9)
    assert plan_skip(required, settings, limit_bytes=12 * 10**9) == ""  # the 1000x target needs it
