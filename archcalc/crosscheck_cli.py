"""`archcalc crosscheck`: run a spec as a real torch network and compare it with the calculator, layer by layer.

torch and fvcore are imported inside the command only (`archcalc table` never loads them).
Exit status: 0 when every row agrees, 1 on any disagreement, 2 on a usage or spec error
(including `--device cuda` without CUDA).
"""

from __future__ import annotations

import enum
import sys
import time
from typing import TYPE_CHECKING, Annotated, Callable, Optional

import typer

from archcalc.cli_common import (
    BatchOption, FormatOption, InputOption, InputSize, OutputFormat, SetOption, Setting, UnitsOption, complete_model,
    fail, load_model, settings_per_model,
)
from archcalc.errors import INSTALL_ORACLES, SpecError
from archcalc.formatting import Column, Table, number, render, shape, to_json
from archcalc.progress import progress
from archcalc.registry import list_models

if TYPE_CHECKING:
    from archcalc.crosscheck import CheckResult
    from archcalc.torchvision_check import Identity

DISAGREE = 1


class Device(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


MARKS = {"ok": "✓", "oracle-gap": "~ oracle gap", "mismatch": "✗"}

LAYER_COLUMNS = (
    Column("layer", "layer", numeric=False, wrap=True),
    Column("op", "op", numeric=False, wrap=True),
    Column("output_shape", "output", numeric=False, drop=1),  # (a narrow terminal leaves out params, then output:
    Column("params", "params", drop=2),  # a disagreement in either is also a note under the table)
    Column("fvcore_flops", "fvcore (calc)"),
    Column("fvcore", "fvcore"),
    Column("torch_flops", "FLOPs (calc)"),
    Column("torch", "FlopCounterMode"),
    Column("agreement", "agrees", numeric=False),
)

SUMMARY_COLUMNS = (
    Column("model", "model", numeric=False),
    Column("input", "input", numeric=False),
    Column("rows", "rows"),
    Column("mismatches", "mismatches"),
    Column("oracle_gaps", "oracle gaps"),
    Column("params", "params"),
    Column("fvcore", "fvcore"),
    Column("torch", "FlopCounterMode"),
    Column("forward_ms", "forward ms"),
    Column("flops_per_s", "speed", numeric=False),
    Column("seconds", "check s"),
    Column("agreement", "agrees", numeric=False),
)


def _mark(status: str, mismatches: tuple[str, ...]) -> str:
    return f"✗ {', '.join(mismatches)}" if mismatches else MARKS[status]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}"


def _rate(flops_per_s: float) -> str:
    """`912 MFLOP/s`, `1.23 GFLOP/s`: three significant digits in the unit that fits."""
    text = number(round(flops_per_s), units=True)
    return f"{text[:-1]} {text[-1]}FLOP/s" if text[-1].isalpha() else f"{text} FLOP/s"


def _verdict(checked: CheckResult) -> str:
    bad = len(checked.mismatches)
    if checked.ok:
        gaps = sum(layer.status == "oracle-gap" for layer in checked.layers)
        extra = f" ({gaps} oracle gap{'s' * (gaps != 1)}, see docs/oracles.md)" if gaps else ""
        return f"agree: all {len(checked.layers)} rows and the totals{extra}"
    parts = [f"{bad} of {len(checked.layers)} rows"] if bad else []
    parts += list(checked.problems) + ([] if checked.totals.ok else ["the totals"])
    return f"DISAGREE: {'; '.join(parts)}"


