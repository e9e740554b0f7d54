"""archcalc.importer (`archcalc import`, `from_module`, `analyze(module)`): hand-written modules with
functional calls, in-place ops, a gate, a repeated block, a shared block, ops archcalc lacks; the module
left as it was; a 600M-parameter module on the meta device; and torchvision's models, one per family,
imported and proved the same network as torchvision's (the params torchvision publishes, a built-in's
totals where one names the builder; weights moved across give the same output). All 80 of torchvision's
classifiers at their evaluation crop: `python tests/check_import_torchvision.py --all-torchvision`
(reports/import-torchvision.md)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import archcalc  # noqa: E402
from archcalc.cli import app  # noqa: E402
from archcalc.errors import SpecError  # noqa: E402
from archcalc.importer import build_on_meta, convert  # noqa: E402
from archcalc.torchvision_check import transfer_weights  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "import_modules"))
import nets  # noqa: E402

runner = CliRunner()
NETS = str(HERE / "import_modules" / "nets.py")


def same_function(module: nn.Module, model: archcalc.Model, shape: tuple[int, ...]) -> None:
    """The imported spec built in torch, with the module's weights moved in, computes what the module does."""
    module = module.eval()
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
                layer.running_mean.uniform_(-0.5, 0.5)
                layer.running_var.uniform_(0.5, 1.5)
    built = archcalc.build_module(model, init=False).eval()
    transfer_weights(module, built, imported=True)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        torch.testing.assert_close(built(x), module(x), rtol=1e-5, atol=1e-5)


def flop_counter_macs(module: nn.Module, shape: tuple[int, ...]) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module.eval()(torch.randn(1, *shape))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("builder", [nets.functional, nets.gated, nets.batch_normed])
def test_imported_module_counts_what_torch_counts_and_computes_the_same(builder) -> None:
    torch.manual_seed(0)
    module = builder()
    imported = convert(module, (3, 32, 32))
    total = archcalc.analyze(imported.model).total
    assert total.params == sum(p.numel() for p in module.parameters())
    assert total.macs == flop_counter_macs(module, (3, 32, 32))
    same_function(module, imported.model, (3, 32, 32))


def test_functional_calls_in_place_ops_and_joins_become_archcalc_layers() -> None:
    text = convert(nets.functional(), (3, 32, 32)).text
    for line in ("- {relu: {}, name: relu}",  # F.relu(inplace=True)
                 "- {maxpool2d: {kernel_size: 2}, name: max_pool2d}",  # F.max_pool2d(x, 2)
                 "residual:",  # out += x
                 "- - {identity: {}}",  # torch.cat([out, f(out)]): out passes as it is
                 "- {adaptiveavgpool2d: {output_size: 1}, name: mean}",  # out.mean((2, 3))
                 "- {dropout: {p: 0.2}, name: dropout}"):  # F.dropout
        assert line in text


def test_a_run_of_identical_modules_is_one_block_repeated_and_a_product_is_a_gate() -> None:
    text = convert(nets.gated(), (3, 32, 32), source="nets:gated").text
    assert "  # nets.Block, at blocks.0, blocks.1, blocks.2\n  block:\n" in text
    assert "- {repeat: {times: 3, layers: [{block: {}}]}, name: blocks}" in text
    assert "- name: se\n              gate:\n" in text  # x * sigmoid(...): Gate's one use, written where it is
    assert text.count("conv2d") == 4  # stem, block's conv, fc1, fc2: not three copies
    assert text.startswith("# Imported by archcalc") and "source: nets:gated, traced by archcalc import" in text


def test_a_shared_module_is_refused_with_what_and_why() -> None:
    with pytest.raises(SpecError, match=r"^import: block \(Block\) is called 2 times: a module called more than "
                                        r"once shares its parameters"):
        convert(nets.shared(), (3, 32, 32))


