"""`archcalc bench`: time archcalc against fvcore, FlopCounterMode and a forward pass; write the report."""

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from archcalc.cli_common import fail
from archcalc.errors import INSTALL_ORACLES, visible
from archcalc.registry import list_models

ListOption = Optional[list[str]]


def _split(values: list[str] | None) -> list[str]:
    """`-m a -m b` and `-m a,b` alike."""
    return [v.strip() for text in values or () for v in text.split(",") if v.strip()]


def _ints(values: list[str] | None, option: str) -> tuple[int, ...] | None:
    items = _split(values)
    if not items:
        return None
    if not all(v.isdigit() and int(v) >= 1 for v in items):
        raise typer.BadParameter(f"{', '.join(items)}: positive integers expected", param_hint=option)
    return tuple(int(v) for v in items)


def _models(values: list[str] | None, option: str) -> tuple[str, ...] | None:
    names = _split(values)
    unknown = [n for n in names if n not in list_models()]
    if unknown:
        raise typer.BadParameter(f"unknown model {unknown[0]!r}; `archcalc list` shows the built-ins", param_hint=option)
    return tuple(names) or None


def _command_line(ctx: typer.Context) -> str:
    """`archcalc bench` and the options given on the command line, for the report's header."""
    parts = ["archcalc", ctx.info_name or "bench"]
    for param in ctx.command.params:
        if param.name is None:
            continue
        source = ctx.get_parameter_source(param.name)
        if getattr(source, "name", None) != "COMMANDLINE":
            continue
        value = ctx.params[param.name]
        flag = param.opts[0] if value is not False or not getattr(param, "secondary_opts", None) else param.secondary_opts[0]
        if isinstance(value, bool):
            parts.append(flag)
        else:
            for item in value if isinstance(value, (list, tuple)) else [value]:
                parts += [flag, str(item)]
    return " ".join(parts)


