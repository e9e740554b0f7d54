"""`archcalc report`: the generated reports, their tables and links, --check, atomic writes, charts, claims.

Expected numbers come from closed forms: a conv's MACs H_out*W_out*C_out*k*k*C_in, a linear's
weights in*out (+ out biases), a window's positions (n - k) / s + 1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import archcalc
from archcalc.cli import app
from archcalc.reports import build, charts, claims, crosscheck_page, writer
from archcalc.reports.transforms import kernel, without_reductions
from archcalc.spec import Concat

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "reports"
SEEDS = Path(os.environ.get("ARCHCALC_SEEDS", "/work/shared/seeds"))
runner = CliRunner()

GENERATE = """
import json, sys
from archcalc.cli import app
app(["report", "--out", sys.argv[1]], standalone_mode=False)
print(json.dumps({m: m in sys.modules for m in ("torch", "fvcore", "matplotlib")}))
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict]:
    """Every report but the cross-check, written by the command in a fresh interpreter (about 10 s)."""
    out = tmp_path_factory.mktemp("reports")
    proc = subprocess.run([sys.executable, "-c", GENERATE, str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _markdown(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*.md")}


# ---------------------------------------------------------------------------- what is generated


def test_reports_never_import_torch(generated) -> None:
    _, modules = generated
    assert not modules["torch"] and not modules["fvcore"]
    assert modules["matplotlib"]  # the charts were drawn


def test_every_report_and_model_page(generated) -> None:
    out, _ = generated
    names = set(_files(out))
    assert "# Stacked 3x3 convolutions" in (out / "stacked-3x3.md").read_text()  # not the model page of the same name
    for report, _, _ in build.REPORTS:
        assert report in names
    for model in archcalc.list_models():
        assert f"models/{model}.md" in names and f"models/img/{model}.png" in names
    assert "README.md" in names and build.CROSSCHECK not in names


def test_committed_reports_are_current(generated) -> None:
    """What CI's `archcalc report --check` guards: the committed reports match the code and the specs."""
    out, _ = generated
    files = _files(out)
    stale = writer.stale(files, COMMITTED)
    stale = [name for name in stale if name not in writer.version_drift(stale, COMMITTED, files)]
    orphans = writer.orphans(files, COMMITTED, keep=build.WRITTEN_ELSEWHERE)
    assert not stale and not orphans, f"stale: {stale}, no longer generated: {orphans}; run `archcalc report`"


TABLE_SEPARATOR = re.compile(r"^\|(\s*:?-{3,}:?\s*\|)+$")


def _cells(line: str) -> list[str]:
    assert line.startswith("|") and line.endswith("|"), line
    return [c.strip() for c in line[1:-1].split("|")]


def tables(text: str) -> list[list[str]]:
    """Every block of consecutive lines starting with '|'; a block must follow a blank line to render."""
    blocks, current = [], []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|"):
            if not current:
                assert i == 0 or not lines[i - 1].strip(), f"no blank line before the table at {line!r}"
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def test_every_table_parses_as_github_markdown(generated) -> None:
    out, _ = generated
    count = 0
    for name, text in _markdown(out).items():
        for block in tables(text):
            count += 1
            assert len(block) >= 3, f"{name}: a table without rows: {block[0]}"
            assert TABLE_SEPARATOR.match(block[1]), f"{name}: no header separator under {block[0]}"
            widths = {len(_cells(line)) for line in block}
            assert len(widths) == 1, f"{name}: rows of {sorted(widths)} cells in the table under {block[0]}"
    assert count > 2 * len(archcalc.list_models())


def test_table_checker_catches_a_broken_table() -> None:
    block = tables("x\n\n| a | b |\n|---|---|\n| 1 | 2 | 3 |\n")[0]
    assert len({len(_cells(line)) for line in block}) == 2


def test_relative_links_point_at_generated_files(generated) -> None:
    out, _ = generated
    names = set(_files(out)) | set(build.WRITTEN_ELSEWHERE)
    for name, text in _markdown(out).items():
        for target in re.findall(r"\]\(([^)#:]+)\)", text):
            resolved = os.path.normpath(os.path.join(os.path.dirname(name), target)).replace(os.sep, "/")
            assert resolved in names, f"{name} links to {target}, which is not generated"


def test_alexnet_page(generated) -> None:
    text = (generated[0] / "models" / "alexnet.md").read_text()
    # d2l AlexNet: 224 -> (224 + 2 - 11) // 4 + 1 = 54 -> (54 - 3) // 2 + 1 = 26 -> 12 -> 5; 256 * 5 * 5 = 6400
    assert "`1x224x224 -> 96x54x54 -> 96x26x26 -> 256x26x26 -> 256x12x12 -> 384x12x12 -> 384x12x12 -> " \
           "256x12x12 -> 256x5x5 -> 6400 -> 4096 -> 4096 -> 10`" in text
    fc = (6400 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 10 + 10)
    assert f"| linear |        3 | {fc:,} |" in text


# ---------------------------------------------------------------------------- --check and writing


@pytest.fixture
def tiny(monkeypatch) -> dict[str, bytes]:
    files = {"README.md": b"# index\n", "a.md": b"a\n", "img/a.png": b"\x89PNG fake"}
    monkeypatch.setattr(build, "generate", lambda progress=None: dict(files))
    return files


def test_check_passes_then_names_the_stale_file(tiny, tmp_path: Path) -> None:
    assert runner.invoke(app, ["report", "--out", str(tmp_path)]).exit_code == 0
    assert _files(tmp_path) == tiny
    result = runner.invoke(app, ["report", "--check", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (tmp_path / "a.md").write_text("edited by hand\n")
    result = runner.invoke(app, ["report", "--check", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "a.md" in result.output and "README.md" not in result.output
    assert (tmp_path / "a.md").read_text() == "edited by hand\n"  # --check writes nothing


def test_check_names_missing_and_orphaned_files_but_not_crosscheck(tiny, tmp_path: Path) -> None:
    runner.invoke(app, ["report", "--out", str(tmp_path)])
    (tmp_path / "img" / "a.png").unlink()
    (tmp_path / "gone.md").write_text("a removed model's page\n")
    (tmp_path / "crosscheck.md").write_text("made elsewhere, with torch\n")
    result = runner.invoke(app, ["report", "--check", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "img/a.png" in result.output and "gone.md" in result.output and "crosscheck.md" not in result.output


def test_write_is_atomic(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "report.md"
    target.write_text("old\n")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer.write_atomic(target, b"new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temporary file left behind


def test_unchanged_files_are_not_rewritten(tmp_path: Path) -> None:
    assert writer.write_all({"x.md": b"1"}, tmp_path) == ["x.md"]
    assert writer.write_all({"x.md": b"1"}, tmp_path) == []


# ---------------------------------------------------------------------------- charts


def test_charts_are_byte_stable() -> None:
    result = archcalc.analyze("lenet")
    first, second = charts.layer_costs(result), charts.layer_costs(result)
    assert first == second and first.startswith(b"\x89PNG\r\n\x1a\n")
    assert b"Software" not in first
    assert charts.drawn_with(first) == charts.current_version()


def test_chart_folds_deep_models() -> None:
    rows = charts.chart_rows(archcalc.analyze("resnet152"))
    assert 0 < len(rows) <= charts.MAX_BARS
    assert sum(r.macs for r in rows) == archcalc.analyze("resnet152").total.macs


# ---------------------------------------------------------------------------- claims


def test_every_claim_checks_and_has_a_verdict() -> None:
    for c in claims.CLAIMS:
        found = c.find()
        assert found.computed and found.arithmetic and found.verdict.text, c.key


def _verdict(key: str):
    return claims.claim(key).find()


def test_inception_claim() -> None:
    # CS231n's module on 28x28x256: naive 1x1 128, 3x3 192, 5x5 96; bottleneck adds 64-channel 1x1s
    naive = 28 * 28 * 256 * (128 + 9 * 192 + 25 * 96)
    bottleneck = 28 * 28 * (128 * 256 + 3 * 64 * 256 + 9 * 64 * 192 + 25 * 64 * 96)
    found = _verdict("inception-ops")
    assert f"{naive:,}" in found.computed and f"{bottleneck:,}" in found.computed
    assert not found.verdict.holds and "1.32" in found.verdict.text  # 358M / 271.35M
    assert f"{28 * 28 * 9 * 64 * 192:,}" in found.verdict.text  # the 3x3 term the slide counts twice


def test_ten_x_claim_does_not_hold() -> None:
    lenet = 156 + 2416 + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)  # d2l LeNet: 61,706
    found = _verdict("ten-x")
    assert not found.verdict.holds and f"{lenet:,}" in found.arithmetic


def test_one_gb_claim() -> None:
    fc = (6400 * 4096 + 4096) + (4096 * 4096 + 4096)
    found = _verdict("one-gb")
    assert f"{fc * 4:,} bytes" in found.arithmetic and not found.verdict.holds


def test_crops_claim() -> None:
    per_axis = (256 - 224) // 1 + 1
    found = _verdict("crops")
    assert f"{per_axis ** 2 * 2:,} with reflections" in found.computed
    assert found.verdict.holds and "convention" in found.verdict.text  # 2048 = 32 * 32 * 2


def test_claims_report_has_one_section_per_claim() -> None:
    text = claims.render()
    assert text.count("- **Verdict:**") == len(claims.CLAIMS)
    assert len({c.key for c in claims.CLAIMS}) == len(claims.CLAIMS)


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the seed notes are not in the repository (set ARCHCALC_SEEDS)")
def test_quotes_are_verbatim() -> None:
    def squash(text: str) -> str:
        return " ".join(text.split())

    for c in claims.CLAIMS:
        for seed in c.seeds:
            assert (SEEDS / seed).is_file(), seed
        text = squash(" ".join((SEEDS / seed).read_text() for seed in c.seeds))
        for excerpt in c.original.split(claims.ELLIPSIS):
            assert squash(excerpt) in text, f"{c.key}: not in {c.seeds}: {excerpt!r}"


# ---------------------------------------------------------------------------- derived specs


def test_removing_bottlenecks_gives_the_naive_module() -> None:
    naive = without_reductions(archcalc.load("inception-bottleneck"), projections=True)
    assert archcalc.analyze(naive).total.macs == 28 * 28 * 256 * (128 + 9 * 192 + 25 * 96)


def test_googlenet_without_reductions_has_no_1x1_before_a_larger_kernel() -> None:
    model = without_reductions(archcalc.load("googlenet"))
    from archcalc.reports.common import leaves

    concats = []

    def walk(node) -> None:
        if isinstance(node, Concat):
            concats.append(node)
        for child in getattr(node, "layers", ()):
            walk(child)

    for layer in model.layers:
        walk(layer)
    assert len(concats) == 9  # Inception 3a-5b
    for concat in concats:
        for branch in concat.branches:
            kernels = [kernel(node) for node in branch if kernel(node)]
            assert (1, 1) not in kernels[:-1], kernels
    # 3a without reductions: 3x3 on all 192 input channels, 5x5 likewise (the rest unchanged)
    row = next(r for r in archcalc.analyze(model).rows if r.name.startswith("inception3a") and "3x3" in r.description
               and r.op == "conv2d")
    assert row.params == 3 * 3 * 192 * 128 + 128
    assert sum(1 for _ in leaves(model)) < sum(1 for _ in leaves(archcalc.load("googlenet")))


# ---------------------------------------------------------------------------- cross-check page


def test_crosscheck_page_from_a_real_check() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    from archcalc.crosscheck import check_model

    checked = check_model("lenet", device="cpu", runs=0).to_dict()
    text = crosscheck_page.render([checked])
    assert "`lenet`" in text and "**agrees**" in text and "1 of 1 models agree" in text
    assert "median" not in text and "seconds" not in text  # nothing machine-timed
    for block in tables(text):
        assert len({len(_cells(line)) for line in block}) == 1


def test_crosscheck_page_shows_disagreements() -> None:
    layer = {"name": "conv1", "op": "conv2d", "description": "conv2d 5x5", "shape": [1, 6, 28, 28],
             "torch_shape": [1, 6, 24, 24], "params": 156, "torch_params": 156, "mismatches": ["shape"],
             "status": "mismatch"}
    check = {"model": "toy", "input_shape": [1, 1, 28, 28], "device": "cpu", "versions": {"torch": "x"}, "ok": False,
             "layers": [layer], "conventions": {"macs": "..."}, "problems": [], "warning_summary": [],
             "totals": {"params": 156, "torch_params": 156, "fvcore_expected": 1, "fvcore": 1, "torch_flops": 2,
                        "torch": 2}}
    text = crosscheck_page.render([check])
    assert "**DISAGREES**" in text and "0 of 1 models agree" in text and "1x6x24x24" in text


def test_a_model_named_like_a_report_cannot_overwrite_it() -> None:
    files = {"stacked-3x3.md": b"the report"}
    with pytest.raises(ValueError, match="stacked-3x3.md"):
        build._add(files, "stacked-3x3.md", b"a model page")
    assert files == {"stacked-3x3.md": b"the report"}


def test_check_without_a_reports_folder_says_so_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", "--check", "--out", str(tmp_path / "reports")])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "there is no" in result.stderr and "reports folder" in result.stderr


def test_generate_reports_each_step_once() -> None:
    seen: list[str] = []
    build.generate(["lenet"], progress=seen.append)
    assert len(seen) == build.steps(["lenet"]) and seen[-1] == "lenet"
