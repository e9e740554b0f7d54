"""How spec files become Models: parameters, splicing, defaults shared across a file."""

from __future__ import annotations

import pytest

import archcalc
from archcalc import SpecError
from archcalc.spec import BatchNorm2d, Concat, Conv2d, Node, ReLU, Sequential


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
    text = SPLICING.replace("width: 8", "width: 8\n  label: $width").replace("out: $width", "out: $label")
    with pytest.raises(SpecError, match=r"out_channels must be a positive integer.*, got '\$width'"):
        archcalc.load(_write(tmp_path, text))


SHARING = """
name: net
input: [3, 8, 8]
blocks:
  unit:
    params: [out]
    layers:
      - {conv2d: {out_channels: $out, kernel_size: 3, padding: 1}, name: conv}
      - {relu: {}, name: relu}
  pair:
    params: [out]
    layers:
      - {unit: {out: $out}, name: first}
      - {stage: {after: [{conv2d: {out_channels: $out, kernel_size: 1}}]}, name: second}
  stage:
    params: [after]
    layers: [$after]
layers:
  - {unit: {out: 4}, name: a}
  - {unit: {out: 4}, name: b}
  - {unit: {out: 8}, name: c}
  - {pair: {out: 16}, name: d}
  - {pair: {out: 32}, name: e}
"""


def test_a_block_called_again_with_the_same_arguments_shares_its_layers(tmp_path) -> None:
    a, b, c, d, e = archcalc.load(_write(tmp_path, SHARING)).layers
    assert (a.name, b.name) == ("a", "b") and a.layers is b.layers  # each call keeps its own name
    assert c.layers is not a.layers and c.layers[0].out_channels == 8
    assert c.layers[1] is a.layers[1]  # `relu` mentions no parameter: one node wherever it stands
    # a list argument made afresh in each call is never taken for another call's
    assert [x.layers[1].layers[0].out_channels for x in (d, e)] == [16, 32]


def test_shared_layers_still_get_a_row_each_where_they_stand(tmp_path) -> None:
    rows = archcalc.analyze(_write(tmp_path, SHARING)).rows
    assert [r.name for r in rows[:4]] == ["a.conv", "a.relu", "b.conv", "b.relu"]
    assert [r.output_shape[1] for r in rows] == [4, 4, 4, 4, 8, 8, 16, 16, 16, 32, 32, 32]


WHOLE = """
name: net
input: [3, 8, 8]
defaults:
  conv: {out_channels: 4, kernel_size: 3, padding: 1}
  seq: [relu]
  branches: [[{conv2d: {out_channels: 2, kernel_size: 1}}], [{conv2d: {out_channels: 3, kernel_size: 1}}]]
  res: {body: [{conv2d: {out_channels: 5, kernel_size: 1}}], shortcut: [{conv2d: {out_channels: 5, kernel_size: 1}}]}
  rep: {times: 2, layers: [relu]}
layers:
  - {conv2d: $conv, name: a}
  - {sequential: $seq, name: b}
  - {concat: $branches, name: c}
  - {residual: $res, name: d}
  - {repeat: $rep, name: e}
"""


def test_a_whole_argument_can_come_from_a_parameter(tmp_path) -> None:
    path = _write(tmp_path, WHOLE)
    result = archcalc.analyze(path)
    assert [r.name for r in result.rows] == ["a", "b.0", "c.0", "c.1", "c", "d.body", "d.shortcut", "d", "e.0", "e.1"]
    assert result.rows[-1].output_shape == (1, 5, 8, 8)
    narrow = archcalc.analyze(path, params={"conv": {"out_channels": 1, "kernel_size": 1}})
    assert narrow.rows[0].output_shape == (1, 1, 8, 8) and narrow.rows[0].params == 4
    with pytest.raises(archcalc.SpecError, match=r"spec.yaml:\d+: layers\[0\] \(conv2d\): arguments must be a mapping, got int 5"):
        archcalc.load(path, params={"conv": 5})


def test_each_build_takes_its_own_parameters(tmp_path) -> None:
    """A file is compiled once; what its parameters give is worked out in every build."""
    path = _write(tmp_path, SPLICING)
    widths = [archcalc.load(path, params={"width": w}).layers[0].layers[0].out_channels for w in (8, 16, 8, 32)]
    assert widths == [8, 16, 8, 32]
    for eps in (0.01, 0.02, 0.03):  # lists made afresh from Python, which may reuse the last one's id
        norm = archcalc.load(path, params={"norm": [{"batchnorm2d": {"eps": eps}}]}).layers[0].layers[1]
        assert isinstance(norm, BatchNorm2d) and norm.eps == eps
    assert archcalc.load(path) == archcalc.load(path)


def test_layers_that_name_no_parameter_are_made_once_per_file() -> None:
    first, second = archcalc.load("googlenet-torchvision"), archcalc.load("googlenet-torchvision", {"dropout": 0.2})
    assert first == second
    unit, again = first.layers[0], second.layers[0]
    assert unit.layers[1] is again.layers[1] and isinstance(unit.layers[1], BatchNorm2d)  # `$norm`'s, as written
    assert unit.layers[0] is not again.layers[0]  # the conv takes the parameters: made in each build