def bench(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="224x224, batch 1, few repeats: about a minute.")] = False,
    full: Annotated[bool, typer.Option(
        "--full", help="Every case that fits in memory, up to 7 runs each: an hour or more on two cores.")] = False,
    models: Annotated[ListOption, typer.Option(
        "--model", "-m", metavar="NAME[,NAME]", show_default=False,
        help="Models to time (repeatable); default: one of every family (alexnet-torchvision, vgg16, "
        "googlenet-torchvision, resnet50, resnet152, mobilenet-v3-large, efficientnet-b0, shufflenet-v2-x1-0, "
        "convnext-tiny, vit-b-16, swin-t).")] = None,
    sizes: Annotated[ListOption, typer.Option(
        "--size", metavar="PX[,PX]", show_default=False, help="Input sizes (H = W); default: 224, 512, 1024.")] = None,
    batches: Annotated[ListOption, typer.Option(
        "--batch", "-b", metavar="N[,N]", show_default=False, help="Batch sizes; default: 1, 32.")] = None,
    depth_models: Annotated[ListOption, typer.Option(
        "--depth-model", metavar="NAME[,NAME]", show_default=False,
        help="Models of the time-vs-depth sweep at 224x224; default: resnet18, 34, 50, 101, 152.")] = None,
    repeat: Annotated[Optional[int], typer.Option(
        "--repeat", "-r", min=1, show_default=False, help="Timed analyses per case (default 50).")] = None,
    tool_repeat: Annotated[Optional[int], typer.Option(
        "--tool-repeat", min=1, show_default=False, help="Timed runs per case of each torch tool (default 5).")] = None,
    tool_seconds: Annotated[Optional[float], typer.Option(
        "--tool-seconds", min=0, show_default=False,
        help="Stop repeating a torch tool on a case once its runs took this long (default 2).")] = None,
    max_gmac: Annotated[Optional[float], typer.Option(
        "--max-gmac", min=0, show_default=False,
        help="Torch tools skip cases above this many GMAC per pass (default 100; resnet152 at 1024 is "
        "always run, for its target).")] = None,
    max_memory: Annotated[Optional[float], typer.Option(
        "--max-memory", min=0, metavar="GB", show_default=False,
        help="Torch tools skip cases that could need more memory (default: half of what is free).")] = None,
    cli_runs: Annotated[Optional[int], typer.Option(
        "--cli-runs", min=0, show_default=False,
        help="Timed processes per command line (default 5; 0: do not time the command line).")] = None,
    oracles: Annotated[bool, typer.Option(
        "--oracles/--no-oracles", help="Time fvcore, FlopCounterMode and a forward pass (needs torch, fvcore).")] = True,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write the log-log PNGs (needs matplotlib).")] = True,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", metavar="FILE.md", help="Where to write the markdown report; `-` for none.")
    ] = Path("reports/performance.md"),
) -> None:
    """Time archcalc's analysis against fvcore, FlopCounterMode and a plain forward pass, side by side.

    Prints each figure, the ratios and the targets, and writes a markdown report with log-log plots. The default run takes a few minutes on two cores.
    """
    from archcalc.bench import Settings, run_benchmark  # not imported by `archcalc table`

    if quick and full:
        fail("--quick and --full exclude each other")
    missing = [name for name in ("torch", "fvcore") if oracles and importlib.util.find_spec(name) is None]
    if missing:
        fail(f"timing the oracles needs {' and '.join(missing)}: {INSTALL_ORACLES}; or run with --no-oracles")
    write = out is not None and str(out) != "-"
    if write and plots and importlib.util.find_spec("matplotlib") is None:
        fail("the plots need matplotlib: pip install 'archcalc[report]'; or run with --no-plots")
    if write and (out.is_dir() or (out.parent.exists() and not out.parent.is_dir())):  # type: ignore[union-attr]
        fail(f"--out {out} must be a file in a folder")
    preset = Settings.quick() if quick else Settings.full() if full else Settings.standard()
    overrides: dict[str, Any] = {
        "models": _models(models, "--model"),
        "sizes": _ints(sizes, "--size"),
        "batches": _ints(batches, "--batch"),
        "depth_models": _models(depth_models, "--depth-model"),
        "analysis_repeat": repeat,
        "tool_repeat": tool_repeat,
        "tool_seconds": tool_seconds,
        "max_gmac": max_gmac,
        "max_memory_gb": max_memory,
        "cli_runs": cli_runs,
    }
    settings = dataclasses.replace(
        preset, oracles=oracles, **{k: v for k, v in overrides.items() if v is not None}
    )
    command = _command_line(ctx)
    err = lambda text: print(f"  {text}", file=sys.stderr, flush=True)  # noqa: E731
    result = run_benchmark(settings, progress=err)

    from tabulate import tabulate

    from archcalc.bench_report import MARKS, case_table, draw_plots, render_markdown, seconds

    print(case_table(result.cases, "simple"))
    print()
    print(case_table(result.depth, "simple"))
    print()
    for label, timing in result.cli.items():
        print(f"{label}: {seconds(timing.median_s) if hasattr(timing, 'median_s') else timing}")
    print()
    print(tabulate([[t.goal, t.measured, MARKS[t.passed].strip("*")] for t in result.targets],
                   ["target", "measured", "result"], tablefmt="simple", disable_numparse=True))
    if out is not None and str(out) != "-":
        from archcalc.reports.writer import write_all

        images = draw_plots(result, out.stem) if plots else {}
        markdown = render_markdown(result, command, {kind: name for kind, (name, _) in images.items()})
        files = {out.name: markdown.encode(), **dict(images.values())}
        try:
            write_all(files, out.parent)  # each file atomically: an interrupted run leaves the old report
        except OSError as err:  # a read-only folder, a full disk
            fail(f"cannot write the report to {out.parent}: {err.strerror or err}")
        print("\nwrote " + ", ".join(visible(str(out.parent / name)) for name in files))
