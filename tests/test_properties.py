"""Property tests: random specs against torch's real forward passes and both FLOP oracles.

- random valid specs (conv2d with any kernel/stride/padding/dilation/groups/bias and
  asymmetric sizes, pooling with ceil_mode and padding, batch norm, LRN, activations
  (hardswish, silu, gelu ...), stochastic depth, layer scale, channel chunks and shuffles,
  concat, residual, gate (squeeze-and-excitation), ShuffleNet units, repeat, sequential,
  flatten + linear, layer norm, channels-last runs with window attention and patch merging,
  token tails with attention, on random input sizes): every row's output shape, parameters,
  fvcore and FlopCounterMode counts agree exactly;
- single conv/pool layers with arbitrary (type-correct) arguments: the calculator accepts
  exactly what torch accepts, with the same output shape;
- random invalid specs: a located SpecError, never another exception.

Examples are derandomized (the same every run); ARCHCALC_PROPERTY_EXAMPLES raises the count.
"""

from __future__ import annotations

import copy
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archcalc.analysis import run
from archcalc.errors import SpecError
from archcalc.loader import SpecFile
from archcalc.spec import AvgPool2d, Conv2d, MaxPool2d, Model
from archcalc.yamlfile import parse

torch = pytest.importorskip("torch")
pytest.importorskip("fvcore")

from archcalc.crosscheck import check_model  # noqa: E402
from spec_strategies import valid_specs  # noqa: E402

EXAMPLES = int(os.environ.get("ARCHCALC_PROPERTY_EXAMPLES", "200"))
PROPERTY = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FILE = "random.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load_text(text: str) -> Model:
    return SpecFile(FILE, parse(text, FILE)).model()


def load_dict(spec: dict) -> Model:
    return load_text(yaml.safe_dump(spec, sort_keys=False))


def explain(checked) -> str:
    lines = [f"problems: {checked.problems}", f"totals: {checked.totals}"]
    for layer in checked.mismatches:
        lines.append(
            f"{layer.name} ({layer.description}) {'/'.join(layer.mismatches)}: shape {layer.shape} vs {layer.torch_shape}, "
            f"params {layer.params} vs {layer.torch_params}, fvcore {layer.fvcore_flops} vs {layer.fvcore}, "
            f"torch {layer.torch_flops} vs {layer.torch}"
        )
    return "\n".join(lines)


# ---- valid specs agree with torch and both oracles ----------------------------------------


@PROPERTY
@given(spec=valid_specs(), batch=st.integers(1, 3))
def test_random_specs_agree_with_torch_and_both_oracles(spec, batch):
    model = load_dict(spec)
    checked = check_model(model, device="cpu", batch=batch, runs=0)
    assert checked.ok, yaml.safe_dump(spec, sort_keys=False) + explain(checked)
    assert all(layer.torch_shape == layer.shape for layer in checked.layers)
    assert checked.totals.torch_params == checked.totals.params


# ---- the calculator accepts exactly what torch accepts ------------------------------------

sizes = st.integers(1, 12)
small = st.integers(0, 4)


def pairs(values):
    return st.one_of(values, st.tuples(values, values))


def torch_shape(module, shape):
    """torch's output shape (without the batch), or None where torch refuses."""
    try:
        return tuple(module(torch.zeros((1, *shape))).shape[1:])
    except (RuntimeError, ValueError):
        return None


def calculator_shape(layer, shape):
    try:
        return run(Model(name="one", input=shape, layers=(layer,))).rows[0].output_shape[1:]
    except SpecError:
        return None


@PROPERTY
@given(
    c=st.integers(1, 6), h=sizes, w=sizes, out=st.integers(1, 6), k=pairs(st.integers(1, 7)),
    s=pairs(st.integers(1, 3)), p=st.one_of(pairs(small), st.sampled_from(["same", "valid"])),
    d=pairs(st.integers(1, 3)), g=st.integers(1, 3),
)
def test_conv2d_is_accepted_exactly_when_torch_accepts(c, h, w, out, k, s, p, d, g):
    layer = Conv2d(out_channels=out, kernel_size=k, stride=s, padding=p, dilation=d, groups=g)
    try:
        module = torch.nn.Conv2d(c, out, k, s, p, d, g)
    except (RuntimeError, ValueError):
        module = None
    expected = None if module is None else torch_shape(module, (c, h, w))
    assert calculator_shape(layer, (c, h, w)) == expected


