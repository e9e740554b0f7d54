"""`archcalc report`: write the generated reports under reports/, or check that they are current."""

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from archcalc.cli_common import fail
from archcalc.errors import INSTALL_ORACLES, visible
from archcalc.progress import progress

STALE = 1  # `--check` found a report that differs from what the code generates now


def _crosscheck(device: str) -> dict[str, bytes]:
    """Run the cross-check of every built-in (imports torch) and render crosscheck.md."""
    try:
        from archcalc.crosscheck import CrossCheckError, check_all
    except ImportError as err:
        fail(f"--crosscheck needs torch and fvcore ({err}): {INSTALL_ORACLES}")
    from archcalc.reports.build import crosscheck_report

    from archcalc.registry import list_models

    names = list_models()
    with progress("cross-check", total=len(names)) as step:

        def done(name, result) -> None:
            print(f"  cross-checked {name}: {'ok' if result.ok else 'DISAGREES'}", file=sys.stderr)
            step(advance=1)

        try:
            checks = check_all(names, device=device, runs=0, progress=done)  # runs=0: no timings in the report
        except CrossCheckError as err:
            fail(err)
    return crosscheck_report([c.to_dict() for c in checks])


def _torchvision_identity() -> dict[str, bytes]:
    """Prove every torchvision built-in at its default input (imports torch) and render torchvision-identity.md."""
    from archcalc.crosscheck_cli import prove_torchvision
    from archcalc.reports.build import identity_report

    started = time.perf_counter()
    proofs = prove_torchvision(None, None)
    import torch
    import torchvision  # (imported by now through archcalc.torchvision_check)

    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    return identity_report([p.to_dict() for p in proofs], versions, time.perf_counter() - started)


def report(
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Folder to write the reports into.")] = Path("reports"),
    check: Annotated[bool, typer.Option(
        "--check", help="Write nothing; exit 1 naming every report that differs from what would be generated now.")] = False,
    crosscheck: Annotated[bool, typer.Option(
        "--crosscheck", help="Also run every built-in in torch and (re)generate crosscheck.md (needs torch, fvcore).")] = False,
    device: Annotated[str, typer.Option(
        "--device", metavar="auto|cpu|cuda", help="Device for --crosscheck.")] = "auto",
    torchvision: Annotated[bool, typer.Option(
        "--torchvision", help="Also prove every torchvision built-in against torchvision's module at its default "
        "input and (re)generate torchvision-identity.md (needs torchvision; tens of minutes on a CPU).")] = False,
) -> None:
    """Generate the markdown reports and their PNG charts, or check that they are current.

    The README index, one page per built-in, LeNet vs AlexNet, 1x1 convolutions, stacked 3x3, families
    and the audit of the course notes' claims.

    Without --crosscheck (--torchvision), crosscheck.md (torchvision-identity.md) is left alone and torch is never
    imported.
    """
    from archcalc.reports import build, writer
    from archcalc.reports.charts import ChartsUnavailable

    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file, not a folder")
    if check and torchvision:
        fail("--torchvision writes its page (its times differ on every run); run it without --check")
    if check and not out.is_dir():
        fail(f"there is no {out} folder here to check: run this in the project's root, or give --out DIR")
    started = time.perf_counter()
    with progress("generating reports", total=build.steps()) as step:
        try:
            files = build.generate(progress=lambda name: step(name, advance=1))
        except ChartsUnavailable as err:
            fail(err)
    if crosscheck:
        files.update(_crosscheck(device))
    if torchvision:
        files.update(_torchvision_identity())
    seconds = time.perf_counter() - started
    if check:
        stale = writer.stale(files, out)
        drift = writer.version_drift(stale, out, files)
        for name, then in drift.items():
            print(f"note: {visible(str(out / name))} was drawn with {then}, not the installed one: not compared", file=sys.stderr)
        stale = [name for name in stale if name not in drift]
        extra = writer.orphans(files, out, keep=build.WRITTEN_ELSEWHERE)
        left = writer.leftovers(files, out)
        for name in left:
            print(f"stale: {visible(str(out / name))} was left by an interrupted `archcalc report`; delete it", file=sys.stderr)
        extra += left
        for name in stale:
            what = "differs from what `archcalc report` generates now" if (out / name).exists() else "is missing"
            print(f"stale: {visible(str(out / name))} {what}", file=sys.stderr)
        for name in extra:
            print(f"stale: {visible(str(out / name))} is no longer generated; delete it", file=sys.stderr)
        if stale or extra:
            print(f"{len(stale) + len(extra)} stale report file(s): run `archcalc report` and commit the result",
                  file=sys.stderr)
            raise typer.Exit(STALE)
        print(f"{len(files)} report files in {visible(str(out))} are current ({seconds:.1f} s)", file=sys.stderr)
        return
    try:
        changed = writer.write_all(files, out)
    except OSError as err:  # a read-only folder, a full disk
        fail(f"cannot write the reports to {out}: {err.strerror or err}" + (f" ({err.filename})" if err.filename else ""))
    print(f"wrote {len(changed)} changed of {len(files)} report files to {visible(str(out))} ({seconds:.1f} s)", file=sys.stderr)
    for name in writer.orphans(files, out, keep=build.WRITTEN_ELSEWHERE):
        print(f"note: {visible(str(out / name))} is no longer generated; delete it", file=sys.stderr)
