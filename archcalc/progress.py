"""A progress bar on stderr for the long commands (crosscheck, report), shown only when stderr is a terminal."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

# step(text=None, advance=0): say what is being done now, and how many steps were finished
Step = Callable[..., None]


def _silent(text: Optional[str] = None, advance: int = 0) -> None:
    pass


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Step]:
    """A rich progress bar (`total` steps; None: no end known) that disappears when done. When stderr
    is not a terminal nothing is shown and the step function does nothing."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        yield _silent
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               *([MofNCompleteColumn()] if total is not None else []), TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def step(text: Optional[str] = None, advance: int = 0) -> None:
            bar.update(task, description=f"{description}: {text}" if text else description, advance=advance)

        yield step
