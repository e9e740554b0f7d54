"""Files at the edge: atomic writes of generated reports, and the staleness check."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

Files = Mapping[str, bytes]  # path relative to the reports folder -> contents


def write_atomic(path: Path, data: bytes) -> bool:
    """Write via a temporary file in the same folder, then rename: readers see the old file or the new one,
    never half of one. Returns whether the contents changed (an unchanged file is not touched)."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def write_all(files: Files, out: Path) -> list[str]:
    """Write every file under `out`; the names of those whose contents changed."""
    return [name for name, data in files.items() if write_atomic(out / name, data)]


def stale(files: Files, out: Path) -> list[str]:
    """Files under `out` that are missing or differ from what was generated."""
    return [name for name, data in files.items() if not (out / name).is_file() or (out / name).read_bytes() != data]


def version_drift(names: Iterable[str], out: Path) -> dict[str, str]:
    """Among stale charts, those drawn with another matplotlib version: name -> that version.
    Their bytes cannot match across versions, so `--check` reports them without failing."""
    from archcalc.reports.charts import current_version, drawn_with

    now = current_version()
    drift = {}
    for name in names:
        path = out / name
        if name.endswith(".png") and path.is_file():
            then = drawn_with(path.read_bytes())
            if then and now and then != now:
                drift[name] = then
    return drift


def orphans(files: Files, out: Path, keep: Iterable[str] = ()) -> list[str]:
    """Markdown and PNG files under `out` that generation no longer produces (a removed model's page)."""
    known = set(files) | set(keep)
    found = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.suffix in (".md", ".png") and p.is_file()]
    return sorted(name for name in found if name not in known)
