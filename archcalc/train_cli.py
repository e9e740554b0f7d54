"""`archcalc train`: one training step's compute and memory (archcalc.training), per layer and in total."""

from __future__ import annotations

import enum
import re
import sys
from typing import Annotated, Optional

import typer

from archcalc.cli_common import (
    BatchOption, FormatOption, InputOption, ModelArgument, OutputFormat, SetOption, UnitsOption, WideOption, fail,
    load_model,
)
from archcalc.errors import SpecError, shown
from archcalc.formatting import render, to_json
from archcalc.tables import train_table
from archcalc.training import DEVICES, OPTIMIZERS, PRECISIONS, train_step

Optimizer = enum.Enum("Optimizer", {name: name for name in OPTIMIZERS}, type=str)  # type: ignore[misc]
Precision = enum.Enum("Precision", {name: name for name in PRECISIONS}, type=str)  # type: ignore[misc]
Device = enum.Enum("Device", {name: name for name in DEVICES}, type=str)  # type: ignore[misc]

BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str | int) -> int:
    """`24GB` (1e9 bytes each), `24GiB` (2^30), `512MB`, `1.5GB` or a number of bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in BYTE_UNITS or len(match.group(1)) > 20:
        raise typer.BadParameter(f"{shown(str(text))} is not a size such as 24GB, 24GiB or 512MB")
    value = int(float(match.group(1)) * BYTE_UNITS[unit]) if "." in match.group(1) else int(match.group(1)) * BYTE_UNITS[unit]
    if value < 1:
        raise typer.BadParameter(f"{shown(str(text))}: the budget must be at least one byte")
    return value


def train(
    model: ModelArgument,
    batch: BatchOption = 1,
    optimizer: Annotated[Optimizer, typer.Option(
        "--optimizer", "-o", case_sensitive=False,
        help="sgd (no state), sgd-momentum (one buffer), adam or adamw (two buffers and a step per tensor).")
    ] = Optimizer["adamw"],
    precision: Annotated[Precision, typer.Option(
        "--precision", "-p", case_sensitive=False,
        help="fp32, or bf16-mixed / fp16-mixed: torch.autocast with float32 master weights, gradients and "
             "optimizer state.")] = Precision["fp32"],
    budget: Annotated[Optional[int], typer.Option(
        "--budget", metavar="SIZE", parser=parse_bytes, show_default=False,
        help="Memory to fit, e.g. 24GB (1e9 bytes) or 24GiB: says whether the step fits, and the largest batch "
             "that does.")] = None,
    device: Annotated[Device, typer.Option(
        "--device", case_sensitive=False,
        help="cuda (a GPU's kernels: bool dropout masks, float32 layer norm and softmax under autocast) or cpu.")
    ] = Device["cuda"],
    input: InputOption = None,
    set: SetOption = None,
    format: FormatOption = OutputFormat.table,
    units: UnitsOption = None,
    wide: WideOption = False,
) -> None:
    """One training step: forward and backward MACs, saved activations, optimizer state, peak memory.

    Backward MACs are split into input- and weight-gradient work; the memory is the activations autograd
    keeps, weights, gradients and optimizer state; with --budget, the largest batch that fits.
    """
    spec = load_model(model, set)
    shape = input.resolve(spec.input) if input is not None else None
    try:
        result = train_step(spec, batch=batch, optimizer=optimizer.value, precision=precision.value,
                            device=device.value, input=shape, budget=budget)
    except SpecError as err:
        fail(err)
    if format is OutputFormat.json:
        sys.stdout.write(to_json(result.to_dict()))
        return
    render(train_table(result), format.value, units, wide)
