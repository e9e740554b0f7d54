"""Hostile and malformed input through the real entry points: each ends, within seconds, on one
`error: ...` line with exit status 2, shows user text literally, and leaves nothing half-written.

The corpus runner calls the console script's `main()` in this process (as `archcalc` would run);
the cases that could hang or exhaust memory run as a process of their own, under a memory limit.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import resource
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import archcalc
from archcalc import Concat, Conv2d, Model, ReLU, Sequential, SpecError
from archcalc.cli import main
from archcalc.formatting import Column, Table, cell, print_rich, to_csv, to_markdown, to_text
from archcalc.registry import parameters
from archcalc.reports import charts, writer

TINY = "name: tiny\ninput: [3, 8, 8]\nlayers: [{conv2d: {out_channels: 4, kernel_size: 3}}, relu]\n"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`archcalc ARGS` in this process: exit status, stdout, stderr."""
    old = sys.argv
    sys.argv = ["archcalc", *args]
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 0
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


def assert_rejected(capsys, *args: str, says: str = "") -> str:
    started = time.perf_counter()
    code, out, err = run_cli(capsys, *args)
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line
    assert "Traceback" not in err and "\x1b" not in err + out
    assert len(err) < 2000, len(err)
    assert says in err, err
    assert time.perf_counter() - started < 10
    return err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---- 1. names and user text reach the terminal literally -----------------------------------------


def test_an_escape_sequence_in_a_name_is_refused_and_shown_escaped(tmp_path, capsys) -> None:
    spec = write(tmp_path, "evil.yaml", 'name: "evil\\e[2J\\e]0;pwned\\a"\ninput: [3, 8, 8]\nlayers: [relu]\n')
    err = assert_rejected(capsys, "table", spec, says="a model's name must be")
    assert "evil\\x1b[2J\\x1b]0;pwned\\x07" in err


@pytest.mark.parametrize("name", ["[/]", "[conceal]x", "[link=https://evil.example/]m[/link]", "a\nforged line",
                                  "=HYPERLINK(1)", "a|b", "x.y", "1234", "", "a" * 101, "a\u202eb"])
def test_names_outside_the_rule_are_refused(name: str) -> None:
    with pytest.raises(SpecError, match="name must be 1 to 100 letters"):
        ReLU(name=name)
    with pytest.raises(SpecError, match="a model's name must be"):
        Model(name=name, input=(3, 8, 8), layers=[])


@pytest.mark.parametrize("name", ["conv1", "stage-2", "0a", "x_1", "inception3a", "vgg16-bn", "a+b", "ünïcode", "a" * 100])
def test_names_inside_the_rule_are_taken(name: str) -> None:
    assert ReLU(name=name).name == name


def test_text_cells_show_markup_and_control_characters_literally(capsys) -> None:
    hostile = ["[/]", "[conceal]hidden", "[link=https://evil.example/]m[/link]", "a\x1b[2Jb\x07", "line\nbreak"]
    table = Table(columns=[Column(h, h, numeric=False) for h in ("[bold]h", "x")],
                  rows=[(text, 1) for text in hostile], title="t\x1b]0;title\x07")
    print_rich(table)  # rich reads no markup in a Text: no MarkupError, no hidden text, no link
    shown = capsys.readouterr().out
    for text in ("[/]", "[conceal]hidden", "[link=https://evil.example/]m[/link]", "a\\x1b[2Jb\\x07", "line\\nbreak",
                 "[bold]h", "t\\x1b]0;title\\x07"):
        assert text in shown
    for rendered in (to_text(table), to_markdown(table), to_csv(table)):
        assert "\x1b" not in rendered and "\x07" not in rendered and "line\nbreak" not in rendered


def test_pipes_in_markdown_and_formulas_in_csv_are_made_inert() -> None:
    table = Table(columns=[Column("name", "name", numeric=False), Column("n", "n")],
                  rows=[("a|b", 1), ("=cmd", 2), ("+x", 3), ("-y", 4), ("@z", 5), ("fine", -6)])
    markdown = to_markdown(table)
    assert "a\\|b" in markdown and all(line.count("|") - line.count("\\|") == 3 for line in markdown.splitlines())
    cells = [row[0] for row in csv.reader(io.StringIO(to_csv(table)))][1:]
    assert cells == ["a|b", "'=cmd", "'+x", "'-y", "'@z", "fine"]
    assert list(csv.reader(io.StringIO(to_csv(table))))[-1][1] == "-6"  # numbers are not text


def test_long_user_text_in_an_error_is_cut(tmp_path, capsys) -> None:
    spec = write(tmp_path, "long.yaml", f"name: m\ninput: [3, 8, 8]\nlayers: [{'x' * 200_000}]\n")
    err = assert_rejected(capsys, "table", spec, says="unknown op")
    assert "more characters" in err


