"""The proof of `archcalc train` against torch (archcalc.training_check): one step of the spec's torch
build, backward flops from FlopCounterMode during loss.backward() (per layer and in total), the
storages saved_tensors_hooks sees, and what an optimizer step allocates.

Small inputs and batches keep it to a couple of minutes on two cores; every built-in at its own size is
`python -m archcalc.training_check --all` (writes reports/training-check.md)."""

from __future__ import annotations

import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archcalc import train_step
from archcalc.errors import SpecError
from archcalc.loader import SpecFile
from archcalc.yamlfile import parse

torch = pytest.importorskip("torch")
from archcalc.torchbuild import build_module  # noqa: E402
from archcalc.training_check import ACTIVATION_CAP, MACS_CAP, compare, measure, sweep_input  # noqa: E402
from spec_strategies import valid_specs  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# every op kind at least once: LRN (alexnet), grouped/depthwise conv, SE gates, hardswish (mobilenet),
# silu and stochastic depth (efficientnet), chunk/concat/channelshuffle (shufflenet), layer norm on a
# channels-first map, permute, layer scale, gelu (convnext), tokens, class token, MHA, select token (vit),
# window attention, patch merging (swin), batchnorm1d (lenet-bn)
BUILT_INS = [("lenet-bn", None), ("alexnet", (3, 67, 67)), ("resnet18", (3, 32, 32)), ("mobilenet-v3-small", (3, 32, 32)),
             ("efficientnet-b0", (3, 32, 32)), ("shufflenet-v2-x0-5", (3, 32, 32)), ("convnext-tiny", (3, 32, 32)),
             ("vit-b-16", (3, 32, 32)), ("swin-t", (3, 32, 32)), ("swin-v2-t", (3, 32, 32))]


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
@pytest.mark.parametrize("name, size", BUILT_INS)
def test_built_ins_match_torch(name, size, precision):
    """Backward MACs x 2 == FlopCounterMode during loss.backward(), per layer and in total; saved bytes ==
    saved_tensors_hooks' distinct storages, per layer and in total (CPU autocast for bf16-mixed)."""
    result = compare(name, batch=2, input=size, precision=precision)
    assert result.agrees, "\n".join(result.differences)


@pytest.mark.parametrize("name", ["mobilenet-v3-small", "vit-b-16"])
def test_fp16_mixed_matches_torch(name):
    result = compare(name, batch=2, input=(3, 32, 32), precision="fp16-mixed")
    assert result.agrees, "\n".join(result.differences)


@pytest.mark.parametrize("optimizer", ["sgd", "sgd-momentum", "adam", "adamw"])
def test_optimizer_bytes_match_torch(optimizer):
    spec = _model({"name": "small", "input": [3, 12, 12], "layers": [
        {"conv2d": {"out_channels": 4, "kernel_size": 3}}, {"batchnorm2d": {}}, {"relu": {}},
        {"conv2d": {"out_channels": 4, "kernel_size": 3, "bias": False}, "trainable": False},
        {"flatten": {}}, {"linear": {"out_features": 3}}]})
    measured = measure(spec, optimizers=[optimizer])
    ours = train_step(spec, batch=2, optimizer=optimizer, device="cpu").total
    assert (ours.weight_bytes, ours.gradient_bytes, ours.optimizer_bytes) == \
        (measured.weight_bytes, measured.grad_bytes, measured.optimizer_bytes[optimizer])


def test_backward_splits_into_input_and_weight_gradients():
    """The input-gradient pass runs no weight-gradient op: a linear's backward is one matmul for each
    (batch x in x out MACs), a first conv's only its weight's; frozen, only the input's."""
    spec = _model({"name": "split", "input": [3, 8, 8], "layers": [
        {"conv2d": {"out_channels": 4, "kernel_size": 3, "bias": False}}, {"flatten": {}},
        {"linear": {"out_features": 5}}, {"linear": {"out_features": 5}, "trainable": False},
        {"linear": {"out_features": 2}}]})
    result = compare(spec, batch=3, optimizers=["sgd-momentum"])
    assert result.agrees, "\n".join(result.differences)
    conv = 3 * 4 * 6 * 6 * 3 * 3 * 3  # batch x output elements x (in channels x kernel)
    fc1, fc2, fc3 = 3 * 144 * 5, 3 * 5 * 5, 3 * 5 * 2
    assert result.quantities["input grad"].torch == 2 * (fc1 + fc2 + fc3)
    assert result.quantities["weight grad"].torch == 2 * (conv + fc1 + fc3)


