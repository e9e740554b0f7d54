"""Files at the edge: atomic writes of generated reports, and the staleness check."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

Files = Mapping[str, bytes]  # path relative to the reports folder -> contents
TMP_SUFFIX = ".tmp"


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> bool:
    """Write via a temporary file in the same folder, then rename: readers see the old file or the new one,
    never half of one. The file gets `mode` (mkstemp's own is 0600). Returns whether the contents changed
    (an unchanged file is not touched)."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, mode)
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
    """Write every file under `out`, readable as the umask allows a new file; the names of those whose
    contents changed. Temporary files an interrupted run left are removed."""
    umask = os.umask(0)
    os.umask(umask)
    for leftover in leftovers(files, out):
        (out / leftover).unlink(missing_ok=True)
    return [name for name, data in files.items() if write_atomic(out / name, data, 0o666 & ~umask)]


def leftovers(files: Files, out: Path) -> list[str]:
    """Temporary files of `write_atomic` (`.NAME.XXXXXXXX.tmp`) beside the files: left by a run that was killed."""
    found: set[str] = set()
    for name in files:
        folder = (out / name).parent
        if folder.is_dir():
            found.update(p.relative_to(out).as_posix() for p in folder.glob(f".{Path(name).name}.*{TMP_SUFFIX}"))
    return sorted(found)


def stale(files: Files, out: Path) -> list[str]:
    """Files under `out` that are missing or differ from what was generated."""
    return [name for name, data in files.items() if not (out / name).is_file() or (out / name).read_bytes() != data]


def version_drift(names: Iterable[str], out: Path, files: Files) -> dict[str, str]:
    """Among stale charts, those drawn from the same data with another matplotlib version: name -> that
    version. Their bytes cannot match across versions, so `--check` reports them without failing;
    a chart drawn from other data (another model's, relabelled) is stale whatever its version."""
    from archcalc.reports.charts import current_version, drawn_from, drawn_with

    now = current_version()
    drift = {}
    for name in names:
        path = out / name
        if name.endswith(".png") and path.is_file() and name in files:
            old = path.read_bytes()
            then, source = drawn_with(old), drawn_from(old)
            if then and now and then != now and source and source == drawn_from(files[name]):
                drift[name] = then
    return drift


def orphans(files: Files, out: Path, keep: Iterable[str] = ()) -> list[str]:
    """Markdown and PNG files under `out` that generation no longer produces (a removed model's page)."""
    known = set(files) | set(keep)
    found = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.suffix in (".md", ".png") and p.is_file()]
    return sorted(name for name in found if name not in known)
