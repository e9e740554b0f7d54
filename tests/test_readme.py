"""The README's Python example runs and its assertions hold, its sample output is what the CLI prints now,
and its test line is .ci/run's."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


def test_ci_runs_the_readme_test_line():
    line = next(l for l in README.splitlines() if "pytest" in l and l.startswith("pip install"))
    command = line.split("#")[0].strip()
    assert command in (ROOT / ".ci" / "run").read_text()


def test_yaml_example_is_a_valid_spec(tmp_path):
    import archcalc

    spec = re.search(r"```yaml\n(name: tiny.*?)```", README, re.S).group(1)
    path = tmp_path / "tiny.yaml"
    path.write_text(spec)
    result = archcalc.analyze(path)
    assert result.rows[-1].output_shape == (1, 10)


def test_console_examples_are_current():
    from typer.testing import CliRunner

    from archcalc.cli import app

    blocks = re.findall(r"```console\n\$ archcalc (.*?)\n(.*?)```", README, re.S)
    assert blocks
    for command, shown in blocks:
        result = CliRunner().invoke(app, command.split(), env={"NO_COLOR": "1"})
        assert result.exit_code == 0, result.output
        assert result.stdout == shown, f"README's `archcalc {command}` is stale: paste its output again"


def test_counting_conventions_are_what_explain_columns_prints():
    from archcalc.tables import EXPLAINED_COLUMNS

    section = README.split("## Counting conventions")[1].split("\n## ")[0]
    rows = re.findall(r"^\| (.+?) \| (.+?) \|$", section, re.M)[2:]  # past the header and its rule
    assert rows == list(EXPLAINED_COLUMNS)
