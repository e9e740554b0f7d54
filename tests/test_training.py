"""Training-step accounting (archcalc.training, archcalc.training_rules) without torch: every op has a
rule, closed forms, the budget's arithmetic, the CLI. The proof against torch is test_training_torch.py."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from archcalc import train_step
from archcalc.cli import app
from archcalc.errors import SpecError
from archcalc.loader import SpecFile
from archcalc.ops import HANDLERS
from archcalc.training_rules import KEEPS, RULES, missing_rules
from archcalc.yamlfile import parse

runner = CliRunner()


# ---- every op has a rule ----------------------------------------------------------------------


def test_every_op_has_a_training_rule():
    missing = missing_rules()
    assert not missing, f"ops without a training rule (add one to archcalc/training_rules.py RULES and KEEPS): {missing}"
    assert set(RULES) == set(HANDLERS)


def test_every_rule_says_what_it_keeps():
    assert {cls.OP for cls in HANDLERS} | {"add", "concat", "mul"} <= set(KEEPS)


# ---- closed forms -----------------------------------------------------------------------------


def test_lenet_by_hand():
    """LeNet-5, batch 2, fp32: each conv keeps its input, each sigmoid its output, each avg pool its input
    (the sigmoid's output: kept already), each linear its input (the sigmoid's output, kept already)."""
    step = train_step("lenet", batch=2, optimizer="sgd", device="cpu")
    rows = {row.name: row for row in step.rows}
    assert rows["conv1"].saved_bytes == 2 * 1 * 28 * 28 * 4  # the network's input
    assert rows["act1"].saved_bytes == 2 * 6 * 28 * 28 * 4
    assert rows["pool1"].saved_bytes == 0 and "kept already" in rows["pool1"].keeps
    assert rows["conv2"].saved_bytes == 2 * 6 * 14 * 14 * 4
    assert rows["fc1"].saved_bytes == 2 * 400 * 4  # flatten's view of pool2's output
    assert rows["fc2"].saved_bytes == 0  # act3's output
    # the first layer needs no input gradient
    assert rows["conv1"].input_grad_macs == 0 and rows["conv1"].weight_grad_macs == rows["conv1"].forward_macs
    assert rows["conv2"].input_grad_macs == rows["conv2"].weight_grad_macs == 2 * 16 * 10 * 10 * 6 * 5 * 5
    total = step.total
    assert total.backward_macs == 2 * total.forward_macs - rows["conv1"].forward_macs
    params = 61_706  # LeNet-5's parameters (archcalc table lenet)
    assert total.weight_bytes == 4 * params and total.gradient_bytes == 4 * params and total.optimizer_bytes == 0


@pytest.mark.parametrize("optimizer, buffers", [("sgd", 0), ("sgd-momentum", 1), ("adam", 2), ("adamw", 2)])
def test_optimizer_state(optimizer, buffers):
    step = train_step("resnet18", optimizer=optimizer, device="cuda")
    params = 11_689_512  # torchvision's resnet18
    assert step.total.gradient_bytes == 4 * params
    # on cuda torch keeps Adam's step scalars on the host: only the float32 buffers count
    assert step.total.optimizer_bytes == buffers * 4 * params
    on_cpu = train_step("resnet18", optimizer=optimizer, device="cpu").total.optimizer_bytes
    tensors = 62  # 20 convs, 20 batch norms (weight and bias), the fc's weight and bias
    assert on_cpu == buffers * 4 * params + (4 * tensors if optimizer.startswith("adam") else 0)


def test_adam_keeps_a_step_per_swin_v2_attention_tensor():
    """Swin V2's attention has eight parameter tensors: qkv's and proj's weights and biases, the logit
    scale, and the bias MLP's two weights and first bias; Adam keeps a 4-byte step for each (on the host)."""
    spec = {"name": "swin-v2-tensors", "input": [8, 4, 4], "layers": [
        {"permute": {"dims": [0, 2, 3, 1]}},
        {"shiftedwindowattentionv2": {"window_size": 4, "shift_size": 0, "num_heads": 2}}]}
    model = _model(spec)
    step = train_step(model, optimizer="adam", device="cpu").total
    assert step.optimizer_bytes == 2 * step.gradient_bytes + 4 * 8


