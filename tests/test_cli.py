"""The command line: every command, option and format, through typer's CliRunner.

Expected numbers come from closed forms: a conv's output size (H + 2p - k) // s + 1,
its weights k*k*Cin*Cout (+ Cout bias), its MACs k*k*Cin*Cout*Hout*Wout.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import archcalc
from archcalc.cli import app, list_table
from archcalc.cli_common import InputSize, complete_model, parse_input
from archcalc.formatting import number, plain_output, print_rich
from archcalc.tables import compare_table, layer_table

GOLDEN = Path(__file__).parent / "golden"
runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


def ok(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def csv_rows(*args: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(ok(*args, "--format", "csv"))))


# d2l AlexNet on its default 1x224x224 input: conv1 is 11x11, stride 4, padding 1, 96 filters
CONV1_OUT_224 = (224 + 2 * 1 - 11) // 4 + 1  # 54
CONV1_MACS_224 = 11 * 11 * 1 * 96 * CONV1_OUT_224**2


# ---------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("fmt, suffix", [("markdown", "md"), ("json", "json")])
def test_table_alexnet_golden(fmt: str, suffix: str, update_golden: bool) -> None:
    path = GOLDEN / f"table_alexnet.{suffix}"
    out = ok("table", "alexnet", "--format", fmt)
    if update_golden:
        path.parent.mkdir(exist_ok=True)
        path.write_text(out)
    assert out == path.read_text(), f"{path.name} changed: review, then rerun with pytest --update-golden"


# ---------------------------------------------------------------------------- table


def test_json_is_exactly_the_api_dict() -> None:
    assert json.loads(ok("table", "alexnet", "--format", "json")) == archcalc.analyze("alexnet").to_dict()
    data = json.loads(ok("table", "lenet", "--format", "json", "--batch", "2", "--dtype", "float16"))
    assert data == archcalc.analyze("lenet", batch=2, dtype="float16").to_dict()


def test_table_csv_rows_and_totals() -> None:
    rows = csv_rows("table", "alexnet")
    assert list(rows[0]) == ["name", "op", "output_shape", "params", "macs", "flops", "activations",
                             "activation_bytes", "receptive_field"]
    conv1 = rows[0]
    assert conv1["name"] == "conv1" and conv1["op"] == "conv2d 11x11 /4 p1"
    assert conv1["output_shape"] == f"1x96x{CONV1_OUT_224}x{CONV1_OUT_224}"
    assert int(conv1["params"]) == 11 * 11 * 1 * 96 + 96
    assert int(conv1["macs"]) == CONV1_MACS_224 and int(conv1["flops"]) == 2 * CONV1_MACS_224
    assert int(conv1["activation_bytes"]) == 4 * int(conv1["activations"]) == 4 * 96 * CONV1_OUT_224**2
    assert conv1["receptive_field"] == "11x11"
    total = rows[-1]
    assert total["name"] == "total"
    assert int(total["params"]) == sum(int(r["params"]) for r in rows[:-1])
    assert int(total["macs"]) == sum(int(r["macs"]) for r in rows[:-1])
    assert total["op"] == ""  # the depth is a note, not an op


def test_table_plain_text_has_header_line_and_totals() -> None:
    out = ok("table", "alexnet")
    lines = out.splitlines()
    assert lines[0] == "alexnet: input 1x224x224, batch 1, float32"
    assert out.count("MACs: multiply-accumulates") == 1  # the conventions, said once, under the table
    assert "\x1b" not in out  # CliRunner's stdout is not a terminal: no colour codes
    total = next(line for line in lines if line.startswith("total"))
    assert f"{archcalc.analyze('alexnet').total.params:,}" in total
    assert lines[lines.index(total) - 1].startswith("-----")  # a rule sets the totals apart
    conv1 = next(line for line in lines if line.startswith("conv1 "))  # one line per row: grep works
    assert f"{CONV1_MACS_224:,}" in conv1 and "conv2d 11x11 /4 p1" in conv1


@pytest.mark.parametrize("given, conv1_out, channels", [("227", 55, 1), ("3x227x227", 55, 3), ("227x200", 55, 1)])
def test_input_option(given: str, conv1_out: int, channels: int) -> None:
    conv1 = csv_rows("table", "alexnet", "--input", given)[0]
    width = (200 + 2 - 11) // 4 + 1 if given.endswith("200") else conv1_out
    assert conv1["output_shape"] == f"1x96x{conv1_out}x{width}"
    assert int(conv1["params"]) == 11 * 11 * channels * 96 + 96


def test_batch_scales_macs_and_activations_not_params() -> None:
    one, four = csv_rows("table", "alexnet")[-1], csv_rows("table", "alexnet", "--batch", "4")[-1]
    assert int(four["macs"]) == 4 * int(one["macs"])
    assert int(four["activations"]) == 4 * int(one["activations"])
    assert four["params"] == one["params"]
    assert "batch 4" in ok("table", "alexnet", "-b", "4").splitlines()[0]


@pytest.mark.parametrize("dtype, size", [("float32", 4), ("float16", 2), ("bfloat16", 2)])
def test_dtype_sets_bytes(dtype: str, size: int) -> None:
    total = csv_rows("table", "lenet", "--dtype", dtype)[-1]
    assert int(total["activation_bytes"]) == size * int(total["activations"])


def test_set_parameter() -> None:
    # three 3x3 convs, C=64 in and out, no bias: 27 C^2 weights (VGG paper, section 2.3)
    assert int(csv_rows("table", "stacked-3x3", "--set", "C=64")[-1]["params"]) == 27 * 64**2
    assert int(csv_rows("table", "stacked-3x3", "-s", "C=64", "-s", "C=32")[-1]["params"]) == 27 * 32**2


def test_depth_folds_composites() -> None:
    flat = csv_rows("table", "resnet152")
    folded = csv_rows("table", "resnet152", "--depth", "1")
    assert len(folded) < 20 < len(flat)
    assert folded[-1] == flat[-1]  # the totals do not change
    assert sum(int(r["params"]) for r in folded[:-1]) == int(folded[-1]["params"])
    assert sum(int(r["macs"]) for r in folded[:-1]) == int(folded[-1]["macs"])
    names = [r["name"] for r in folded[:-1]]
    assert len(names) == len(set(names)) and not any("." in n for n in names)


def test_units() -> None:
    out = ok("table", "alexnet", "--units")
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert "46.8M" in total and "1.88G" in total  # 46,764,746 params, 2 x 938,146,176 FLOPs


def test_rich_table_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("archcalc.formatting.plain_output", lambda stream=None: False)
    result = invoke("table", "alexnet", env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert f"{CONV1_MACS_224:,}" in result.stdout
    assert "total" in result.stdout and "layer" in result.stdout


def terminal(table, width: int, units: bool | None = None) -> str:
    """What print_rich shows on a terminal `width` columns wide, trailing spaces stripped."""
    from rich.console import Console

    console = Console(width=width, file=io.StringIO(), color_system=None, highlight=False)
    print_rich(table, units, console=console)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines()) + "\n"


TERMINAL_TABLES = {
    "table_alexnet": lambda: layer_table(archcalc.analyze("alexnet"), archcalc.analyze("alexnet").rows),
    "table_resnet18_depth2": lambda: layer_table(archcalc.analyze("resnet18"), archcalc.analyze("resnet18").fold(2)),
    "list": lambda: list_table("lenet"),  # two families, lenet and lenet5
    "compare_lenet_alexnet_vgg16": lambda: compare_table([archcalc.analyze(m) for m in ("lenet", "alexnet", "vgg16")]),
}


@pytest.mark.parametrize("width", [80, 100, 120])
@pytest.mark.parametrize("name", TERMINAL_TABLES)
def test_terminal_tables_fit_golden(name: str, width: int, update_golden: bool) -> None:
    # checked by eye in tmux at these widths (tmux new -d -x 80 -y 50; send-keys; capture-pane)
    table = TERMINAL_TABLES[name]()
    out = terminal(table, width)
    assert max(len(line) for line in out.splitlines()) <= width
    path = GOLDEN / f"terminal_{name}_{width}.txt"
    if update_golden:
        path.write_text(out)
    assert out == path.read_text(), f"{path.name} changed: review, then rerun with pytest --update-golden"


def test_a_narrow_terminal_leaves_out_whole_columns_and_says_so() -> None:
    result = archcalc.analyze("alexnet")
    out = terminal(layer_table(result, result.rows), 100)
    assert "act. bytes" not in out.splitlines()[1] and "not shown at 100 columns: activations, act. bytes" in out
    assert "--wide" in out and "323x323" in out and "26,218,496" in out  # numbers whole, exact
    units = terminal(layer_table(result, result.rows), 60)
    assert "K/M/G units" in units and "--exact" in units and "26.2M" in units
    exact = terminal(layer_table(result, result.rows), 60, units=False)  # --exact: never units
    assert "K/M/G" not in exact and "26,218,496" in exact
    wide = terminal(layer_table(result, result.rows), 250)
    assert "not shown" not in wide and "act. bytes" in wide


def test_plain_output_rule() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "environ", env)
        assert plain_output(io.StringIO()) and not plain_output(Tty())
        env["NO_COLOR"] = "1"
        assert plain_output(Tty())


# ---------------------------------------------------------------------------- list, compare


def test_list_names_every_builtin() -> None:
    rows = csv_rows("list")
    assert sorted(r["name"] for r in rows) == archcalc.list_models()
    assert [r["family"] for r in rows] == sorted(r["family"] for r in rows), "grouped by family"
    for family in {r["family"] for r in rows}:  # each family from the fewest MACs to the most
        macs = [int(r["macs"]) for r in rows if r["family"] == family]
        assert macs == sorted(macs), family
    regnets = [r["name"] for r in rows if r["family"] == "regnet"]
    assert regnets.index("regnet-x-400mf") < regnets.index("regnet-x-800mf") < regnets.index("regnet-x-1-6gf")
    lenet = next(r for r in rows if r["name"] == "lenet")
    assert lenet["input_shape"] == "1x28x28" and int(lenet["params"]) == 61_706  # d2l 7.6: 61,706
    data = json.loads(ok("list", "--format", "json"))
    assert {d["name"] for d in data} == set(archcalc.list_models())


def test_list_filters_by_family_and_text() -> None:
    assert {r["name"] for r in csv_rows("list", "--family", "vit")} == set(archcalc.list_models("vit"))
    assert all(r["family"] == "vit" for r in csv_rows("list", "--family", "vit"))
    assert {r["name"] for r in csv_rows("list", "V2_X1")} == {"shufflenet-v2-x1-0", "shufflenet-v2-x1-5"}
    assert {r["name"] for r in csv_rows("list", "convnext")} == set(archcalc.list_models("convnext"))
    result = invoke("list", "--family", "effnet")
    assert result.exit_code == 2 and result.stderr == "error: unknown family 'effnet' (did you mean lenet?); " \
        "the families: " + ", ".join(archcalc.registry.families()) + "\n"
    result = invoke("list", "nothing-like-this")
    assert result.exit_code == 2 and result.stderr.startswith("error: no built-in model's name or family holds")


def test_list_analyses_only_what_it_shows(monkeypatch) -> None:
    import archcalc.cli as cli

    analysed = []
    monkeypatch.setattr(cli, "analyse", lambda name: analysed.append(name) or archcalc.analyze(name))
    ok("list", "--family", "lenet5")
    assert analysed == ["lenet5"]


def test_torchvision_builder_spelling_names_the_same_builtin() -> None:
    assert archcalc.load("efficientnet_b0").name == "efficientnet-b0"
    assert archcalc.analyze("vgg16_bn").total == archcalc.analyze("vgg16-bn").total
    assert csv_rows("table", "shufflenet_v2_x1_0") == csv_rows("table", "shufflenet-v2-x1-0")
    # a name that is a built-in as written stays that built-in: d2l's alexnet, not torchvision's
    assert archcalc.load("alexnet").input == (1, 224, 224)
    assert archcalc.load("googlenet").description.startswith("GoogLeNet as published")


def test_compare_inception_modules() -> None:
    # CS231n lecture 9: the naive module on 28x28x256 costs 854M multiply-adds
    naive = 28 * 28 * 256 * (128 * 1 + 192 * 9 + 96 * 25)
    bottleneck = 28 * 28 * (256 * 64 * 3 + 256 * 128 + 64 * 192 * 9 + 64 * 96 * 25)
    rows = {r["metric"]: r for r in csv_rows("compare", "inception-naive", "inception-bottleneck")}
    assert int(rows["MACs"]["inception-naive"]) == naive == 854_196_224
    assert int(rows["MACs"]["inception-bottleneck"]) == bottleneck
    assert float(rows["MACs"]["inception-bottleneck/inception-naive"]) == pytest.approx(bottleneck / naive)


def test_compare_set_applies_where_the_parameter_exists() -> None:
    rows = {r["metric"]: r for r in csv_rows("compare", "conv7x7", "stacked-3x3", "--set", "C=64")}
    assert int(rows["params"]["conv7x7"]) == 49 * 64**2 and int(rows["params"]["stacked-3x3"]) == 27 * 64**2
    assert float(rows["params"]["stacked-3x3/conv7x7"]) == pytest.approx(27 / 49)
    assert rows["receptive field (px)"]["stacked-3x3"] == rows["receptive field (px)"]["conv7x7"] == "7x7"
    assert rows["depth"]["conv7x7"] == "1" and rows["depth"]["stacked-3x3"] == "3"
    rows = {r["metric"]: r for r in csv_rows("compare", "lenet", "stacked-3x3", "--set", "C=64")}
    assert int(rows["params"]["lenet"]) == 61_706 and int(rows["params"]["stacked-3x3"]) == 27 * 64**2


def test_compare_formats() -> None:
    out = ok("compare", "lenet", "alexnet")
    assert "x lenet" in out and "\x1b" not in out
    assert "| metric" in ok("compare", "lenet", "alexnet", "--format", "markdown")
    data = json.loads(ok("compare", "lenet", "alexnet", "--format", "json"))
    assert data["baseline"] == "lenet"
    alexnet = data["models"][1]
    assert alexnet["total"] == archcalc.analyze("alexnet").total.to_dict()
    assert alexnet["ratios"]["params"] == pytest.approx(46_764_746 / 61_706)
    same = csv_rows("compare", "lenet", "lenet", "--input", "1x32x32")
    assert list(same[0]) == ["metric", "lenet", "lenet (2)", "lenet (2)/lenet"]


# ---------------------------------------------------------------------------- errors


def assert_usage_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.stderr.replace("│", " ").split())  # typer may box and wrap the message
    for fragment in fragments:
        assert fragment in text, text


def test_unknown_model_suggests() -> None:
    result = invoke("table", "alexnet-papr")
    assert_usage_error(result, "did you mean alexnet-paper?")
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert_usage_error(invoke("compare", "lenet", "alexnt"), "did you mean alexnet")


def test_spec_error_is_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\ninput: [3, 8, 8]\nlayers:\n  - {conv2d: {out_channels: 4, kernel_size: 11}}\n")
    result = invoke("table", str(spec))
    assert_usage_error(result, f"error: {spec}:4: layers[0] (conv2d): kernel 11")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["table", "alexnet", "--input", "3x0x5"], "every size must be at least 1"),
        (["table", "alexnet", "--input", "big"], "is not CxHxW"),
        (["table", "alexnet", "--input", "1x2x3x4"], "is not CxHxW"),
        (["table", "alexnet", "--input", "²"], "is not CxHxW"),  # a digit to str.isdigit, not to int()
        (["table", "alexnet", "--batch", "-1"], "--batch"),
        (["table", "alexnet", "--batch", "0"], "--batch"),
        (["table", "alexnet", "--format", "xml"], "'xml' is not one of"),
        (["table", "alexnet", "--dtype", "int4"], "--dtype"),
        (["table", "alexnet", "--depth", "0"], "--depth"),
        (["table", "stacked-3x3", "--set", "C"], "is not KEY=VALUE"),
        (["table", "stacked-3x3", "--set", "C=[1"], "not valid YAML"),
        (["compare", "lenet"], "at least two models"),
        (["list", "--format", "yaml"], "'yaml' is not one of"),
    ],
)
def test_bad_option_values_are_usage_errors(args: list[str], fragment: str) -> None:
    assert_usage_error(invoke(*args), fragment)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["table", "stacked-3x3", "--set", "D=3"], "has no parameter 'D'"),
        (["table", "stacked-3x3", "--set", "C=-1"], "error: "),
        (["table", "lenet", "--input", "1x3x3"], "error: "),
        (["compare", "lenet", "alexnet", "--set", "C=64"], "none of lenet, alexnet has a parameter 'C'"),
    ],
)
def test_impossible_specs_are_one_line_errors(args: list[str], fragment: str) -> None:
    result = invoke(*args)
    assert_usage_error(result, fragment)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


# ---------------------------------------------------------------------------- help, version, parsing


def test_version() -> None:
    assert ok("--version").strip() == f"archcalc {archcalc.__version__}"


@pytest.mark.parametrize("command", ["table", "list", "compare"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    out = ok(command, "--help")
    assert "Example" in out and f"archcalc {command}" in out


def test_no_arguments_shows_help() -> None:
    result = invoke()
    assert "table" in result.output and "compare" in result.output and "list" in result.output


def test_model_completion() -> None:
    assert complete_model("alexnet-") == ["alexnet-paper", "alexnet-torchvision"]
    assert complete_model("zz") == []


def test_input_parsing() -> None:
    assert parse_input("227").resolve((1, 224, 224)) == (1, 227, 227)
    assert parse_input("227x199").resolve((3, 224, 224)) == (3, 227, 199)
    assert parse_input("3x32x32").resolve((1, 28, 28)) == (3, 32, 32)
    assert parse_input("100").resolve((784,)) == (100,)  # a flat model's features
    assert isinstance(parse_input("2,3,4"), InputSize) and parse_input("2,3,4").dims == (2, 3, 4)


@pytest.mark.parametrize(
    "n, exact, units",
    [(999, "999", "999"), (1000, "1,000", "1.00K"), (61_706, "61,706", "61.7K"),
     (999_950, "999,950", "1.00M"), (46_764_746, "46,764,746", "46.8M"), (1_876_292_352, "1,876,292,352", "1.88G")],
)
def test_number_formatting(n: int, exact: str, units: str) -> None:
    assert number(n) == exact and number(n, units=True) == units


# ---------------------------------------------------------------------------- the real process


def run_module(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "archcalc", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})


def test_python_dash_m_and_the_table_path_never_import_torch() -> None:
    code = (
        "import sys; sys.argv = ['archcalc', *sys.argv[1:]]\n"
        "from archcalc.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'fvcore', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    for args in (["table", "alexnet"], ["list"], ["compare", "lenet", "alexnet"]):
        done = run_module(*args, code=code)
        assert done.returncode == 0, done.stderr
        assert "HEAVY []" in done.stderr
    done = run_module("table", "lenet", "--format", "json")
    assert done.returncode == 0 and json.loads(done.stdout)["model"] == "lenet"


def test_a_table_starts_with_what_it_needs_only() -> None:
    # the start-up target (archcalc bench: within 1.5x of importing rich, typer, yaml, tabulate): one spec file
    # parsed, not every built-in's; fractions only past an upsampling pool, json only for JSON or import
    code = (
        "import sys; sys.argv = ['archcalc', *sys.argv[1:]]\n"
        "from archcalc import registry\nfrom archcalc.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', [m for m in ('fractions', 'decimal', 'json') if m in sys.modules],"
        " registry._spec_file.cache_info().currsize, file=sys.stderr)\n"
    )
    for args in (["table", "alexnet"], ["table", "resnet50", "--depth", "1"], ["explain", "vgg16", "conv1"]):
        done = run_module(*args, code=code)
        assert done.returncode == 0 and "LOADED [] 1" in done.stderr, (args, done.stderr)


def test_shell_completion_offers_model_names() -> None:
    # typer's completion protocol: the shell sets _ARCHCALC_COMPLETE and the words typed so far
    env = {**os.environ, "_ARCHCALC_COMPLETE": "complete_bash", "COMP_WORDS": "archcalc table alexnet-",
           "COMP_CWORD": "2"}
    done = subprocess.run([sys.executable, "-m", "archcalc"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["alexnet-paper", "alexnet-torchvision"]


@pytest.mark.parametrize(
    "args, line",
    [
        (["table", "alexnet", "--dtype", "float8"],
         "error: Invalid value for '--dtype': 'float8' is not one of 'float32', 'float16', 'bfloat16', 'float64', "
         "'int8'. (see archcalc table --help)"),
        (["table"], "error: Missing argument 'MODEL'. (see archcalc table --help)"),
        (["tabel"], "error: No such command 'tabel'. Did you mean 'table'? (see archcalc --help)"),
    ],
)
def test_usage_errors_are_one_sentence_on_one_line(args: list[str], line: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2 and result.stderr == line + "\n"


def test_plain_flags_show_no_type_in_help() -> None:
    out = runner.invoke(app, ["crosscheck", "--help"], env={"COLUMNS": "150"}).stdout
    flag = next(line for line in out.splitlines() if "--all" in line)
    assert "<bool>" not in out and "BOOLEAN" not in flag


def test_no_prose_says_seeds() -> None:
    # the course notes this project audits are called so (or named), in list, help and report prose
    import re

    from archcalc.reports import claims, lenet_alexnet
    from archcalc.reports.build import REPORTS

    texts = [runner.invoke(app, ["list"]).stdout, runner.invoke(app, ["--help"]).stdout,
             *(runner.invoke(app, [command, "--help"]).stdout for command in ("table", "list", "report", "explain")),
             claims.render(), lenet_alexnet.render(), *(what for _, what, _ in REPORTS)]
    for text in texts:
        assert not re.search(r"\bseeds?\b", text, re.IGNORECASE), re.search(r".{40}\bseeds?\b.{40}", text, re.I)


def test_every_command_has_a_one_line_summary_in_the_help() -> None:
    # the command list shows each summary as it is written: a line break inside it broke the list mid-sentence
    import typer

    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        summary = command.short_help or command.help.split("\n\n")[0]
        assert "\n" not in summary.strip(), name