def test_sweep_input_rule():
    """--all's input: the model's own under both caps by archcalc's prediction, else the cross-check's 64 x 64,
    or the smallest side above 64 the spec accepts."""
    own = sweep_input("resnet18")
    assert (own.input, own.reason, own.macs) == ((3, 224, 224), "its own", 1_814_073_344)  # archcalc table resnet18
    giant = sweep_input("vit-h-14")
    assert giant.input == (3, 64, 64) and giant.macs > MACS_CAP and giant.reason.startswith("reduced: at its own 3x518x518")
    assert sweep_input("efficientnet-b4").activation_bytes > ACTIVATION_CAP  # 380 x 380, under the MACs cap
    wide = _model({"name": "wide", "input": [3, 512, 512], "layers": [{"conv2d": {"out_channels": 64, "kernel_size": 70}}]})
    assert sweep_input(wide).input == (3, 70, 70)  # a 70 x 70 kernel: nothing smaller than 70


RANDOM = settings(max_examples=int(os.environ.get("ARCHCALC_TRAIN_EXAMPLES", "15")), deadline=None, derandomize=True,
                  database=None, suppress_health_check=list(HealthCheck))


@RANDOM
@given(spec=valid_specs(), batch=st.sampled_from([1, 2, 8]), precision=st.sampled_from(["fp32", "bf16-mixed"]))
def test_random_specs_match_torch(spec, batch, precision):
    model = _model(spec)
    try:
        result = compare(model, batch=batch, precision=precision)
    except SpecError as err:  # torch refuses it too: batch norm in training on one value per channel
        assert "more than one value per channel" in str(err)
        return
    assert result.agrees, f"batch {batch}, {precision}\n" + yaml.safe_dump(spec, sort_keys=False) + \
        "\n".join(result.differences)


@pytest.mark.parametrize("name", ["vit-b-16", "swin-t"])
def test_batch_one_keeps_views(name):
    """At batch 1 attention's k^T and v reshape to views of qkv's output, not copies (torch's reshape)."""
    result = compare(name, batch=1, input=(3, 32, 32))
    assert result.agrees, "\n".join(result.differences)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name, precision", [("resnet18", "fp32"), ("resnet18", "bf16-mixed"), ("vit-b-16", "bf16-mixed")])
def test_cuda_saved_bytes_and_peak(name, precision):
    """On a GPU: the CUDA rules (bool dropout masks, float32 layer norm and softmax under autocast) exactly,
    and the peak estimate against torch.cuda.max_memory_allocated for one AdamW step."""
    result = compare(name, batch=8, input=(3, 64, 64), precision=precision, device="cuda")
    assert result.agrees, "\n".join(result.differences)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    net = build_module(name, input=(3, 64, 64), init=False, device="cuda")  # one whole-model AdamW step
    optimizer = torch.optim.AdamW(net.parameters())
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
        loss = net(torch.randn(8, 3, 64, 64, device="cuda")).float().sum()
    loss.backward()
    optimizer.step()
    peak = torch.cuda.max_memory_allocated() - before
    estimate = train_step(name, batch=8, input=(3, 64, 64), precision=precision, optimizer="adamw").total.peak_bytes
    assert 0.5 <= estimate / peak <= 2.0, (estimate, peak)


def _model(spec: dict):
    return SpecFile("random.yaml", parse(yaml.safe_dump(spec, sort_keys=False), "random.yaml")).model()
