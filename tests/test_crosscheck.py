"""The torch builder and the cross-check: every built-in agrees with torch, fvcore and
FlopCounterMode layer by layer; the check leaves nothing behind; the oracles' known
miscounts are shown with evidence; calculator fixes the cross-check found stay fixed."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
import weakref
from dataclasses import replace

import pytest

import archcalc
from archcalc.errors import SpecError
from archcalc.spec import AvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Model, ReLU, Residual, Sequential

torch = pytest.importorskip("torch")
fvcore_nn = pytest.importorskip("fvcore.nn")

from archcalc import crosscheck  # noqa: E402
from archcalc.crosscheck import CrossCheckError, check_model, check_module, resolve_device  # noqa: E402
from archcalc.torchbuild import build_module, is_leaf, layer_modules  # noqa: E402

SLOW_MACS = 3e9  # models above this many MACs take a second or more each on a 2-core CPU
# The larger members of the transformer-era families are checked with fewer blocks on a 64 x 64
# input: the same widths, heads and windows, every op of the family, without minutes and
# gigabytes per model (ViT-H/14 in full: 632M parameters, 60 s, 2.8 GB). The first member of
# each family (vit-b-16, swin-t, swin-v2-t, convnext-tiny) runs in full at its own input.
SHORT = (3, 64, 64)
SHORTENED = {
    **{name: ({"layers": 1}, SHORT) for name in ("vit-b-32", "vit-l-16", "vit-l-32", "vit-h-14")},
    **{name: ({"depth3": 2}, SHORT) for name in ("swin-s", "swin-b", "swin-v2-s", "swin-v2-b")},
    **{name: ({"depth3": 1}, SHORT) for name in ("convnext-small", "convnext-base", "convnext-large")},
    # RegNets past the 400MF pair (which run in full): one block in the long third stage (and the
    # second, for 128GF's 165M parameters left), at their widths: fvcore's cost is per layer
    **{name: ({"d3": 1}, SHORT) for name in (
        "regnet-y-800mf", "regnet-y-1-6gf", "regnet-y-3-2gf", "regnet-y-8gf", "regnet-y-16gf", "regnet-y-32gf",
        "regnet-x-800mf", "regnet-x-1-6gf", "regnet-x-3-2gf", "regnet-x-8gf", "regnet-x-16gf", "regnet-x-32gf")},
    "regnet-y-128gf": ({"d2": 1, "d3": 1}, SHORT),
    # densenet121 runs in full (427 rows); the others' long third and fourth blocks are shortened
    **{name: ({"blocks3": 2, "blocks4": 2}, SHORT) for name in ("densenet161", "densenet169", "densenet201")},
    # every block of these runs, at 64 x 64 rather than their default inputs (up to 600 x 600), where
    # fvcore and a forward pass take 20-40 s each; `archcalc report --crosscheck` runs them at full size
    **{name: (None, SHORT) for name in (
        "efficientnet-b1", "efficientnet-b2", "efficientnet-b3", "efficientnet-b4", "efficientnet-b5",
        "efficientnet-b6", "efficientnet-b7", "efficientnet-v2-s", "efficientnet-v2-m", "efficientnet-v2-l",
        "resnet101", "resnet152", "resnext50-32x4d", "resnext101-32x8d", "resnext101-64x4d", "wide-resnet50-2",
        "wide-resnet101-2")},
}


def _param(name: str):
    params, size = SHORTENED.get(name, (None, None))
    slow = archcalc.analyze(name, params=params, input=size).total.macs > SLOW_MACS
    return pytest.param(name, marks=pytest.mark.slow) if slow else name


MODELS = [_param(name) for name in archcalc.list_models()]


def _describe(checked) -> str:
    return "\n".join(
        f"{l.name}: {'/'.join(l.mismatches)} shape {l.shape} vs {l.torch_shape}, params {l.params} vs {l.torch_params}, "
        f"fvcore {l.fvcore_flops} vs {l.fvcore}, torch {l.torch_flops} vs {l.torch}"
        for l in checked.mismatches
    ) + f"\n{checked.problems} {checked.totals}"


@pytest.mark.parametrize("name", MODELS)
def test_builtin_agrees_with_torch_and_both_oracles(name):
    params, size = SHORTENED.get(name, (None, None))
    checked = check_model(name, device="cpu", runs=0, params=params, input=size)
    assert checked.ok, _describe(checked)
    rows = archcalc.analyze(name, params=params, input=size).rows
    assert [layer.name for layer in checked.layers] == [row.name for row in rows]
    assert all(layer.torch_shape == layer.shape for layer in checked.layers)
    assert checked.totals.torch_params == checked.totals.params
    assert checked.totals.torch == checked.totals.torch_flops == 2 * checked.totals.macs


@pytest.mark.parametrize("name", archcalc.list_models())
def test_module_names_are_the_calculators_row_paths(name):
    net = build_module(name, device="meta", init=False)
    modules = layer_modules(net)
    result = archcalc.analyze(name)
    leaves = {n for n, m in modules.items() if n and is_leaf(m)}
    joins = {row.name for row in result.rows if row.op in ("concat", "add", "mul")}
    assert leaves == {row.name for row in result.rows} - joins
    assert all(not is_leaf(modules[n]) for n in joins)  # a join is its composite module
    # the two derivations of every weight shape (torch's meta pass, the calculator) agree
    assert sum(p.numel() for p in net.parameters()) == result.total.params


# ---- published figures, through the real network ------------------------------------------


def test_resnet50_oracle_totals_and_their_conventions():
    # torchvision documents ResNet-50 at 4.09 "GFLOPS" (multiply-adds) and 25,557,032 params;
    # fvcore adds batch norm (2 per element) and the global average pool; torch doubles MACs.
    checked = check_model("resnet50", device="cpu", runs=0)
    t = checked.totals
    assert t.torch_params == 25_557_032
    assert round(t.macs / 1e9, 2) == 4.09
    assert t.fvcore > t.macs and round(t.fvcore / 1e9, 2) == 4.11
    assert t.torch == 2 * t.macs
    assert {"fvcore", "torch", "calculator_macs"} <= set(checked.to_dict()["conventions"])


def test_mobilenet_v3_oracle_totals():
    # torchvision: 5,483,032 params, 0.217 GFLOPS. Hard-swish, hard sigmoid and the gates' products
    # count 0 for fvcore (unsupported aten::hardswish, aten::hardsigmoid, aten::mul) and for torch.
    checked = check_model("mobilenet-v3-large", device="cpu", runs=0)
    t = checked.totals
    assert checked.ok and t.torch_params == 5_483_032
    assert t.macs == 216_589_760 and t.torch == 2 * t.macs
    assert t.fvcore == 216_589_760 + 8_799_616 + 644_448  # + batch norms + adaptive average pools
    assert {"aten::hardswish", "aten::hardsigmoid", "aten::mul"} <= set(checked.fvcore_unsupported)


# ---- the result object ---------------------------------------------------------------------


def test_check_result_reports_device_versions_timing_and_serialises():
    checked = check_model("lenet", device="cpu", runs=3, warmup=1)
    assert checked.device == "cpu" and checked.versions["torch"] == torch.__version__
    assert checked.versions["fvcore"][0].isdigit()
    assert checked.timing.runs == 3 and len(checked.timing.times_s) == 3
    assert min(checked.timing.times_s) <= checked.timing.median_s <= max(checked.timing.times_s)
    assert checked.timing.flops == checked.totals.torch_flops
    assert checked.timing.flops_per_s == pytest.approx(checked.timing.flops / checked.timing.median_s)
    d = json.loads(json.dumps(checked.to_dict()))
    assert d["ok"] is True and d["model"] == "lenet" and d["input_shape"] == [1, 1, 28, 28]
    assert {layer["status"] for layer in d["layers"]} == {"ok"}
    assert d["timing"]["runs"] == 3


def test_a_wrong_calculator_row_is_reported_as_a_disagreement():
    net = build_module("lenet", init=False)
    result = archcalc.analyze("lenet")
    rows = list(result.rows)
    rows[0] = rows[0]._replace(output_shape=(1, 6, 27, 27), params=rows[0].params + 1)
    rows[3] = rows[3]._replace(fvcore_flops=rows[3].fvcore_flops + 1, torch_flops=rows[3].torch_flops + 2)
    checked = check_module(net, replace(result, rows=tuple(rows)), runs=0)
    assert not checked.ok
    assert [(l.name, l.mismatches) for l in checked.mismatches] == [
        (rows[0].name, ("shape", "params")), (rows[3].name, ("fvcore", "torch")),
    ]


def test_fvcore_noise_is_captured_not_sprayed(caplog, recwarn):
    caplog.set_level(logging.DEBUG)
    checked = check_model("alexnet-paper", device="cpu", runs=0)
    assert checked.ok
    assert "aten::max_pool2d" in checked.fvcore_unsupported  # pooling is 0 in fvcore's convention
    assert any("max_pool2d" in line for line in checked.warning_summary())
    assert not [r for r in caplog.records if r.name.startswith("fvcore")]
    assert len(recwarn) == 0


# ---- nothing left behind -------------------------------------------------------------------


def _hook_counts(net):
    return [
        (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks), len(m._backward_pre_hooks))
        for m in net.modules()
    ]


def _global_hooks():
    from torch.nn.modules import module

    return [len(getattr(module, name)) for name in dir(module) if name.startswith("_global_") and name.endswith("hooks")]


def test_check_leaves_the_module_and_torch_as_they_were():
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    torch.manual_seed(0)
    net = build_module("resnet20")  # random init: weights worth comparing
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grads = [p.requires_grad for p in net.parameters()]
    hooks, global_hooks = _hook_counts(net), _global_hooks()
    checked = check_module(net, runs=2)
    assert checked.ok
    assert net.training and all(m.training for m in net.modules())
    assert _hook_counts(net) == hooks and _global_hooks() == global_hooks
    assert [p.requires_grad for p in net.parameters()] == grads
    after = net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not _get_current_dispatch_mode_stack()
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_no_weights_are_kept_after_a_models_check(monkeypatch):
    refs = []

    def spy(*args, **kwargs):
        net = build_module(*args, **kwargs)
        refs.extend(weakref.ref(t) for t in (net, next(net.parameters())))
        return net

    monkeypatch.setattr(crosscheck, "build_module", spy)
    crosscheck.check_all(["lenet", "resnet20"], device="cpu", runs=1)
    assert len(refs) == 4 and all(ref() is None for ref in refs)


# ---- devices -------------------------------------------------------------------------------


def test_auto_is_cpu_without_cuda_and_cuda_fails_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")
    with pytest.raises(CrossCheckError) as raised:
        resolve_device("cuda")
    assert "CUDA is not available" in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(CrossCheckError, match="auto, cpu, cuda"):
        resolve_device("tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_agrees_too():
    checked = check_model("resnet18", device="cuda", runs=3)
    assert checked.ok and checked.device.startswith("cuda")


# ---- the builder as a user sees it ---------------------------------------------------------


def test_import_archcalc_does_not_import_torch():
    code = "import sys, archcalc; archcalc.analyze('resnet50'); print(sorted({'torch', 'fvcore'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_user_can_train_the_built_network():
    # LeNet (d2l 7.6) memorises a fixed batch of 16 random images with random labels.
    torch.manual_seed(0)
    net = archcalc.build_module("lenet")
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    losses = []
    for _ in range(100):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 2.0 and losses[-1] < 0.1  # from about ln(10) = 2.3 to near 0


def test_trainable_false_freezes_exactly_the_calculators_untrained_params():
    block = Sequential(name="stem", trainable=False, layers=(Conv2d(out_channels=4, kernel_size=3), BatchNorm2d()))
    model = Model(name="frozen", input=(3, 8, 8), layers=(block, ReLU(), Flatten(), Linear(out_features=2)))
    net = build_module(model)
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {"stem.0.weight", "stem.0.bias", "stem.1.weight", "stem.1.bias"}
    result = archcalc.analyze(model)
    assert result.total.trainable_params == sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert check_model(model, device="cpu", runs=0).ok


def test_builder_reports_bad_specs_as_spec_errors():
    bad = Model(name="bad", input=(3, 8, 8), layers=(Conv2d(out_channels=4, kernel_size=9),))
    with pytest.raises(SpecError, match="larger than the padded input"):
        build_module(bad)
    clash = Model(name="clash", input=(3, 8, 8), layers=(Sequential(name="blk", layers=(ReLU(name="training"),)),))
    archcalc.analyze(clash)  # a legal spec ...
    with pytest.raises(SpecError, match=r"^blk: a layer named 'training' cannot be a torch submodule"):
        build_module(clash)  # ... that torch cannot name


def test_spec_parameters_and_default_init():
    net = build_module("stacked-3x3", params={"C": 8})
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(8, 8)] * 3
    assert net.spec.name == "stacked-3x3" and net.training
    assert all(c.weight.abs().sum() > 0 for c in convs)  # torch's own initialisation, not zeros


def test_residual_and_input_override():
    body = (Conv2d(out_channels=3, kernel_size=3, padding=1), ReLU(), Conv2d(out_channels=3, kernel_size=3, padding=1))
    model = Model(name="res", input=(3, 8, 8), layers=(Residual(name="block", body=body),))
    net = build_module(model, input=(3, 5, 7))
    assert isinstance(net.get_submodule("block.body.0"), torch.nn.Conv2d) and net.get_submodule("block").shortcut is None
    assert tuple(net(torch.zeros(2, 3, 5, 7)).shape) == (2, 3, 5, 7)
    assert check_model(model, device="cpu", input=(3, 5, 7), batch=2, runs=0).ok


def test_an_empty_concat_branch_is_the_input_itself():
    # DenseNet's layer: its input and its output joined; [] and [] joins the input twice
    dense = archcalc.Concat(name="dense", branches=((), (Conv2d(out_channels=2, kernel_size=3, padding=1),)))
    model = Model(name="dense", input=(3, 6, 6), layers=(dense, archcalc.Concat(name="twice", branches=((), ()))))
    net = build_module(model).eval()
    x = torch.randn(2, 3, 6, 6)
    y = torch.cat((x, net.get_submodule("dense.1")(x)), dim=1)
    torch.testing.assert_close(net(x), torch.cat((y, y), dim=1))
    assert [name for name, _ in net.named_modules()] == ["", "dense", "dense.1", "twice"]
    assert check_model(model, device="cpu", batch=2, runs=0).ok


def test_gate_chunk_shuffle_and_layer_scale_compute_what_torchvision_does():
    # squeeze-and-excitation (torchvision.ops.SqueezeExcitation), a ShuffleNet V2 unit (x.chunk(2, dim=1),
    # cat, channel_shuffle by view / transpose), ConvNeXt's layer scale, stochastic depth in eval mode
    se = archcalc.Gate(name="se", layers=(archcalc.AdaptiveAvgPool2d(output_size=1), Conv2d(out_channels=2, kernel_size=1),
                                          ReLU(), Conv2d(out_channels=8, kernel_size=1), archcalc.Hardsigmoid()))
    unit = archcalc.Concat(name="unit", branches=((archcalc.Chunk(chunks=2, index=0),),
                                                  (archcalc.Chunk(chunks=2, index=1), Conv2d(out_channels=4, kernel_size=1))))
    layers = (se, unit, archcalc.ChannelShuffle(groups=2), archcalc.LayerScale(init_value=0.5, name="scale"),
              archcalc.StochasticDepth(p=0.5, name="drop"))
    torch.manual_seed(0)
    net = build_module(Model(name="modern", input=(8, 5, 5), layers=layers)).eval()
    x = torch.randn(3, 8, 5, 5)
    fc1, fc2, conv = net.get_submodule("se.1"), net.get_submodule("se.3"), net.get_submodule("unit.1.1")
    scale = torch.nn.functional.hardsigmoid(fc2(torch.relu(fc1(x.mean((2, 3), keepdim=True)))))
    y = x * scale
    y = torch.cat((y[:, :4], conv(y[:, 4:])), dim=1)
    y = y.view(3, 2, 4, 5, 5).transpose(1, 2).reshape(3, 8, 5, 5)
    assert net.get_submodule("scale").weight.shape == (8, 1, 1)
    torch.testing.assert_close(net(x), 0.5 * y)
    drop = net.get_submodule("drop").train()  # row mode: each sample kept (and scaled by 2) or zeroed
    out = drop(torch.ones(64, 3))
    assert set(out.sum(1).tolist()) <= {0.0, 6.0} and 0 < out.sum() < 64 * 6


# ---- an oracle's own miscount, shown with evidence (docs/oracles.md) ------------------------


def test_fvcore_counts_nothing_for_string_padding_and_the_check_says_so():
    # Evidence: the same 3x3 convolution, padding 1 vs padding "same": identical output and
    # MACs (8 * 3 * 3 * 3 * 9 * 9 = 17,496), but fvcore traces the string form as
    # aten::_convolution_mode, which it has no handle for, and reports 0.
    x = torch.randn(1, 3, 9, 9)
    explicit, same = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(3, 8, 3, padding="same")
    assert fvcore_nn.FlopCountAnalysis(explicit, x).unsupported_ops_warnings(False).total() == 17_496
    analysis = fvcore_nn.FlopCountAnalysis(same, x).unsupported_ops_warnings(False)
    assert analysis.total() == 0 and "aten::_convolution_mode" in analysis.unsupported_ops()
    # the cross-check shows the layer as an oracle gap, not a disagreement, and FlopCounterMode agrees
    model = Model(name="same", input=(3, 9, 9), layers=(Conv2d(out_channels=8, kernel_size=3, padding="same", name="c"),))
    checked = check_model(model, device="cpu", runs=0)
    layer = checked.layers[0]
    assert checked.ok and layer.status == "oracle-gap" and layer.fvcore == 0 and layer.fvcore_flops == 17_496
    assert layer.torch == layer.torch_flops == 2 * 17_496
    assert checked.totals.fvcore_expected == 0


# ---- calculator bugs the cross-check found (fixed in archcalc/ops.py) ----------------------


def _torch_refuses(module, shape) -> bool:
    try:
        module(torch.zeros(1, *shape))
    except RuntimeError:
        return True
    return False


def test_maxpool_padding_limit_is_half_the_undilated_kernel():
    # torch's pool2d_shape_check: kW / 2 >= padW on the kernel *before* dilation. A 2-wide
    # kernel dilated by 3 spans 4 pixels, but padding 2 > 2 // 2 is refused.
    layer = MaxPool2d(kernel_size=2, dilation=3, padding=2, stride=1)
    assert _torch_refuses(torch.nn.MaxPool2d(2, 1, 2, 3), (1, 8, 8))
    with pytest.raises(SpecError, match="more than half the kernel 2"):
        archcalc.analyze(Model(name="m", input=(1, 8, 8), layers=(layer,)))
    # padding 1 is fine: (8 + 2 - 3 * 1 - 1) // 1 + 1 = 7
    ok = MaxPool2d(kernel_size=2, dilation=3, padding=1, stride=1)
    assert archcalc.analyze(Model(name="m", input=(1, 8, 8), layers=(ok,))).rows[0].output_shape == (1, 1, 7, 7)


def test_ceil_mode_pool_may_be_wider_than_its_input():
    # torch's pooling_output_shape: floor((n + 2p - k + s - 1) / s) + 1 in ceil mode, so a
    # 3x3 / 2 pool on a 2x2 map gives (2 - 3 + 1) // 2 + 1 = 1, where floor mode refuses.
    shape = (4, 2, 2)
    assert tuple(torch.nn.MaxPool2d(3, 2, ceil_mode=True)(torch.zeros(1, *shape)).shape) == (1, 4, 1, 1)
    for cls in (MaxPool2d, AvgPool2d):
        model = Model(name="m", input=shape, layers=(cls(kernel_size=3, stride=2, ceil_mode=True),))
        assert archcalc.analyze(model).rows[0].output_shape == (1, 4, 1, 1)
        with pytest.raises(SpecError):
            archcalc.analyze(Model(name="m", input=shape, layers=(cls(kernel_size=3, stride=2),)))


@pytest.mark.parametrize("affine, per_element", [(True, 5), (False, 4)])
def test_batchnorm_without_running_stats_costs_fvcores_norm_estimate(affine, per_element):
    # fvcore's batchnorm handle: batch statistics (training, or track_running_stats=False even
    # in eval) use its norm estimate, 5 flops per element with affine, 4 without
    # (fvcore/nn/jit_handles.py, norm_flop_counter: "5 is just a rough estimate").
    layer = BatchNorm2d(affine=affine, track_running_stats=False)
    model = Model(name="bn", input=(3, 4, 5), layers=(layer,))
    assert archcalc.analyze(model, batch=2).rows[0].fvcore_flops == 2 * 3 * 4 * 5 * per_element
    assert check_model(model, device="cpu", batch=2, runs=0).ok
