"""The progress bar: drawn on stderr only when it is a terminal, gone when done."""

from __future__ import annotations

import io

import pytest

from archcalc.progress import progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_nothing_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    with progress("cross-check", total=3) as step:
        step("lenet", advance=1)
    assert stderr.getvalue() == ""


def test_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = Tty()
    monkeypatch.setattr("sys.stderr", stderr)
    with progress("generating reports", total=2) as step:
        step("claims.md", advance=1)
        step("lenet", advance=1)
    assert "generating reports" in stderr.getvalue()