def test_a_model_built_with_its_defaults_is_built_once() -> None:
    """Models are immutable: a second load with the defaults is the first one, with the in_channels
    layers its analyses resolved; parameters, even the default values, build afresh."""
    first = archcalc.load("efficientnet-b0")
    archcalc.analyze(first)
    assert archcalc.load("efficientnet-b0") is first and first.resolved_layers
    assert archcalc.load("efficientnet-b0", {"width": 1.0}) is not first
    for shape in ((1, 224, 224), (3, 224, 224), (5, 96, 96)):  # the layers resolved for one width serve no other
        fresh = archcalc.load("efficientnet-b0", {"width": 1.0})
        assert archcalc.analyze("efficientnet-b0", input=shape) == archcalc.analyze(fresh, input=shape)


def test_layers_resolved_for_one_input_width_serve_only_that_width(tmp_path) -> None:
    path = _write(tmp_path, """
name: widths
input: [4, 8, 8]
blocks:
  widen: {layers: [{conv2d: {out_channels: "${in_channels * 2}", kernel_size: 1}}]}
layers: [{conv2d: {out_channels: "${in_channels + 1}", kernel_size: 1}}, widen, widen]
""")
    model = archcalc.load(path)
    for channels in (4, 8, 4, 3):
        widths = [row.output_shape[1] for row in archcalc.analyze(model, input=(channels, 8, 8)).rows]
        assert widths == [channels + 1, 2 * (channels + 1), 4 * (channels + 1)]


MISTAKE = """
models:
  - name: uses
    input: [3, 8, 8]
    layers: [{broken: {}, name: x}]
  - name: fine
    input: [3, 8, 8]
    layers: [relu]
blocks:
  broken:
    layers:
      - {conv2d: {out_channels: 4, kernel_size: 0}}
"""


def test_a_mistake_is_reported_where_a_build_meets_it(tmp_path) -> None:
    path = _write(tmp_path, MISTAKE)
    assert archcalc.load(f"{path}:fine").layers[0] == ReLU()  # a block that is never used is never checked
    for _ in range(2):  # and the same message each time, though the file is compiled once
        with pytest.raises(archcalc.SpecError, match=r"spec.yaml:12: layers\[0\]\.broken\[0\] \(conv2d\): kernel_size must be"):
            archcalc.load(f"{path}:uses")


def test_templates_are_kept_only_by_ids_of_objects_the_compiler_keeps_alive(tmp_path) -> None:
    """An id is an object's only while it lives: every id a template is kept under must be reachable
    from the data the compiler holds, or a freed container's id could be taken by a user's list."""
    from archcalc.loader import SpecFile

    spec = SpecFile(_write(tmp_path, MISTAKE))
    spec.model("fine")
    reachable: set[int] = set()

    def visit(node) -> None:
        if isinstance(node, (dict, list)) and id(node) not in reachable:
            reachable.add(id(node))
            for item in node.values() if isinstance(node, dict) else node:
                visit(item)

    visit(spec.compiler.data)
    assert spec.compiler.owned == reachable and id(spec.compiler.data) in spec.compiler.owned


def test_a_built_in_is_found_by_parsing_only_its_own_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # one model's command parses one file (start-up time); the full index, built after, agrees on every name
    from archcalc import registry

    for cache in (registry._spec_file, registry._builtin_files, registry._builtin_index, registry._builtin):
        monkeypatch.setattr(registry, cache.__name__, registry.functools.lru_cache(maxsize=None)(cache.__wrapped__))
    assert archcalc.load("alexnet").name == "alexnet"
    assert registry._spec_file.cache_info().currsize == 1 and registry._builtin_index.cache_info().currsize == 0
    found = {}
    for name in ("resnet50", "vgg16-bn", "lenet5", "swin-v2-t", "stacked-3x3"):
        found[name] = registry._find(name)[0]
    index = registry._builtin_index()
    assert all(index[name] is spec_file for name, spec_file in found.items())
    with pytest.raises(registry.UnknownModelError, match="did you mean resnet50"):
        archcalc.load("resnt50")


def test_nodes_repr_compare_and_hash_as_dataclasses_do() -> None:
    # Node writes repr, == and hash once for every op class (declared repr=False, eq=False): as a dataclass would
    from dataclasses import FrozenInstanceError, fields

    from archcalc.spec import LEAF_OPS, Sigmoid, Where

    conv = Conv2d(out_channels=8, kernel_size=3, padding=1)
    assert repr(conv) == "Conv2d(" + ", ".join(f"{f.name}={getattr(conv, f.name)!r}" for f in fields(conv) if f.repr) + ")"
    assert repr(Sequential(layers=[ReLU()])) == "Sequential(name=None, trainable=True, layers=(ReLU(name=None, trainable=True),), block=None)"
    placed = Conv2d(out_channels=8, kernel_size=3, padding=1, where=Where("net.yaml", 3))  # where is not compared
    assert conv == placed and hash(conv) == hash(placed) == hash(tuple(getattr(conv, f.name) for f in fields(conv) if f.compare))
    assert conv != Conv2d(out_channels=8, kernel_size=3) and ReLU() != Sigmoid() and ReLU() == ReLU()
    assert len({ReLU(), ReLU(), Sigmoid()}) == 2
    with pytest.raises(FrozenInstanceError):
        conv.padding = 2  # type: ignore[misc]
    for cls in LEAF_OPS.values():  # every op class uses Node's (none generated its own)
        assert (cls.__repr__, cls.__eq__, cls.__hash__) == (Node.__repr__, Node.__eq__, Node.__hash__), (
            f"declare {cls.__name__} @dataclass(frozen=True, kw_only=True, repr=False, eq=False), as the others")