def layer_table(checked: CheckResult) -> Table:
    """One row per calculator row: the calculator beside fvcore and FlopCounterMode, and the mark."""
    from archcalc.crosscheck import ORACLE_CONVENTIONS

    t = checked.totals
    rows = [
        [layer.name, layer.description, layer.shape, layer.params, layer.fvcore_flops, layer.fvcore,
         layer.torch_flops, layer.torch, _mark(layer.status, layer.mismatches)]
        for layer in checked.layers
    ]
    total = ["total", "", None, t.params, t.fvcore_flops, t.fvcore, t.torch_flops, t.torch, "✓" if t.ok else "✗"]
    notes = [
        f"params: calculator {t.params:,}, torch {t.torch_params:,}",
        f"MACs (calculator): {t.macs:,}: {ORACLE_CONVENTIONS['calculator_macs']}",
        f"fvcore: calculator {t.fvcore_flops:,}"
        + (f" ({t.fvcore_expected:,} less the oracle gaps)" if t.fvcore_expected != t.fvcore_flops else "")
        + f", fvcore {t.fvcore:,}: {ORACLE_CONVENTIONS['fvcore']}",
        f"FLOPs: calculator {t.torch_flops:,}, FlopCounterMode {t.torch:,}: {ORACLE_CONVENTIONS['torch']}",
    ]
    if checked.timing is not None:
        timing = checked.timing
        notes.append(
            f"forward: median {_ms(timing.median_s)} ms of {timing.runs} runs after {timing.warmup} warm-up on "
            f"{checked.device}, {_rate(timing.flops_per_s)} (FlopCounterMode's count / median time)"
        )
    for layer in checked.layers:
        if "shape" in layer.mismatches:
            notes.append(f"{layer.name}: torch output {shape(layer.torch_shape) if layer.torch_shape else 'none'}")
        if {"params", "trainable"} & set(layer.mismatches):
            notes.append(f"{layer.name}: torch params {layer.torch_params:,} ({layer.torch_trainable_params:,} trainable)")
        notes += [f"{layer.name}: {gap}" for gap in layer.gaps if layer.status == "oracle-gap"][:1]
    notes += list(checked.problems) + checked.warning_summary() + [_verdict(checked)]
    versions = ", ".join(f"{k} {v}" for k, v in checked.versions.items())
    title = f"{checked.model}  input {shape(checked.input_shape)}  device {checked.device}  ({versions})"
    return Table(LAYER_COLUMNS, rows, total, title, notes)


def summary_table(checks: list[CheckResult], device: str) -> Table:
    """One row per model for `--all`."""
    rows = []
    for c in checks:
        timing = c.timing
        rows.append([
            c.model, shape(c.input_shape[1:]), len(c.layers), len(c.mismatches),
            sum(layer.status == "oracle-gap" for layer in c.layers), c.totals.params, c.totals.fvcore, c.totals.torch,
            _ms(timing.median_s) if timing else None, _rate(timing.flops_per_s) if timing else None,
            f"{c.seconds:.1f}", "✓" if c.ok else "✗",
        ])
    agreeing = sum(c.ok for c in checks)
    versions = ", ".join(f"{k} {v}" for k, v in checks[0].versions.items()) if checks else ""
    notes = [f"{agreeing} of {len(checks)} models agree on every row and in total"]
    notes += [f"{c.model}: {_verdict(c)}" for c in checks if not c.ok]
    return Table(SUMMARY_COLUMNS, rows, None, f"cross-check of every built-in on {device} ({versions})", notes)


