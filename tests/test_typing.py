"""The public API type-checks: archcalc ships py.typed, so users' type checkers read its annotations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_public_api_type_checks(tmp_path: Path) -> None:
    assert (ROOT / "archcalc" / "py.typed").is_file()
    # the files to check are pyproject.toml's [tool.mypy] files
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
