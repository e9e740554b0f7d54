"""The `archcalc` command line: one typer app, one plain function per command."""

import enum
import os
import shutil
import sys
from typing import Annotated, Optional

import typer

from archcalc import __version__
from archcalc.cli_common import (
    BatchOption, Dtype, DtypeOption, ExplainColumnsOption, FormatOption, InputOption, ModelArgument, OutputFormat,
    SetOption, UnitsOption, WideOption, analyse, complete_model, fail, load_model, settings_per_model,
)
from archcalc.analysis import run
from archcalc.errors import SpecError, shown
from archcalc.formatting import Table, plain_output, render, to_json
from archcalc.registry import families, family as family_of, list_models
from archcalc.tables import compare_table, compare_dict, layer_table, model_table

from typer._click.exceptions import ClickException  # typer ships click's code (pyproject: typer >= 0.26)
from typer.core import TyperGroup


class OneLineErrors(TyperGroup):
    """typer's group, with usage errors (a bad option value, a missing argument) printed as one
    `error: ...` line, like every other mistake, instead of usage text and a box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra):  # type: ignore[override]
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            status = super().main(args, prog_name, complete_var, False, **extra)
        except ClickException as err:
            message = " ".join(err.format_message().split())
            if message:  # (none when the help was shown for a bare `archcalc`)
                ctx = getattr(err, "ctx", None)
                print(f"error: {message}{f' (see {ctx.command_path} --help)' if ctx else ''}", file=sys.stderr)
            sys.exit(err.exit_code)
        except typer.Abort:
            print("aborted", file=sys.stderr)
            sys.exit(1)
        sys.exit(status if isinstance(status, int) else 0)  # an Exit's status; None when the command returned


app = typer.Typer(
    name="archcalc",
    cls=OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"archcalc {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Output shapes, parameters, MACs/FLOPs, activation memory and receptive fields of CNNs, computed
    from declarative specs without running them.

    Example: archcalc table alexnet --input 227
    """


DepthOption = Annotated[
    Optional[int],
    typer.Option("--depth", "-d", min=1, metavar="N", show_default=False,
                 help="Fold composites (blocks, Inception modules, residual blocks, stages) deeper than N "
                 "path levels into one row with their summed cost (JSON always lists every layer)."),
]


@app.command("table", epilog="Examples: archcalc table alexnet --input 227 | archcalc table resnet152 --depth 1 "
             "| archcalc table stacked-3x3 --set C=64 --format markdown")
def table(
    model: ModelArgument,
    input: InputOption = None,
    batch: BatchOption = 1,
    set: SetOption = None,
    depth: DepthOption = None,
    format: FormatOption = OutputFormat.table,
    dtype: DtypeOption = Dtype["float32"],
    units: UnitsOption = None,
    wide: WideOption = False,
    explain_columns: ExplainColumnsOption = False,
) -> None:
    """Per-layer table: output shape, params, MACs, FLOPs, activations, memory, receptive field."""
    result = analyse(model, input=input, batch=batch, settings=set, dtype=dtype)
    if format is OutputFormat.json:
        sys.stdout.write(to_json(result.to_dict()))
        return
    rows = result.fold(depth) if depth is not None else result.rows
    render(layer_table(result, rows, units), format.value, units, wide)


def list_table(text: str | None = None, family: str | None = None) -> Table:
    """The built-ins of `family` (all: None) whose name or family holds `text`, grouped by family,
    smallest first (MACs at the default input, then the name); only these are analysed."""
    names = list_models(family)
    if text is not None:
        wanted = text.lower().replace("_", "-")
        names = [n for n in names if wanted in n or wanted in family_of(n)]
        if not names:
            raise SpecError(f"no built-in model's name or family holds {shown(text)}; `archcalc list` shows them all")
    results = sorted((analyse(name) for name in names), key=lambda r: (family_of(r.model), r.total.macs, r.model))
    return model_table(results, [family_of(r.model) for r in results])


FamilyOption = Annotated[
    Optional[str],
    typer.Option("--family", "-f", metavar="FAMILY", autocompletion=lambda incomplete: [
        f for f in families() if f.startswith(incomplete)], show_default=False,
        help="Only this family's models (the file they are written in: resnet, efficientnet, vit, ...)."),
]


@app.command("list", epilog="Examples: archcalc list | archcalc list vit | archcalc list --family efficientnet "
             "--units | archcalc list --format csv")
def list_(
    text: Annotated[Optional[str], typer.Argument(
        metavar="[TEXT]", show_default=False,
        help="Only the models whose name or family holds TEXT (any case; torchvision's `_` reads as `-`).")] = None,
    family: FamilyOption = None,
    format: FormatOption = OutputFormat.table,
    units: UnitsOption = None,
    wide: WideOption = False,
    explain_columns: ExplainColumnsOption = False,
) -> None:
    """The built-in models by family, smallest first: default input, params, MACs, depth and description."""
    try:
        listed = list_table(text, family)
    except SpecError as err:
        fail(err)
    if format is OutputFormat.json:
        sys.stdout.write(to_json(listed.records()))
        return
    render(listed, format.value, units, wide)


ModelsArgument = Annotated[
    list[str],
    typer.Argument(metavar="MODELS", autocompletion=complete_model, show_default=False,
                   help="Two or more built-in models or spec files; ratios are against the first."),
]


@app.command("compare", epilog="Examples: archcalc compare lenet alexnet | archcalc compare inception-naive "
             "inception-bottleneck | archcalc compare conv7x7 stacked-3x3 --set C=64")
