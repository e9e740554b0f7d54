"""Options shared by archcalc's commands, their parsers, and the load-and-analyse helper.

Every command that takes a model reuses these `Annotated` aliases, so `--input`,
`--batch`, `--set`, `--format` and `--dtype` read and fail the same everywhere.
Bad values raise `typer.BadParameter` (a usage error, exit 2); a bad spec or an
unknown model is printed as one `error: ...` line on stderr, also exit 2.
"""

from __future__ import annotations

import enum
import re
import sys
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn, Optional

import typer

from archcalc.analysis import run
from archcalc.errors import MAX_SHOWN, SpecError, shown, visible
from archcalc.registry import list_models, load, parameters
from archcalc.result import DTYPE_BYTES, Result
from archcalc.yamlfile import parse
from archcalc.spec import MAX_SIZE, Model

USAGE_ERROR = 2  # click's exit status for a usage error; a bad spec or model name uses it too


class OutputFormat(str, enum.Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"


Dtype = enum.Enum("Dtype", {name: name for name in DTYPE_BYTES}, type=str)  # type: ignore[misc]


@dataclass(frozen=True)
class InputSize:
    """`--input` as given: C x H x W, H x W (keeps C) or one number (keeps C, H = W)."""

    dims: tuple[int, ...]
    text: str

    def resolve(self, default: tuple[int, ...]) -> tuple[int, ...]:
        """The full input shape, taking what was not given from the model's default."""
        if len(default) != 3 or len(self.dims) == 3:  # a flat model's F, or a full C x H x W
            return self.dims
        return (default[0], *(self.dims * 2 if len(self.dims) == 1 else self.dims))

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Setting:
    """One `--set KEY=VALUE`: a spec parameter and its value read as a YAML scalar."""

    key: str
    value: Any

    def __str__(self) -> str:
        return f"{self.key}={self.value!r}"


def parse_input(text: str | InputSize) -> InputSize:
    """`3x227x227`, `227x227` or `227` (also with `,` or `*`); every size at least 1."""
    if isinstance(text, InputSize):
        return text
    parts = re.split(r"\s*[x×,*]\s*", str(text).strip().lower())
    if not 1 <= len(parts) <= 3 or not all(re.fullmatch("[0-9]+", p) for p in parts):
        raise typer.BadParameter(f"{shown(str(text))} is not CxHxW, HxW or a size (e.g. 3x227x227, 227)")
    if any(len(p) > 10 for p in parts):  # more digits than MAX_SIZE has (int() refuses beyond 4,300)
        raise typer.BadParameter(f"{shown(str(text))}: sizes are at most {MAX_SIZE:,}")
    dims = tuple(int(p) for p in parts)
    if min(dims) < 1:
        raise typer.BadParameter(f"{shown(str(text))}: every size must be at least 1")
    if max(dims) > MAX_SIZE:
        raise typer.BadParameter(f"{shown(str(text))}: sizes are at most {MAX_SIZE:,}")
    return InputSize(dims, str(text))


def parse_setting(text: str | Setting) -> Setting:
    """`KEY=VALUE`, the value read as YAML (`64` is an int, `true` a bool, `[1, 2]` a list)."""
    if isinstance(text, Setting):
        return text
    key, sep, raw = str(text).partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise typer.BadParameter(f"{shown(text)} is not KEY=VALUE (e.g. C=64)")
    try:  # read as a spec file is: safe, lines kept, no duplicate keys, merge keys as YAML defines them
        value = parse(raw, f"--set {key}") if raw.strip() else ""
    except SpecError as err:
        reason = err.reason.replace("YAML does not parse:", "the value is not valid YAML:")
        raise typer.BadParameter(f"{key}: {reason}" + (f" (line {err.line})" if err.line and err.line > 1 else "")) from None
    return Setting(key, value)


InputOption = Annotated[
    Optional[InputSize],
    typer.Option(
        "--input", "-i", metavar="CxHxW", parser=parse_input, show_default=False,
        help="Input size: CxHxW, HxW or one number for H=W (e.g. 3x227x227, 227); default: the spec's.",
    ),
]
BatchOption = Annotated[int, typer.Option("--batch", "-b", min=1, max=MAX_SIZE, metavar="N", help="Batch size.")]
SetOption = Annotated[
    Optional[list[Setting]],
    typer.Option(
        "--set", "-s", metavar="KEY=VALUE", parser=parse_setting, show_default=False,
        help="Set a spec parameter (repeatable), e.g. --set C=64; the value is read as YAML.",
    ),
]
FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", case_sensitive=False,
                 help="table (plain text when piped or NO_COLOR is set), markdown, csv, or json (machine-readable)."),
]
DtypeOption = Annotated[
    Dtype, typer.Option("--dtype", case_sensitive=False, help="Element type for the memory (bytes) columns.")
]
UnitsOption = Annotated[
    Optional[bool],
    typer.Option("--units/--exact", "-u", show_default=False,
                 help="K/M/G units (K = 1e3) instead of exact integers; CSV and JSON stay exact. Default: exact, "
                 "unless a terminal is too narrow for them."),
]
WideOption = Annotated[
    bool, typer.Option("--wide", "-w", help="On a terminal: every column, even when the lines get longer than it is wide.")
]


