"""How spec files become Models: parameters, splicing, defaults shared across a file."""

from __future__ import annotations

import archcalc
from archcalc.spec import BatchNorm2d, Concat, Conv2d, ReLU, Sequential


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


def test_a_files_source_is_every_models_default(tmp_path) -> None:
    path = _write(tmp_path, "source: A paper\nmodels:\n"
                            "  - {name: a, input: [1, 4, 4], layers: [flatten]}\n"
                            "  - {name: b, source: Another paper, input: [1, 4, 4], layers: [flatten]}\n")
    assert archcalc.load(f"{path}:a").source == "A paper"
    assert archcalc.load(f"{path}:b").source == "Another paper"


SPLICING = """
name: net
input: [3, 8, 8]
defaults:
  norm: [batchnorm2d, relu]
  none: []
  left: [{conv2d: {out_channels: 4, kernel_size: 1}}]
  right: [{conv2d: {out_channels: 2, kernel_size: 1}}, relu]
  width: 8
blocks:
  unit:
    params: [out, after]
    layers:
      - {conv2d: {out_channels: $out, kernel_size: 3, padding: 1}}
      - $after
layers:
  - {unit: {out: $width, after: $norm}, name: a}
  - {unit: {out: 4, after: $none}, name: b}
  - {concat: [$left, $right], name: c}
"""


def test_list_parameters_splice_into_layer_lists_and_stand_as_concat_branches(tmp_path) -> None:
    model = archcalc.load(_write(tmp_path, SPLICING))
    a, b, c = model.layers
    assert isinstance(a, Sequential) and [type(x) for x in a.layers] == [Conv2d, BatchNorm2d, ReLU]
    assert a.layers[0].out_channels == 8
    assert [type(x) for x in b.layers] == [Conv2d]  # `- $after` with [] adds nothing
    assert isinstance(c, Concat) and [len(branch) for branch in c.branches] == [1, 2]
    assert archcalc.analyze(model).rows[-1].output_shape == (1, 6, 8, 8)


def test_set_parameters_change_the_model(tmp_path) -> None:
    model = archcalc.load(_write(tmp_path, SPLICING), params={"width": 16, "norm": []})
    assert model.layers[0].layers[0].out_channels == 16 and len(model.layers[0].layers) == 1


def test_a_parameters_value_is_not_looked_up_again(tmp_path) -> None:
    text = SPLICING.replace("width: 8", "width: 8\n  label: $width").replace("name: a}", "name: $label}")
    assert archcalc.load(_write(tmp_path, text)).layers[0].name == "$width"