def compare(
    models: ModelsArgument,
    input: InputOption = None,
    batch: BatchOption = 1,
    set: SetOption = None,
    format: FormatOption = OutputFormat.table,
    dtype: DtypeOption = Dtype["float32"],
    units: UnitsOption = None,
    wide: WideOption = False,
    explain_columns: ExplainColumnsOption = False,
) -> None:
    """Totals side by side (params, MACs, FLOPs, activations, depth, receptive field), with ratios to the first.

    --set applies to every model that has the parameter; --input to every model.
    """
    if len(models) < 2:
        raise typer.BadParameter("give at least two models to compare", param_hint="MODEL")
    per_model = settings_per_model(models, set)
    results = [analyse(m, input=input, batch=batch, settings=s, dtype=dtype) for m, s in zip(models, per_model)]
    if format is OutputFormat.json:
        sys.stdout.write(to_json(compare_dict(results)))
        return
    render(compare_table(results), format.value, units, wide)


class ExplainFormat(str, enum.Enum):
    text = "text"
    markdown = "markdown"


def complete_layer(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion for LAYER: the paths of the model given before it (or their ends after a dot)."""
    from archcalc.explain import layer_names

    try:
        names = layer_names(run(load_model(ctx.params["model"])))
    except (KeyError, SpecError, typer.Exit):
        return []
    ends = {path.rpartition(".")[2] for path in names}
    return sorted(n for n in {*names, *ends} if n.startswith(incomplete))


LayersArgument = Annotated[
    Optional[list[str]],
    typer.Argument(metavar="[LAYER]...", autocompletion=complete_layer, show_default=False,
                   help="Layers by path or by the end of their path (conv1, layer4.rest.0); default: every row."),
]


@app.command("explain", epilog="Examples: archcalc explain alexnet conv1 pool1 | archcalc explain alexnet-paper conv2 "
             "| archcalc explain resnet18 --depth 2 --format markdown")
def explain(
    model: ModelArgument,
    layers: LayersArgument = None,
    input: InputOption = None,
    batch: BatchOption = 1,
    set: SetOption = None,
    depth: DepthOption = None,
    format: Annotated[ExplainFormat, typer.Option(
        "--format", "-f", case_sensitive=False, help="text, or markdown for notes and slides.")] = ExplainFormat.text,
) -> None:
    """Each layer's output size, params, MACs, FLOPs and receptive field, worked out with the values put in.

    The numbers come from the same code as the table's.
    """
    from archcalc.explain import conventions, explain as explain_layers, to_markdown, to_text

    spec = load_model(model, set)
    try:
        explained = explain_layers(spec, layers or (), batch=batch, depth=depth,
                                   input=input.resolve(spec.input) if input is not None else None)
    except SpecError as err:
        fail(err)
    if format is ExplainFormat.markdown:
        sys.stdout.write(to_markdown(explained) + "\n" + conventions())
        return
    # on a terminal, long lines are broken between words to its width; piped, one line per number
    width = None if plain_output() else shutil.get_terminal_size().columns
    sys.stdout.write(to_text(explained, width) + "\n" + conventions(width))


# ---------------------------------------------------------------------------------------
# Command registration. Commands that live in their own module are registered here, one
# line each, e.g. `app.command("crosscheck")(crosscheck_cli.crosscheck)`, with the module
# imported just above its line. Those modules must import torch, fvcore and matplotlib
# lazily, inside their command functions: `archcalc table` must never load them.
# ---------------------------------------------------------------------------------------

from archcalc import bench_cli  # noqa: E402

app.command("bench", epilog="Examples: archcalc bench --quick | archcalc bench -m resnet50 --size 224,512 "
            "| archcalc bench --no-oracles")(bench_cli.bench)

from archcalc import crosscheck_cli  # noqa: E402

app.command("crosscheck", epilog="Examples: archcalc crosscheck alexnet | archcalc crosscheck resnet50 --device cpu "
            "| archcalc crosscheck --all")(crosscheck_cli.crosscheck)

from archcalc import import_cli  # noqa: E402

app.command("import", epilog="Examples: archcalc import torchvision.models:resnet50 --input 3x224x224 -o resnet50.yaml "
            "| archcalc import mynets.py:build --kwargs '{\"num_classes\": 10}' -i 3x32x32 -o net.yaml")(import_cli.import_)

from archcalc import report_cli  # noqa: E402
from archcalc import train_cli  # noqa: E402

app.command("train", epilog="Examples: archcalc train resnet50 --batch 256 --optimizer adamw --precision bf16-mixed "
            "--budget 24GB | archcalc train vit-b-16 --batch 64 --format json")(train_cli.train)
app.command("report", epilog="Examples: archcalc report | archcalc report --check | archcalc report --crosscheck")(report_cli.report)


def main() -> None:
    """Console-script entry point (also `python -m archcalc`).

    Every mistake ends on one `error: ...` line with exit status 2: click's usage errors too
    (typer would draw them in a box of several lines), and a write that fails (a full disk).
    """
    try:
        try:
            status = app(prog_name="archcalc", standalone_mode=False)
            sys.stdout.flush()  # here, not at exit: a full disk is then one line too
        except ClickException as err:
            if not err.format_message().strip():  # no arguments: the help was printed instead
                sys.exit(err.exit_code)
            ctx = getattr(err, "ctx", None)  # a usage error's command
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            fail(f"{err.format_message()}{hint}")
        except typer.Abort:  # end of input at a prompt
            print("aborted", file=sys.stderr)
            sys.exit(1)
        except OSError as err:
            if isinstance(err, BrokenPipeError):
                raise
            fail(f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
    except typer.Exit as done:  # from fail()
        sys.exit(done.exit_code)
    except BrokenPipeError:  # `archcalc table resnet152 | head`: not an error worth a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)