def test_frozen_layers_have_no_gradient_nor_weight_gradient_work():
    spec = {"name": "frozen", "input": [3, 8, 8], "layers": [
        {"conv2d": {"out_channels": 4, "kernel_size": 3}, "trainable": False},
        {"relu": {}},
        {"conv2d": {"out_channels": 4, "kernel_size": 3}},
        {"flatten": {}}, {"linear": {"out_features": 2}, "trainable": False}]}
    step = train_step(_model(spec), batch=2, optimizer="adam", device="cpu")
    first, relu, second, _, head = step.rows
    assert first.input_grad_macs == first.weight_grad_macs == 0 and first.saved_bytes == 0  # nothing needs a gradient
    assert relu.saved_bytes == 0  # its input does not require a gradient either
    assert second.input_grad_macs == 0 and second.weight_grad_macs == second.forward_macs
    assert head.weight_grad_macs == 0 and head.input_grad_macs == head.forward_macs
    assert head.saved_bytes == 0  # a frozen linear keeps only its weight (a parameter)
    assert step.total.gradient_bytes == 4 * (4 * 4 * 9 + 4)


def test_attention_on_an_input_without_gradient_does_only_weight_gradient_work():
    """Nothing before the attention trains: its gradients inside (out_proj's input, both matmuls' operands)
    serve only its weights, and torch, asked for the activations' gradients alone, runs none of them."""
    b, n, d = 2, 5, 8
    spec = {"name": "attention-first", "input": [d, 1, n], "layers": [{"tokens": {}}, {"multiheadattention": {"num_heads": 2}}]}
    attention = train_step(_model(spec), batch=b, device="cpu").rows[1]
    projections, inside = 4 * b * n * d * d, b * n * d * d + 2 * b * n * 2 * n * d
    assert (attention.input_grad_macs, attention.weight_grad_macs) == (0, projections + inside)


def test_swin_v2_bias_mlp_is_weight_gradient_work():
    """The bias MLP (2 -> 512 -> heads on the (2w-1)^2 relative coordinates, a buffer): both weights'
    gradients and the hidden layer's, which only the first weight's needs."""
    b, side, c, heads, window = 2, 4, 8, 2, 4
    spec = {"name": "swin-v2-bias", "input": [c, side, side], "layers": [
        {"conv2d": {"out_channels": c, "kernel_size": 1}}, {"permute": {"dims": [0, 2, 3, 1]}},
        {"shiftedwindowattentionv2": {"window_size": window, "shift_size": 0, "num_heads": heads}}]}
    attention = train_step(_model(spec), batch=b, device="cpu").rows[2]
    positions, table, hidden = b * side * side, (2 * window - 1) ** 2, 512
    projections, matmuls = positions * 4 * c * c, positions * 2 * window * window * c
    assert attention.input_grad_macs == projections + 2 * matmuls
    assert attention.weight_grad_macs == projections + table * (2 * hidden + 2 * hidden * heads)


def test_mixed_precision_keeps_low_precision_copies():
    fp32 = train_step("resnet18", batch=8, precision="fp32")
    bf16 = train_step("resnet18", batch=8, precision="bf16-mixed")
    assert bf16.total.weight_bytes == fp32.total.weight_bytes  # float32 master weights
    assert bf16.total.gradient_bytes == fp32.total.gradient_bytes
    conv = next(row for row in bf16.rows if row.op == "conv2d" and row.input_grad_macs)
    assert "weight copy (bfloat16)" in conv.keeps
    assert bf16.total.saved_bytes < fp32.total.saved_bytes
    assert train_step("resnet18", batch=8, precision="fp16-mixed").total.peak_bytes == bf16.total.peak_bytes + 8


def test_grouped_conv_weight_gradient_follows_flopcountermode():
    step = train_step("mobilenet-v3-small", device="cpu")
    depthwise = next(row for row in step.rows if row.description.endswith("g16"))
    assert depthwise.weight_grad_macs == 16 * depthwise.forward_macs


