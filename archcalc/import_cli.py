"""`archcalc import`: a torch module as a spec file (archcalc.importer; torch is imported inside the command only).

Exit status: 0 written, 2 when the module cannot be built, traced or mapped (one line naming every
unmapped call), with nothing written.
"""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from archcalc.cli_common import InputSize, fail, parse_input
from archcalc.errors import SpecError


def import_(
    module_ref: Annotated[str, typer.Argument(
        metavar="MODULE_REF", show_default=False,
        help="What builds the module: pkg.mod:callable (torchvision.models:resnet50) or path/to/file.py:callable.")],
    input: Annotated[InputSize, typer.Option(
        "--input", "-i", metavar="CxHxW", parser=parse_input, show_default=False,
        help="The input the module is traced at, without the batch: CxHxW (3x224x224) or F for a vector.")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", metavar="FILE.yaml", show_default=False,
        help="Where to write the spec (atomically: all or nothing); default: print it.")] = None,
    kwargs: Annotated[str, typer.Option(
        "--kwargs", metavar="JSON", help='Keyword arguments of the callable, as JSON: \'{"num_classes": 10}\'.')] = "{}",
    name: Annotated[Optional[str], typer.Option(
        "--name", metavar="NAME", show_default=False, help="The model's name; default: the callable's.")] = None,
    allow_unknown: Annotated[bool, typer.Option(
        "--allow-unknown", help="Keep calls archcalc has no op for as zero-cost `unknown` placeholders "
        "(with the traced output shape) instead of failing.")] = False,
) -> None:
    """Import a torch model as a spec file whose layers are named after its modules.

    The model is traced with torch.fx on the meta device: no weights are allocated."""
    import json  # here: every other command would pay its import

    try:
        arguments = json.loads(kwargs)
    except json.JSONDecodeError as err:
        raise typer.BadParameter(f"{kwargs!r} is not JSON ({err.msg})", param_hint="--kwargs") from None
    if not isinstance(arguments, dict):
        raise typer.BadParameter(f"{kwargs!r} is not a JSON object", param_hint="--kwargs")
    shape = input.dims
    if len(shape) == 2:
        raise typer.BadParameter(f"{input.text!r}: give the channels too (CxHxW)", param_hint="--input")
    try:
        from archcalc import importer  # imports torch
    except ImportError:
        fail("archcalc import needs torch: pip install torch==2.13.0 (its CPU wheel where there is no GPU)")
    call = f"{module_ref}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
    try:
        module = importer.build_from_ref(module_ref, arguments)
        default_name = module_ref.rpartition(":")[2].replace("_", "-")
        done = importer.convert(module, shape, name=name or default_name, source=call, allow_unknown=allow_unknown)
    except SpecError as err:
        fail(err)
    from archcalc.analysis import run

    total = run(done.model).total
    summary = (f"{done.model.name}: {call} at input {'x'.join(map(str, shape))}: "
               f"params {total.params:,}, MACs {total.macs:,}")
    if done.unknown:
        summary += (f"; {len(done.unknown)} call(s) kept as zero-cost `unknown` placeholders, not counted: "
                    + "; ".join(done.unknown))
    if output is None:
        sys.stdout.write(done.text)
        print(summary, file=sys.stderr)
        return
    importer.write_atomically(output, done.text)
    print(f"{summary} -> {output}")