def test_every_unmapped_call_is_named_at_once_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "net.yaml"
    result = runner.invoke(app, ["import", f"{NETS}:spectral", "--input", "3x32x32", "-o", str(out)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: import: filter (Spectral.forward): torch.fft.rfft2 has no archcalc op; filter (Spectral.forward): "
        "torch.fft.irfft2 has no archcalc op; up (Upsample): nn.Upsample has no archcalc op (--allow-unknown keeps "
        "them as zero-cost placeholders)"]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_allow_unknown_keeps_placeholders_that_analyse_and_say_so(tmp_path: Path) -> None:
    out = tmp_path / "net.yaml"
    result = runner.invoke(app, ["import", f"{NETS}:spectral", "-i", "3x32x32", "-o", str(out), "--allow-unknown"])
    assert result.exit_code == 0, result.output
    assert "3 call(s) kept as zero-cost `unknown` placeholders, not counted" in result.output
    text = out.read_text()
    assert "- {unknown: {what: torch.fft.rfft2, output: [8, 32, 17]}, name: fft_rfft2}  # a placeholder" in text
    rows = {row.name: row for row in archcalc.analyze(str(out)).rows}
    assert rows["up"].description == "UNKNOWN nn.Upsample (not counted)" and rows["up"].output_shape == (1, 8, 64, 64)
    assert rows["fc"].params == 8 * 64 * 64 * 10 + 10  # the shapes after a placeholder are torch's
    with pytest.raises(SpecError, match="placeholder of `archcalc import --allow-unknown`"):
        archcalc.build_module(str(out))


def test_the_module_is_left_as_it_was() -> None:
    module = nets.gated().train()
    before = {k: (v.data_ptr(), v.clone()) for k, v in module.state_dict().items()}
    functions = (torch.cat, torch.relu, nn.functional.relu, nn.Module.__call__, nn.Conv2d.forward)
    model = archcalc.from_module(module, input=(3, 32, 32))
    assert model.input == (3, 32, 32)
    after = module.state_dict()
    assert all(after[k].data_ptr() == ptr and torch.equal(after[k], value) for k, (ptr, value) in before.items())
    assert module.training and all(m.training for m in module.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())
    assert not nn.modules.module._global_forward_hooks and not nn.modules.module._global_forward_pre_hooks
    assert functions == (torch.cat, torch.relu, nn.functional.relu, nn.Module.__call__, nn.Conv2d.forward)


def test_analyze_takes_a_module_and_a_600m_parameter_one_imports_without_its_weights() -> None:
    with torch.device("meta"):
        big = nn.Sequential(*[nn.Conv2d(4096, 4096, 3, padding=1) for _ in range(4)], nn.ReLU())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    total = archcalc.analyze(big, input=(4096, 8, 8)).total
    assert total.params == 4 * (4096 * 4096 * 9 + 4096) == 603_996_160
    assert total.macs == 4 * 4096 * 4096 * 9 * 64
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mb < 200  # its weights would be 2.4 GB
    with pytest.raises(SpecError, match="give input"):
        archcalc.analyze(big)


def test_what_fx_cannot_trace_or_archcalc_cannot_hold_is_refused_in_one_line() -> None:
    with pytest.raises(SpecError, match=r"^import: torch.fx cannot trace DataDependent: TraceError: "):
        convert(nets.DataDependent(), (3, 8, 8))
    with pytest.raises(SpecError, match=r"^import: TwoOutputs.forward returns tuple, not one tensor"):
        convert(nets.TwoOutputs(), (3, 8, 8))


def test_bad_module_refs_are_one_line_errors(tmp_path: Path) -> None:
    for ref, message in [("nothing", "is not MODULE:CALLABLE"), (f"{NETS}:missing", "has no callable 'missing'"),
                         ("no_such_module_xyz:build", "cannot be imported: ModuleNotFoundError"),
                         (f"{tmp_path}/absent.py:build", "no such file")]:
        result = runner.invoke(app, ["import", ref, "-i", "3x32x32"])
        assert result.exit_code == 2 and message in result.output, result.output
    result = runner.invoke(app, ["import", f"{NETS}:gated", "-i", "3x32x32", "--kwargs", "[1]"])
    assert result.exit_code == 2 and "not a JSON object" in result.output
    result = runner.invoke(app, ["import", f"{NETS}:gated", "-i", "3x32x32", "--kwargs", '{"num_classes": 7}'])
    assert result.exit_code == 0 and "- {linear: {out_features: 7}, name: head_2}" in result.stdout


try:
    from archcalc.torchvision_check import check_import, import_torchvision

    import_torchvision()
    HAVE_TORCHVISION = True
except ImportError:  # pragma: no cover - the test extra installs torchvision
    HAVE_TORCHVISION = False

# one member per family, by torchvision builder or built-in, at a small input the architecture accepts:
# the totals equal torchvision's published params (and a built-in's params and MACs, where one names the
# builder), the spec built in torch computes torchvision's output. Inception-v3 without its training-only
# AuxLogits, which needs a 299 input (imported with it below)
ROUND_TRIPS = [
    ("alexnet-torchvision", (3, 96, 96)), ("vgg11-bn", (3, 32, 32)), ("googlenet-torchvision", (3, 64, 64)),
    ("resnet18", (3, 64, 64)), ("mobilenet-v3-small", (3, 64, 64)), ("efficientnet-b0", (3, 64, 64)),
    ("shufflenet-v2-x0-5", (3, 64, 64)),
    ("densenet121", (3, 32, 32)), ("squeezenet1_1", (3, 32, 32)), ("inception_v3", (3, 75, 75)),
    ("mnasnet0_5", (3, 32, 32)), ("mobilenet_v2", (3, 32, 32)), ("regnet_x_400mf", (3, 32, 32)),
    ("regnet_y_400mf", (3, 32, 32)), ("resnext50_32x4d", (3, 32, 32)), ("efficientnet_v2_s", (3, 32, 32)),
]
ROUND_TRIP_KWARGS = {"inception_v3": {"aux_logits": False}}


@pytest.mark.skipif(not HAVE_TORCHVISION, reason="torchvision is not installed")
@pytest.mark.parametrize("name, shape", ROUND_TRIPS, ids=[c[0] for c in ROUND_TRIPS])
def test_torchvision_model_imports_with_its_published_params_and_as_the_same_function(name: str, shape) -> None:
    checked = check_import(name, shape, ROUND_TRIP_KWARGS.get(name))
    assert checked.ok, checked.problems


@pytest.mark.skipif(not HAVE_TORCHVISION, reason="torchvision is not installed")
def test_densenet_layers_are_one_block_that_concatenates_its_input_and_its_output() -> None:
    models = import_torchvision()
    text = convert(build_on_meta(models.densenet121, {}), (3, 64, 64)).text
    assert "  # torchvision.models.densenet._DenseLayer, at features.denseblock1.denselayer1, " in text
    assert "  dense_layer:\n    layers:\n      - name: concat\n        concat:\n          - - {identity: {}}\n" in text
    for times, block in [(6, 1), (12, 2), (24, 3), (16, 4)]:
        assert f"- {{repeat: {{times: {times}, layers: [{{dense_layer: {{}}}}]}}, name: denseblock{block}}}" in text


@pytest.mark.skipif(not HAVE_TORCHVISION, reason="torchvision is not installed")
def test_a_module_called_only_in_training_is_an_auxiliary_and_one_never_called_is_an_error() -> None:
    models = import_torchvision()
    inception = build_on_meta(models.inception_v3, {"init_weights": False}).train()
    imported = convert(inception, (3, 299, 299))
    assert inception.training and inception.AuxLogits.training  # traced in eval mode, its modes put back
    assert "  - name: AuxLogits\n    auxiliary:\n      - {avgpool2d: {kernel_size: 5, stride: 3}" in imported.text
    total = archcalc.analyze(imported.model).total
    assert total.params == 27_161_264  # Inception_V3_Weights.IMAGENET1K_V1.meta["num_params"], with AuxLogits
    assert round(total.macs / 1e9, 3) == 5.713  # its meta["_ops"]: the auxiliary head costs nothing
    unused = nets.gated()
    unused.spare = nn.Linear(16, 4)
    with pytest.raises(SpecError, match=r"spare \(Linear\): nn.Linear is called neither at inference nor in "
                                        r"training: its 68 parameters would not be counted"):
        convert(unused, (3, 32, 32))


@pytest.mark.skipif(not HAVE_TORCHVISION, reason="torchvision is not installed")
@pytest.mark.parametrize("builder, side, params", [("vit_b_32", 224, 88_224_232), ("swin_t", 64, 28_288_354)])
def test_the_submodules_of_a_layer_archcalc_maps_whole_are_called_with_it(builder: str, side: int, params: int) -> None:
    """nn.MultiheadAttention's out_proj, Swin attention's qkv and proj: not idle modules (weights.meta's num_params)."""
    module = build_on_meta(getattr(import_torchvision(), builder), {})
    assert archcalc.analyze(convert(module, (3, side, side)).model).total.params == params


@pytest.mark.skipif(not HAVE_TORCHVISION, reason="torchvision is not installed")
def test_regnet_which_reads_its_widths_back_from_torch_imports_without_allocating_its_weights() -> None:
    result = runner.invoke(app, ["import", "torchvision.models:regnet_y_400mf", "-i", "3x64x64"])
    assert result.exit_code == 0, result.output
    assert "params 4,344,144" in result.stderr  # RegNet_Y_400MF_Weights.IMAGENET1K_V2.meta["num_params"]
    assert "gate:" in result.stdout  # its squeeze-and-excitation


# torchvision's MaxVit at another input, stem, widths, depths, partition, head and MLP sizes than maxvit_t's
SMALL_MAXVIT = dict(input_size=(64, 64), stem_channels=16, partition_size=4, block_channels=[16, 32],
                    block_layers=[1, 3], head_dim=8, stochastic_depth_prob=0.2, mlp_ratio=2, num_classes=10)


@pytest.mark.skipif(not HAVE_TORCHVISION, reason="torchvision is not installed")
def test_a_maxvit_of_other_sizes_imports_counting_what_torch_counts_and_computing_the_same(one_torch_thread) -> None:
    torch.manual_seed(0)
    module = import_torchvision().MaxVit(**SMALL_MAXVIT)
    with torch.no_grad():
        for parameter in module.parameters():  # torchvision zeroes the linears' biases
            parameter.add_(torch.randn_like(parameter), alpha=0.02)
    imported = convert(module, (3, 64, 64))
    for kind in ("window", "grid"):
        assert f"{{partitionattention: {{partition_size: 4, head_dim: 8, partition_type: {kind}}}" in imported.text
    assert "- {linear: {out_features: 64}, name: mlp_layer_1}" in imported.text  # mlp_ratio 2 on 32 channels
    total = archcalc.analyze(imported.model).total
    assert total.params == sum(p.numel() for p in module.parameters())
    assert total.macs == flop_counter_macs(module, (3, 64, 64))  # with attention's two einsums
    same_function(module, imported.model, (3, 64, 64))


@pytest.mark.skipif(not HAVE_TORCHVISION, reason="torchvision is not installed")
def test_maxvit_t_imports_as_the_built_in_counts_it_with_its_layers_as_blocks_taking_their_stochastic_depth() -> None:
    """maxvit_t is built for 224 (its attention's grid): its function is proved by
    `python tests/check_import_torchvision.py maxvit_t`, a smaller MaxVit's above."""
    imported = convert(build_on_meta(import_torchvision().maxvit_t, {}), (3, 224, 224))
    total, builtin = archcalc.analyze(imported.model).total, archcalc.analyze("maxvit-t").total
    # MaxVit_T_Weights.IMAGENET1K_V1.meta: num_params 30,919,624, _ops 5.558 (GMACs)
    assert (total.params, total.macs) == (builtin.params, builtin.macs) == (30_919_624, 5_558_046_720)
    text = imported.text
    # torchvision ramps it over the 11 layers, 0.2 x i / 10: layer i of each block is that one block
    assert "  # torchvision.models.maxvit.MaxVitLayer, at blocks.2.layers.1, blocks.2.layers.2, blocks.2.layers.3, " \
           "blocks.2.layers.4\n  max_vit_layer:\n    params: [sd]  # stochastic depth probabilities\n" in text
    assert "          - {partition_attention_layer_5: {sd: $sd}, name: window_attention}\n" in text
    for index, sd in [(1, 0.1), (2, 0.12), (3, 0.14), (4, 0.16)]:
        assert f"      - {{max_vit_layer: {{sd: {sd}}}, name: layers_{index}}}\n" in text
    assert text.count("partitionattention:") == 8  # a window and a grid block for each width, not 22 copies
    assert len(text.splitlines()) < 500


@pytest.mark.skipif(not HAVE_TORCHVISION, reason="torchvision is not installed")
def test_a_maxvit_with_an_activation_archcalc_lacks_names_each_distinct_place_once() -> None:
    module = build_on_meta(import_torchvision().MaxVit, {**SMALL_MAXVIT, "activation_layer": nn.Mish})
    with pytest.raises(SpecError) as refused:
        convert(module, (3, 64, 64))
    # traced in the convolutions; in the attention layers, which are mapped as a whole, the layer that holds it
    assert str(refused.value) == (
        "import: stem.0.2 (Mish) (+8 more): nn.Mish has no archcalc op; blocks.0.layers.0.layers.window_attention "
        "(PartitionAttentionLayer) (+7 more): nn.Mish has no archcalc op (--allow-unknown keeps them as zero-cost "
        "placeholders)")


@pytest.mark.skipif(not HAVE_TORCHVISION, reason="torchvision is not installed")
def test_a_maxvit_imported_at_another_input_than_it_is_built_for_is_refused_saying_so() -> None:
    module = build_on_meta(import_torchvision().MaxVit, SMALL_MAXVIT)
    with pytest.raises(SpecError, match=r"^import: blocks.0.layers.0.layers.window_attention \(PartitionAttentionLayer\)"
                                        r": .* it is built for a 16x16 map and this input gives 32x32 \(MaxVit's "
                                        r"input_size sets it"):
        convert(module, (3, 128, 128))


@pytest.mark.skipif(not HAVE_TORCHVISION, reason="torchvision is not installed")
def test_calls_differing_only_in_stochastic_depth_are_one_block_taking_it_and_equal_ones_repeat() -> None:
    import_torchvision()
    from torchvision.ops import StochasticDepth

    class Ramped(nn.Module):
        def __init__(self, p: float) -> None:
            super().__init__()
            self.conv, self.drop = nn.Conv2d(8, 8, 3, padding=1), StochasticDepth(p, "row")

        def forward(self, x):
            return x + self.drop(self.conv(x))

    module = nn.Sequential(nn.Conv2d(3, 8, 1), *[Ramped(p) for p in (0.1, 0.1, 0.2, 0.0)])
    imported = convert(module, (3, 16, 16))
    text = imported.text
    assert "  ramped:\n    params: [sd]  # stochastic depth probabilities\n" in text
    assert "- {stochasticdepth: {p: $sd}, name: drop}" in text
    assert "- {repeat: {times: 2, layers: [{ramped: {sd: 0.1}}]}, name: layer_1-layer_2}" in text
    assert "- {ramped: {sd: 0.2}, name: layer_3}\n  - {ramped: {sd: 0.0}, name: layer_4}\n" in text
    assert archcalc.analyze(imported.model).total.params == sum(p.numel() for p in module.parameters())
    same_function(module, imported.model, (3, 16, 16))