# ---- the budget -------------------------------------------------------------------------------


@pytest.mark.parametrize("name, precision", [("resnet50", "bf16-mixed"), ("vit-b-16", "fp32"), ("swin-v2-t", "fp16-mixed")])
def test_peak_is_linear_in_the_batch_and_the_budget_is_exact(name, precision):
    two = train_step(name, batch=2, precision=precision).total
    five = train_step(name, batch=5, precision=precision).total
    assert five.peak_bytes - two.peak_bytes == 3 * two.per_sample_bytes
    assert two.peak_bytes == two.fixed_bytes + 2 * two.per_sample_bytes
    one = train_step(name, batch=1, precision=precision).total
    assert (one.fixed_bytes, one.per_sample_bytes) == (two.fixed_bytes, two.per_sample_bytes)
    budget = 24 * 10**9
    largest = one.max_batch(budget)
    assert train_step(name, batch=largest, precision=precision).total.peak_bytes <= budget
    assert train_step(name, batch=largest + 1, precision=precision).total.peak_bytes > budget


def test_resnet50_headline():
    """The issue's question: ResNet-50, batch 256, bf16-mixed, AdamW, 24 GB."""
    step = train_step("resnet50", batch=256, optimizer="adamw", precision="bf16-mixed", budget=24 * 10**9)
    assert step.fits and step.max_batch == 501
    assert step.total.forward_macs == 256 * 4_089_184_256  # torchvision's 4.09 GFLOPS (MACs) per image
    assert round(step.total.step_flops / 1e12, 2) == 6.22


def test_batch_norm_on_one_value_is_refused_as_torch_refuses_it():
    with pytest.raises(SpecError, match="batchnorm2d in training needs more than one value per channel"):
        train_step(_model({"name": "one", "input": [3, 1, 1], "layers": [{"batchnorm2d": {}}]}), batch=1)


def test_bad_arguments_are_one_clear_error():
    with pytest.raises(SpecError, match="optimizer must be one of sgd, sgd-momentum, adam, adamw, got 'lion'"):
        train_step("lenet", optimizer="lion")
    with pytest.raises(SpecError, match="precision must be one of"):
        train_step("lenet", precision="int8")


# ---- the CLI ----------------------------------------------------------------------------------


def test_cli_table_json_and_csv():
    out = runner.invoke(app, ["train", "resnet50", "--batch", "256", "--optimizer", "adamw", "--precision",
                              "bf16-mixed", "--budget", "24GB"])
    assert out.exit_code == 0, out.output
    assert "budget 24.0 GB: batch 256 fits; largest batch 501" in out.output
    assert "step: 6.22 TFLOP" in out.output
    data = json.loads(runner.invoke(app, ["train", "lenet", "--format", "json", "--budget", "1GiB"]).output)
    assert data["budget_bytes"] == 2**30 and data["fits"] is True and data["layers"][0]["name"] == "conv1"
    assert data["total"]["backward_macs"] == data["total"]["input_grad_macs"] + data["total"]["weight_grad_macs"]
    csv = runner.invoke(app, ["train", "lenet", "--format", "csv"]).output.splitlines()
    assert csv[0] == "name,op,output_shape,forward_macs,input_grad_macs,weight_grad_macs,saved_bytes,keeps"


def test_cli_bad_budget_is_an_error():
    out = runner.invoke(app, ["train", "lenet", "--budget", "12XB"])
    assert out.exit_code == 2
    assert "'12XB' is not a size such as 24GB, 24GiB or 512MB" in out.output


def test_totals_are_the_rows_summed():
    step = train_step("vgg16", batch=7)
    assert step.total.saved_bytes == sum(row.saved_bytes for row in step.rows)
    assert step.total.backward_macs == sum(row.backward_macs for row in step.rows)
    assert step.total.step_flops == 2 * (step.total.forward_macs + step.total.backward_macs)


def _model(spec: dict):
    return SpecFile("random.yaml", parse(yaml.safe_dump(spec, sort_keys=False), "random.yaml")).model()