def crosscheck(
    model: Annotated[Optional[str], typer.Argument(
        metavar="MODEL", autocompletion=complete_model, show_default=False,
        help="A built-in model or a spec file (FILE.yaml or FILE.yaml:MODEL); or use --all.")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Check every built-in and print a summary table.")] = False,
    device: Annotated[Device, typer.Option(
        "--device", case_sensitive=False, help="auto: CUDA when torch sees a GPU, else the CPU.")] = Device.auto,
    input: InputOption = None,
    batch: BatchOption = 1,
    set: SetOption = None,
    runs: Annotated[Optional[int], typer.Option(
        "--runs", min=0, metavar="N", show_default=False,
        help="Timed forward passes (the median is shown) after one warm-up; default 5, 3 with --all; 0: no timing.")] = None,
    format: FormatOption = OutputFormat.table,
    units: UnitsOption = False,
    torchvision: Annotated[bool, typer.Option(
        "--torchvision", help="Instead, prove the built-in is torchvision's model: torchvision's weights loaded into "
        "it give torchvision's output, and every conv, linear and norm layer its shape (with --all: every built-in "
        "that names a torchvision builder, at its default input; needs torchvision).")] = False,
) -> None:
    """Run the spec as a torch network and compare every layer with fvcore and FlopCounterMode.

    Every layer's output shape, params, fvcore count and FlopCounterMode count is compared with the
    calculator's. Exit 1 on any disagreement.
    """
    if all_models == (model is not None):
        raise typer.BadParameter("give a MODEL or --all (not both)", param_hint="MODEL")
    if torchvision:
        if set or batch != 1 or runs is not None or device is not Device.auto:
            raise typer.BadParameter("--torchvision takes only MODEL or --all, --input and --format",
                                     param_hint="--torchvision")
        proofs = prove_torchvision(None if all_models else model, input)
        if format is OutputFormat.json:
            data = [p.to_dict() for p in proofs]
            sys.stdout.write(to_json(data if all_models else data[0]))
        else:
            render(identity_table(proofs), format.value, units)
        if not all(p.ok for p in proofs):
            raise typer.Exit(DISAGREE)
        return
    try:
        from archcalc.crosscheck import CrossCheckError, resolve_device
    except ImportError as err:
        fail(f"crosscheck needs torch and fvcore ({err}): {INSTALL_ORACLES}")
    try:
        where = str(resolve_device(device.value))
    except CrossCheckError as err:
        fail(err)
    names = list_models() if all_models or model is None else [model]  # (model is None only with --all)
    per_model = settings_per_model(names, set) if all_models else [set]
    checks = []
    with progress("cross-check", total=len(names) if all_models else None) as step:
        for name, settings in zip(names, per_model):
            timed = runs if runs is not None else 3 if all_models else 5
            phase = (lambda text, name=name: step(f"{name}: {text}")) if all_models else step
            checks.append(_check_one(name, settings, input, batch, where, timed, all_models, phase))
            step(advance=1)
    if format is OutputFormat.json:
        data = [c.to_dict() for c in checks]
        sys.stdout.write(to_json(data if all_models else data[0]))
    elif all_models:
        render(summary_table(checks, where), format.value, units)
    else:
        render(layer_table(checks[0]), format.value, units)
    if not all(c.ok for c in checks):
        raise typer.Exit(DISAGREE)


IDENTITY_COLUMNS = (
    Column("model", "model", numeric=False),
    Column("input", "input", numeric=False),
    Column("layers", "layers compared"),
    Column("max_abs_difference", "max |difference|", numeric=False),
    Column("output_scale", "max |output|", numeric=False),
    Column("seconds", "seconds", numeric=False),
    Column("agreement", "identical", numeric=False),
)


def identity_table(checks: list[Identity]) -> Table:
    """One row per built-in proven against torchvision's module."""
    rows = [[c.name, shape(c.input), c.layers, f"{c.max_abs_difference:.2g}", f"{c.output_scale:.3g}",
             f"{c.seconds:.1f}", "✓" if c.ok else f"✗ {c.shape_mismatch or 'outputs differ'}"] for c in checks]
    same = sum(c.ok for c in checks)
    notes = [f"{same} of {len(checks)} built-ins are torchvision's function (outputs within float32 rounding: "
             f"|difference| <= 1e-4 x max(1, |output|), the same shape at every conv, linear and norm layer); "
             f"{sum(c.seconds for c in checks):.0f} s"]
    return Table(IDENTITY_COLUMNS, rows, None, "built-ins against torchvision's modules (weights moved across)", notes)


def prove_torchvision(model: str | None, input: InputSize | None) -> list[Identity]:
    """check_identity for one built-in (None: every torchvision built-in), a usage error when it cannot run."""
    try:
        from archcalc.torchvision_check import check_identity, import_torchvision, torchvision_builtins

        import_torchvision()
    except ImportError as err:
        fail(f"--torchvision needs torch and torchvision ({err}): pip install 'archcalc[torchvision]' with torch and "
             "torchvision pinned to a matching pair (README, Development)")
    names = torchvision_builtins() if model is None else [load_model(model).name]
    if model is not None and names[0] not in torchvision_builtins():
        fail(f"{names[0]} names no torchvision builder (its spec has no `published: {{torchvision: ...}}`)")
    checks = []
    with progress("torchvision identity", total=len(names)) as step:
        for name in names:
            step(name)
            spec_input = load_model(name).input
            shape_ = input.resolve(spec_input) if input is not None else None
            try:
                checked = check_identity(name, shape_)
            except (ValueError, RuntimeError) as err:  # a spec error, a size the builder refuses, a mapping that fails
                fail(f"{name}: {err}")
            print(f"  {name}: {'identical' if checked.ok else 'DIFFERS'} ({checked.seconds:.1f} s)", file=sys.stderr)
            checks.append(checked)
            step(advance=1)
    return checks


def _check_one(name: str, settings: list[Setting] | None, input: InputSize | None, batch: int, device: str, runs: int,
               each: bool, phase: Callable[[str], None]) -> CheckResult:
    """One model's check; a bad spec or input ends the command (exit 2), a disagreement does not."""
    from archcalc.crosscheck import CrossCheckError, check_model

    spec = load_model(name, settings)
    shape_ = input.resolve(spec.input) if input is not None else None
    started = time.perf_counter()
    try:
        checked = check_model(spec, device=device, input=shape_, batch=batch, runs=runs, progress=phase)
    except (SpecError, CrossCheckError) as err:
        fail(err)
    if each:
        verdict = "agrees" if checked.ok else "DISAGREES"
        print(f"  {name}: {verdict} ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return checked
