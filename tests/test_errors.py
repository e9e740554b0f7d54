"""Every class of malformed spec gives one SpecError naming file, line, path and reason.

Each file in bad_specs/ states on its first line the text its error must contain
(`# error: ...`); `# model: NAME` picks a model of a multi-model file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import archcalc
from archcalc import SpecError

BAD = sorted((Path(__file__).parent / "bad_specs").glob("*.yaml"))


def _expectation(path: Path) -> tuple[str, str | None]:
    text = path.read_text()
    expected = re.search(r"^# error: (.*)$", text, re.M).group(1)
    model = re.search(r"^# model: (.*)$", text, re.M)
    return expected, model.group(1) if model else None


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_spec_gives_one_clear_line(path: Path) -> None:
    expected, model = _expectation(path)
    with pytest.raises(SpecError) as info:
        archcalc.analyze(f"{path}:{model}" if model else path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert message.startswith(str(path)), "the message starts with the file"


def test_corpus_covers_every_error_class() -> None:
    assert len(BAD) >= 25


def test_missing_file() -> None:
    with pytest.raises(SpecError, match="no such file"):
        archcalc.load("does/not/exist.yaml")


def test_unknown_model_suggests_the_closest_name() -> None:
    with pytest.raises(archcalc.UnknownModelError, match="did you mean alexnet"):
        archcalc.load("alexnt")


def test_unknown_model_parameter() -> None:
    with pytest.raises(SpecError, match="stacked-3x3 has no parameter 'c'.*its parameters: C"):
        archcalc.load("stacked-3x3", params={"c": 64})


def test_python_spec_errors_name_the_layer_path() -> None:
    model = archcalc.Model(
        name="py",
        input=(3, 32, 32),
        layers=[archcalc.Sequential(layers=[archcalc.Conv2d(out_channels=8, kernel_size=3), archcalc.Linear(out_features=10)])],
    )
    with pytest.raises(SpecError, match=r"^layers\[0\]\.sequential\[1\] \(linear\): linear acts on the last dim"):
        archcalc.analyze(model)


def test_dataclass_fields_are_validated_on_construction() -> None:
    with pytest.raises(SpecError, match="kernel_size must be a positive integer"):
        archcalc.Conv2d(out_channels=8, kernel_size=0)
    with pytest.raises(SpecError, match="bias must be true or false"):
        archcalc.Linear(out_features=8, bias="yes")


@pytest.mark.parametrize(
    "kwargs, reason",
    [({"batch": 0}, "batch must be a positive integer"), ({"input": (3, 0, 5)}, "input must be"),
     ({"dtype": "float8"}, "dtype must be one of")],
)
def test_bad_analysis_arguments(kwargs, reason) -> None:
    with pytest.raises(SpecError, match=reason):
        archcalc.analyze("lenet", **kwargs)


@pytest.mark.parametrize("name", ["", "."])
def test_empty_or_directory_names_are_unknown_models(name) -> None:
    with pytest.raises(archcalc.UnknownModelError, match="unknown model"):
        archcalc.load(name)


def test_unknown_op_lists_the_ops_grouped_by_kind(tmp_path: Path) -> None:
    from archcalc.ops import HANDLERS

    spec = tmp_path / "t.yaml"
    spec.write_text("name: t\ninput: [3, 8, 8]\nblocks:\n  mine: {layers: [relu]}\n"
                    "layers:\n  - cnv2d: {out_channels: 4, kernel_size: 3}\n")
    with pytest.raises(SpecError) as info:
        archcalc.analyze(spec)
    message = str(info.value)
    assert "unknown op 'cnv2d' (did you mean conv2d?); ops: conv/pool: conv2d, " in message
    for group in ("norm: batchnorm2d", "activations: relu", "composites: sequential, concat", "blocks: mine"):
        assert group in message
    assert all(cls.OP in message for cls in HANDLERS)  # every op, whichever kind it is