def _explain_columns(value: bool) -> None:
    if value:
        from archcalc.formatting import render
        from archcalc.tables import columns_table

        render(columns_table(), "table")
        raise typer.Exit()


ExplainColumnsOption = Annotated[
    bool, typer.Option("--explain-columns", callback=_explain_columns, is_eager=True, expose_value=False,
                       help="Say what every column counts, and exit.")
]


def fail(message: object) -> NoReturn:
    """Print `error: message` on one line to stderr and exit with status 2."""
    text = visible(" ".join(str(message).split()), 3 * MAX_SHOWN)  # one line, nothing a terminal would act on
    print(f"error: {text}", file=sys.stderr)
    raise typer.Exit(USAGE_ERROR)


def settings_dict(settings: list[Setting] | None) -> dict[str, Any]:
    """`--set` options as a parameter mapping; a key given twice keeps the last value."""
    return {s.key: s.value for s in settings or ()}


def settings_per_model(specs: list[str], settings: list[Setting] | None) -> list[list[Setting]]:
    """For each spec, the `--set` options it has a parameter for; a key that none has is an error."""
    if not settings:
        return [[] for _ in specs]
    try:
        known = [parameters(spec) for spec in specs]
    except SpecError as err:
        fail(err)
    for s in settings:
        if not any(s.key in names for names in known):
            have = sorted({name for names in known for name in names})
            fail(f"none of {', '.join(specs)} has a parameter {s.key!r}; their parameters: {', '.join(have) or 'none'}")
    return [[s for s in settings if s.key in names] for names in known]


def load_model(spec: str, settings: list[Setting] | None = None) -> Model:
    """A built-in name or YAML path as a Model; a user mistake ends the command (see `fail`)."""
    try:
        return load(spec, settings_dict(settings) or None)
    except SpecError as err:  # UnknownModelError included: its message names the closest built-ins
        fail(err)


def analyse(
    spec: str | Model,
    *,
    input: InputSize | None = None,
    batch: int = 1,
    settings: list[Setting] | None = None,
    dtype: str | Dtype = "float32",
) -> Result:
    """Load (unless given a Model) and analyse with the shared options; a user mistake ends the command."""
    model = spec if isinstance(spec, Model) else load_model(spec, settings)
    shape = input.resolve(model.input) if input is not None else None
    try:
        return run(model, batch=batch, input=shape, dtype=dtype.value if isinstance(dtype, Dtype) else dtype)
    except SpecError as err:
        fail(err)


def complete_model(incomplete: str) -> list[str]:
    """Shell completion for MODEL: the built-in names starting with what was typed."""
    return [name for name in list_models() if name.startswith(incomplete)]


ModelArgument = Annotated[
    str,
    typer.Argument(
        metavar="MODEL", autocompletion=complete_model, show_default=False,
        help="A built-in model (see `archcalc list`) or a spec file: FILE.yaml or FILE.yaml:MODEL.",
    ),
]