@PROPERTY
@given(
    h=sizes, w=sizes, k=pairs(st.integers(1, 6)), s=st.one_of(st.none(), pairs(st.integers(1, 3))),
    p=pairs(small), d=pairs(st.integers(1, 3)), ceil=st.booleans(), avg=st.booleans(),
)
def test_pooling_is_accepted_exactly_when_torch_accepts(h, w, k, s, p, d, ceil, avg):
    if avg:
        layer = AvgPool2d(kernel_size=k, stride=s, padding=p, ceil_mode=ceil)
        module = torch.nn.AvgPool2d(k, s, p, ceil)
    else:
        layer = MaxPool2d(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
        module = torch.nn.MaxPool2d(k, s, p, d, ceil_mode=ceil)
    assert calculator_shape(layer, (2, h, w)) == torch_shape(module, (2, h, w))


# ---- invalid specs raise a located SpecError, nothing else --------------------------------

# Values each argument can never take (torch refuses them, or they are the wrong type).
BAD_ARGS = {
    "conv2d": {
        "out_channels": [0, -1, 2.5, "8", True, None], "kernel_size": [0, [3], [1, 2, 3], "3", None, 1.5, [0, 1]],
        "stride": [0, -2, "2", [1, 0]], "padding": [-1, "full", [1, -1], 0.5], "dilation": [0, [1, 0]],
        "groups": [0, -1, False], "bias": ["no", 1, None], "in_channels": [0, 10_000],
    },
    "maxpool2d": {"kernel_size": [0, None, "x"], "stride": [0, "x"], "padding": [-1, "same"], "dilation": [0],
                  "ceil_mode": ["yes", 1]},
    "avgpool2d": {"kernel_size": [0, [2, -2]], "padding": [-1], "count_include_pad": ["no"]},
    "adaptiveavgpool2d": {"output_size": [0, None, [2, 0]]},
    "linear": {"out_features": [0, None, "x"], "bias": ["x"], "in_features": [0, 100_000]},
    "batchnorm2d": {"eps": [0, -1e-5, "x"], "momentum": [1.5, -0.1], "affine": ["x"], "num_features": [0, 10_000]},
    "localresponsenorm": {"size": [0, None], "alpha": ["x"]},
    "dropout": {"p": [1.5, -0.1, "x"]},
    "softmax": {"dim": [0, 2, -7, "x"]},
    "layernorm": {"eps": [0, "x"], "bias": [1], "normalized_shape": [0, 10_000]},
    "multiheadattention": {"num_heads": [0, 10_007, None], "embed_dim": [10_000], "dropout": [2]},
    "shiftedwindowattention": {"window_size": [0, [7, 0]], "num_heads": [0, 10_007], "shift_size": [-1]},
    "shiftedwindowattentionv2": {"window_size": [0], "num_heads": [10_007], "pretrained_window_size": [-1]},
    "partitionattention": {"partition_size": [0, [7, 0]], "head_dim": [0, 10_007], "partition_type": ["block", 1]},
    "selecttoken": {"index": [10_000, "x"]},
    "permute": {"dims": [[0, 1, 3, 2], [], "x", [0, 2, 3, 1, 4]]},
    "channelpad": {"out_channels": [0, "x"]},
}
BAD_LAYERS = [
    {"conv3d": {"out_channels": 2, "kernel_size": 3}}, "Conv2d", {"relu": {}, "tanh": {}}, 7, None, [],
    {"relu": {}, "name": "a.b"}, {"relu": {}, "name": "12"}, {"relu": {}, "name": ""}, {"relu": {}, "trainable": "no"},
    {"residual": {"shortcut": []}}, {"residual": {"body": [], "extra": []}}, {"concat": []}, {"concat": {"a": []}},
    {"repeat": {"times": -1, "layers": ["relu"]}}, {"repeat": {"times": 2.0, "layers": ["relu"]}},
    {"repeat": {"times": 2, "layers": ["relu"], "inline": "yes"}}, {"repeat": {"times": 2, "layers": ["relu"], "inline": True}, "name": "r"},
    {"repeat": {"times": 2, "layers": []}}, {"sequential": "relu"}, {"relu": {"inplace": True}},
    {"conv2d": {"out_channels": 4}}, {"conv2d": {"kernel_size": 3}}, {"linear": {}},
    {"conv2d": {"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": "same"}},
    {"conv2d": {"out_channels": 4, "kernel_size": 99}},
    "classtoken", "tokens", "meantokens", "patchmerge", {"shiftedwindowattention": {"window_size": 2, "num_heads": 1}},
    {"partitionattention": {"partition_size": 1, "head_dim": 1, "partition_type": "window"}},
    {"permute": {"dims": [0, 3, 1, 2]}},
]
BAD_INPUTS = [[0, 3, 3], [3, 3], "x", [3.5, 2, 2], [], None, [3, -1, 4], [True, 2, 2], {"c": 3}]


def layer_slots(layers: list, found: list) -> list:
    """(list, index) of every layer item that runs, nested ones included (a repeat of 0 times runs
    nothing: a bad layer there is never reached, as in torch)."""
    for i, item in enumerate(layers):
        found.append((layers, i))
        if not isinstance(item, dict):
            continue
        args = next((v for k, v in item.items() if k not in ("name", "trainable")), None)
        if isinstance(args, list):  # concat's branches, or a sequential's layers
            for branch in args if all(isinstance(b, list) for b in args) else [args]:
                layer_slots(branch, found)
        elif isinstance(args, dict) and args.get("times") != 0:
            for key in ("body", "shortcut", "layers"):
                if isinstance(args.get(key), list):
                    layer_slots(args[key], found)
    return found


@st.composite
def invalid_specs(draw):
    spec = copy.deepcopy(draw(valid_specs()))
    kind = draw(st.sampled_from(["arg", "arg", "layer", "input", "unknown-arg", "shape", "top"]))
    slots = layer_slots(spec["layers"], [])
    if kind == "input":
        spec["input"] = draw(st.sampled_from(BAD_INPUTS))
    elif kind == "top":
        spec[draw(st.sampled_from(["layer", "inputs", "model"]))] = 1
    elif kind == "layer":
        host, i = draw(st.sampled_from(slots))
        host.insert(i, copy.deepcopy(draw(st.sampled_from(BAD_LAYERS))))
    elif kind == "shape":  # first layer sees the input, whose shape we know
        c = spec["input"][0]
        spec["layers"].insert(0, draw(st.sampled_from([
            {"conv2d": {"out_channels": 2, "kernel_size": 1, "in_channels": c + 1}},
            {"conv2d": {"out_channels": 2, "kernel_size": 1, "groups": c + 1}},
            {"channelpad": {"out_channels": 1}} if c > 1 else {"linear": {"out_features": 2}},
            {"softmax": {"dim": 2}},
        ] if len(spec["input"]) == 3 else [
            {"conv2d": {"out_channels": 2, "kernel_size": 1}}, {"maxpool2d": {"kernel_size": 1}},
            {"linear": {"out_features": 2, "in_features": c + 1}}, {"batchnorm2d": {}},
        ])))
    else:
        leaves = [(h, i) for h, i in slots if isinstance(h[i], dict) and next(iter(h[i])) in BAD_ARGS]
        if kind == "unknown-arg" or not leaves:
            host, i = draw(st.sampled_from(slots))
            item = host[i] = {host[i]: None} if isinstance(host[i], str) else host[i]
            op = next(k for k in item if k not in ("name", "trainable"))
            if isinstance(item[op], dict) or item[op] is None:
                item[op] = {**(item[op] or {}), draw(st.sampled_from(["kernel", "inplace", "padding_mode"])): 1}
            else:
                item["what"] = 1
        else:
            host, i = draw(st.sampled_from(leaves))
            op = next(iter(host[i]))
            arg = draw(st.sampled_from(sorted(BAD_ARGS[op])))
            host[i][op] = {**(host[i][op] or {}), arg: draw(st.sampled_from(BAD_ARGS[op][arg]))}
            if op in ("conv2d",) and "kernel_size" not in host[i][op]:
                host[i][op]["kernel_size"] = 1
    return spec


@PROPERTY
@given(spec=invalid_specs())
def test_random_invalid_specs_raise_a_located_spec_error(spec):
    text = yaml.safe_dump(spec, sort_keys=False)
    with pytest.raises(SpecError) as raised:
        run(load_text(text))
    assert raised.value.file == FILE, f"{raised.value} (no file) for\n{text}"
    assert "\n" not in str(raised.value)


TOKENS = [*"{}[]:-,'\"\n #$&*!|>", "name", "input", "layers", "conv2d", "relu", "3", "1.5", "true", "null", "models",
          "blocks", "extends", "residual", "body", "concat", "repeat", "times", "kernel_size", "out_channels"]


@settings(max_examples=max(EXAMPLES // 2, 50), deadline=None, derandomize=True, database=None)
@given(text=st.lists(st.sampled_from(TOKENS)).map("".join))
def test_random_text_only_ever_raises_spec_error(text):
    try:
        run(load_text(text))
    except SpecError:
        pass