def test_ratio_near_a_thousand_reads_as_a_number() -> None:
    assert [cell(v) for v in (999.4, 999.5, 999.99, 1000.0, 12.345)] == ["999x", "1,000x", "1,000x", "1,000x", "12.3x"]


# ---- 2. bounded reads and work ----------------------------------------------------------------


def _child(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`archcalc ARGS` as its own process, limited to 1 GiB of address space and 30 s."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    return subprocess.run([sys.executable, "-m", "archcalc", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=30, preexec_fn=limit, env={**os.environ, "NO_COLOR": "1"})


def _bomb(levels: int = 12) -> str:
    """A YAML alias bomb: 9**levels items written in a few hundred bytes."""
    items = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


@pytest.mark.parametrize("case", ["fifo", "dev_zero", "big_file", "set_alias_bomb"])
def test_unbounded_inputs_end_in_one_line(tmp_path: Path, case: str) -> None:
    if case == "fifo":
        os.mkfifo(tmp_path / "spec.yaml")
        args, says = ["table", "spec.yaml"], "not a regular file"
    elif case == "dev_zero":
        (tmp_path / "spec.yaml").symlink_to("/dev/zero")
        args, says = ["table", "spec.yaml"], "not a regular file"
    elif case == "big_file":
        (tmp_path / "spec.yaml").write_text(TINY + "#" * 2**24 + "\n")  # 16 MiB
        args, says = ["table", "spec.yaml"], "larger than 256 KiB"
    else:
        args, says = ["table", "stacked-3x3", "--set", f"C={_bomb()}"], "expands to more than 50,000 values"
    started = time.perf_counter()
    done = _child(args, tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert time.perf_counter() - started < 20


def test_params_from_python_are_bounded_too() -> None:
    import yaml

    with pytest.raises(SpecError, match="expands to more than 50,000 values"):
        archcalc.load("stacked-3x3", params={"C": yaml.safe_load(_bomb())})
    loop: list = []
    loop.append(loop)
    with pytest.raises(SpecError, match="holds itself"):
        archcalc.load("stacked-3x3", params={"C": loop})


def test_python_models_sharing_one_node_stop_at_the_layer_limit() -> None:
    node = ReLU()
    for _ in range(24):  # 2**24 rows if walked out
        node = Sequential(layers=[node, node])
    started = time.perf_counter()
    with pytest.raises(SpecError, match="expands to more than 100,000 layers"):
        archcalc.analyze(Model(name="shared", input=(3, 8, 8), layers=[node]))
    assert time.perf_counter() - started < 10


# ---- 3. one-line errors where tracebacks were ----------------------------------------------------


def test_a_chain_of_3000_extends(tmp_path, capsys) -> None:
    lines = ["models:", "  - {name: m0, input: [3, 8, 8], layers: [relu]}"]
    lines += [f"  - {{name: m{i}, extends: m{i - 1}}}" for i in range(1, 3000)]
    spec = write(tmp_path, "chain.yaml", "\n".join(lines) + "\n")
    code, out, err = run_cli(capsys, "table", f"{spec}:m2999")
    assert code == 0 and "m2999: input 3x8x8" in out, err


@pytest.mark.parametrize("args, says", [
    (["table", "lenet", "--batch", "9" * 5000], "Invalid value for '--batch'"),
    (["table", "lenet", "--batch", str(2**31)], "Invalid value for '--batch'"),
    (["table", "lenet", "--input", "9" * 5000], "sizes are at most 2,147,483,647"),
    (["table", "lenet", "--set", "x=1"], "has no parameter"),
    (["table", "stacked-3x3", "--set", "C=" + "9" * 5000], "an integer of more than 4,300 digits"),
    (["table", "stacked-3x3", "--set", "C=" + "[" * 100_000], "not valid YAML"),
    (["table", "x" * 5000 + ".yaml"], "File name too long"),
    (["table", "x" * 100_000], "unknown model"),
    (["table", "lenet", "--formt", "csv"], "No such option"),
    (["tabel", "lenet"], "No such command"),
    (["compare", "lenet"], "at least two models"),
])
def test_bad_arguments_are_one_line(capsys, args, says) -> None:
    assert_rejected(capsys, *args, says=says)


def test_largest_sizes_give_totals_that_print_and_compare(capsys) -> None:
    big = Model(name="big", input=(2**31 - 1, 2**31 - 1, 2**31 - 1),
                layers=[Conv2d(out_channels=2**31 - 1, kernel_size=1), Conv2d(out_channels=2**31 - 1, kernel_size=1)])
    result = archcalc.analyze(big, batch=2**31 - 1)
    assert result.total.macs == 2 * (2**31 - 1) ** 5
    from archcalc.tables import compare_table, layer_table

    for units in (False, True):  # the largest figures print, with K/M/G/T too, and ratios fit a float
        to_text(layer_table(result, result.rows, units), units)
        to_text(compare_table([archcalc.analyze("lenet"), result]), units)


def test_a_spec_file_path_may_hold_colons(tmp_path, capsys) -> None:
    folder = tmp_path / "a:b"
    folder.mkdir()
    spec = write(folder, "two.yaml", "models:\n  - {name: m, input: [3, 8, 8], layers: [relu]}\n"
                                     "  - {name: n, input: [3, 4, 4], layers: [relu]}\n")
    code, out, err = run_cli(capsys, "table", f"{spec}:n")
    assert code == 0 and "n: input 3x4x4" in out, err
    assert archcalc.load(f"{spec}:m").input == (3, 8, 8)


def test_merge_keys_override_as_yaml_defines(tmp_path) -> None:
    spec = write(tmp_path, "merge.yaml", "name: m\ninput: [3, 16, 16]\nlayers:\n"
                 "  - {conv2d: &base {out_channels: 8, kernel_size: 3}}\n"
                 "  - {conv2d: {<<: *base, kernel_size: 1}}\n"
                 "  - {conv2d: {<<: [*base, {kernel_size: 5, padding: 2}], padding: 1}}\n")
    layers = archcalc.load(spec).layers
    assert [(n.kernel_size, n.padding) for n in layers] == [(3, 0), (1, 0), (3, 1)]  # own keys win, then the first


@pytest.mark.parametrize("call, says", [
    (lambda: archcalc.analyze("lenet", input=5), "input must be"),
    (lambda: archcalc.analyze("lenet", params=["C", 1]), "params must be a mapping"),
    (lambda: archcalc.analyze("lenet", batch="2"), "batch must be a positive integer"),
    (lambda: archcalc.analyze("lenet", dtype=None), "dtype must be one of"),
    (lambda: archcalc.analyze(5), "spec must be a built-in name, a path or a Model"),
    (lambda: Model(name="m", input=(3, 8, 8), layers=["relu"]), "layers must be a list of layers"),
    (lambda: Model(name="m", input=(3, 8, 8), layers=[], description=5), "description must be a string"),
    (lambda: Sequential(layers=[ReLU, ReLU()]), "layers must be a list of layers"),
    (lambda: Concat(branches=[ReLU()]), "branches must be a list of branches"),
    (lambda: Sequential(layers=[], block=5), "block must be 1 to 100 letters"),
    (lambda: ReLU(where=5), "where must be a Where"),
    (lambda: archcalc.run(Model(name="m", input=(3, 8, 8), layers=[]), input=(3, 2**31, 8)), "at most 2,147,483,647"),
])
def test_wrong_python_arguments_are_spec_errors_naming_them(call, says) -> None:
    with pytest.raises(SpecError, match=says):
        call()


def test_report_out_a_file_and_unwritable_folders(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "file").write_text("x")
    assert_rejected(capsys, "report", "--out", str(tmp_path / "file"), says="is a file, not a folder")
    from archcalc.reports import build

    monkeypatch.setattr(build, "generate", lambda **_: {"a.md": b"a\n"})
    for error in (errno.EACCES, errno.ENOSPC, errno.EROFS):
        def failing(path, data, mode=0o644, error=error):
            raise OSError(error, os.strerror(error), str(path))

        monkeypatch.setattr(writer, "write_atomic", failing)
        assert_rejected(capsys, "report", "--out", str(tmp_path / "r"), says=os.strerror(error))


def test_output_to_a_full_disk_is_one_line() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "archcalc", "table", "lenet"], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr == "error: No space left on device\n", done.stderr


def test_bench_without_torch_says_what_to_install(capsys, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("torch", "fvcore") else real(name, *a))
    assert_rejected(capsys, "bench", "--quick", "--out", "-", says="needs torch and fvcore")


# ---- 4. results that were silently wrong ---------------------------------------------------------


def test_compare_csv_with_a_model_named_metric_and_repeated_names(tmp_path, capsys) -> None:
    spec = write(tmp_path, "m.yaml", "models:\n  - {name: metric, input: [3, 8, 8], layers: [relu]}\n")
    code, out, err = run_cli(capsys, "compare", f"{spec}:metric", "lenet", f"{spec}:metric", "--format", "csv")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    header = rows[0]
    assert len(set(header)) == len(header) and header[:2] == ["metric", "metric (2)"], header
    assert all(len(row) == len(header) for row in rows)
    assert [row[0] for row in rows[1:3]] == ["input", "params"]


def test_builtin_defaults_cannot_be_changed_from_outside() -> None:
    before = archcalc.analyze("vgg16-bn").total.params
    norm = parameters("vgg16-bn")["norm"]
    norm.clear()
    norm.append("relu")
    assert parameters("vgg16-bn")["norm"] != ["relu"]
    assert archcalc.analyze("vgg16-bn").total.params == before


def test_rewritten_reports_follow_the_umask_and_leftovers_are_cleaned(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        writer.write_all({"x.md": b"1", "img/y.png": b"2"}, tmp_path)
        writer.write_all({"x.md": b"changed"}, tmp_path)
        assert stat.S_IMODE((tmp_path / "x.md").stat().st_mode) == 0o644
        os.umask(0o077)
        writer.write_all({"x.md": b"again"}, tmp_path)
        assert stat.S_IMODE((tmp_path / "x.md").stat().st_mode) == 0o600
    finally:
        os.umask(old)
    left = tmp_path / "img" / ".y.png.k3j2h1ab.tmp"  # what a killed run leaves
    left.write_bytes(b"half")
    files = {"x.md": b"again", "img/y.png": b"2"}
    assert writer.leftovers(files, tmp_path) == ["img/.y.png.k3j2h1ab.tmp"]
    writer.write_all(files, tmp_path)
    assert not left.exists()


def test_check_reports_leftovers_of_a_killed_run(tmp_path, capsys, monkeypatch) -> None:
    from archcalc.reports import build

    monkeypatch.setattr(build, "generate", lambda **_: {"a.md": b"a\n"})
    assert run_cli(capsys, "report", "--out", str(tmp_path))[0] == 0
    (tmp_path / ".a.md.x1y2z3w4.tmp").write_bytes(b"a")
    code, out, err = run_cli(capsys, "report", "--check", "--out", str(tmp_path))
    assert code == 1 and "left by an interrupted" in err


def _relabelled(png: bytes, version: str) -> bytes:
    """The PNG with its `Drawn with` text chunk saying `version` (the CRC recomputed)."""
    import zlib

    pos, out = 8, png[:8]
    while pos < len(png):
        length = int.from_bytes(png[pos:pos + 4], "big")
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and data.startswith(charts.VERSION_KEY.encode() + b"\0"):
            data = charts.VERSION_KEY.encode() + b"\0" + version.encode()
        out += len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
        pos += 12 + length
    return out


def test_check_sees_another_models_chart_relabelled_with_another_version(tmp_path) -> None:
    lenet, alexnet = charts.layer_costs(archcalc.analyze("lenet")), charts.layer_costs(archcalc.analyze("alexnet"))
    files = {"img/lenet.png": lenet}
    (tmp_path / "img").mkdir()
    (tmp_path / "img/lenet.png").write_bytes(_relabelled(lenet, "matplotlib 0.1"))  # only the version differs
    assert writer.version_drift(["img/lenet.png"], tmp_path, files) == {"img/lenet.png": "matplotlib 0.1"}
    (tmp_path / "img/lenet.png").write_bytes(_relabelled(alexnet, "matplotlib 0.1"))  # another model's chart
    assert writer.version_drift(["img/lenet.png"], tmp_path, files) == {}


def test_the_readme_states_the_limits_the_code_applies() -> None:
    from archcalc.analysis import MAX_LAYERS, MAX_STRIDE
    from archcalc.spec import MAX_SIZE
    from archcalc.templates import MAX_NESTING, MAX_SPEC_NODES
    from archcalc.yamlfile import MAX_FILE_BYTES, MAX_MERGED

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    limits = readme.split("**Limits.**", 1)[1].split("\n\n", 2)[1]  # the table after the sentence
    for figure in (f"{MAX_FILE_BYTES // 2**10} KiB", f"{MAX_SIZE:,}", f"{sys.get_int_max_str_digits():,} digits",
                   f"| {MAX_SPEC_NODES:,} (repeats", f"| {MAX_LAYERS:,} |", f"| {MAX_NESTING} |",
                   f"| {MAX_SPEC_NODES:,} items |", f"in one file | {MAX_MERGED:,} |",
                   f"| 10^{len(str(MAX_STRIDE)) - 1}, so"):
        assert figure in limits, figure


def test_no_arguments_still_prints_the_help(capsys) -> None:
    code, out, err = run_cli(capsys)
    assert code == 2 and "Usage" in out + err and "error:" not in err


def test_up_and_down_sampling_keeps_numbers_small() -> None:
    from archcalc import AdaptiveAvgPool2d, Repeat

    cycle = [AdaptiveAvgPool2d(output_size=1999), AdaptiveAvgPool2d(output_size=1000)]  # 1000 -> 1999 -> 1000
    model = Model(name="cycles", input=(1, 1000, 1000), layers=[Repeat(times=5000, layers=cycle)])
    started = time.perf_counter()
    result = archcalc.analyze(model)
    assert time.perf_counter() - started < 10
    assert all(v < 10**30 for row in result.rows for v in (*row.receptive_field, *row.stride))
