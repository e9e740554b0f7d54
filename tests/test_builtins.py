"""Every built-in loads and analyses; totals agree with the figures their sources publish."""

from __future__ import annotations

import math

import pytest

import archcalc

MODELS = archcalc.list_models()


def test_registry_lists_every_family():
    expected = {
        "lenet", "alexnet", "alexnet-paper", "alexnet-torchvision", "googlenet", "googlenet-torchvision",
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50-paper", "resnet20", "resnet56",
        "inception-naive", "inception-bottleneck", "conv7x7", "stacked-3x3", "conv5x5", "stacked-3x3-2",
        *(f"vgg{n}{bn}" for n in (11, 13, 16, 19) for bn in ("", "-bn")),
        "mobilenet-v3-large", "mobilenet-v3-small", *(f"efficientnet-b{n}" for n in range(8)),
        "efficientnet-v2-s", "efficientnet-v2-m", "efficientnet-v2-l",
        *(f"shufflenet-v2-x{w}" for w in ("0-5", "1-0", "1-5", "2-0")),
        "vit-b-16", "vit-b-32", "vit-l-16", "vit-l-32", "vit-h-14", "swin-t", "swin-s", "swin-b",
        "swin-v2-t", "swin-v2-s", "swin-v2-b", "convnext-tiny", "convnext-small", "convnext-base", "convnext-large",
        "maxvit-t",
        "resnext50-32x4d", "resnext101-32x8d", "resnext101-64x4d", "wide-resnet50-2", "wide-resnet101-2",
        "squeezenet1-0", "squeezenet1-1", "mobilenet-v2", "inception-v3",
        "densenet121", "densenet161", "densenet169", "densenet201",
        "nin", "vgg11-d2l", "googlenet-d2l", "lenet-bn", "resnet18-d2l", "densenet-d2l",
    }
    assert expected <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_every_builtin_analyses_and_cites_a_source(name):
    model = archcalc.load(name)
    result = archcalc.analyze(model)
    assert result.total.params > 0 and result.total.macs > 0
    assert model.description
    assert len(model.source) > 20, "every built-in cites where its numbers come from"
    d = result.to_dict()
    assert set(d) >= {"model", "input_shape", "layers", "total"}
    assert set(d["layers"][0]) >= {"name", "op", "output_shape", "params", "macs", "flops", "activations", "receptive_field"}
    assert set(d["total"]) >= {"params", "trainable_params", "macs", "flops", "activations"}
    names = [row["name"] for row in d["layers"]]
    assert len(names) == len(set(names)), "row names are unique module paths"


# Parameter counts and MACs ("GFLOPS", multiply-adds without bias) that torchvision
# publishes in its model docs (torchvision.models, "Table of all available classification
# weights": num_params and GFLOPS at 224x224).
TORCHVISION = {
    "alexnet-torchvision": (61_100_840, 0.71),
    "vgg11": (132_863_336, 7.61),
    "vgg13": (133_047_848, 11.31),
    "vgg16": (138_357_544, 15.47),
    "vgg19": (143_667_240, 19.63),
    "vgg11-bn": (132_868_840, 7.61),
    "vgg13-bn": (133_053_736, 11.31),
    "vgg16-bn": (138_365_992, 15.47),
    "vgg19-bn": (143_678_248, 19.63),
    "googlenet-torchvision": (6_624_904, 1.50),
    "resnet18": (11_689_512, 1.81),
    "resnet34": (21_797_672, 3.66),
    "resnet50": (25_557_032, 4.09),
    "resnet101": (44_549_160, 7.80),
    "resnet152": (60_192_808, 11.51),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_published_totals(name):
    params, gmacs = TORCHVISION[name]
    total = archcalc.analyze(name).total
    assert total.params == params
    assert round(total.macs / 1e9, 2) == gmacs  # published to two decimals


# The same table for the mobile networks, whose GFLOPS torchvision publishes to three decimals: the
# weights' meta in torchvision/models/mobilenetv3.py, efficientnet.py, shufflenetv2.py
# ("num_params", "_ops"); ShuffleNet V2 0.5x is given as 0.04.
TORCHVISION_MOBILE = {
    "mobilenet-v3-large": (5_483_032, 0.217),
    "mobilenet-v3-small": (2_542_856, 0.057),
    "efficientnet-b0": (5_288_548, 0.386),
    "shufflenet-v2-x0-5": (1_366_792, 0.040),
    "shufflenet-v2-x1-0": (2_278_604, 0.145),
    "shufflenet-v2-x1-5": (3_503_624, 0.296),
    "shufflenet-v2-x2-0": (7_393_996, 0.583),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_MOBILE))
def test_torchvision_published_totals_of_mobile_networks(name):
    params, gmacs = TORCHVISION_MOBILE[name]
    total = archcalc.analyze(name).total
    assert total.params == params
    assert round(total.macs / 1e9, 3) == gmacs


def test_mobilenet_v3_large_blocks():
    # Table 1 of Howard et al.: 112x112x16 after the stem, 7x7x960 before the pool; the first
    # squeeze-and-excitation (block 4: 72 channels at 28x28) squeezes to make_divisible(72 // 4, 8) = 24.
    result = archcalc.analyze("mobilenet-v3-large")
    rows = {row.name: row for row in result.rows}
    assert rows["features.0.2"].output_shape == (1, 16, 112, 112)
    assert rows["features.16.2"].output_shape == (1, 960, 7, 7)
    assert rows["features.4.block.2.se.fc1"].output_shape == (1, 24, 1, 1)
    se = rows["features.4.block.2.se"]
    assert (se.op, se.output_shape) == ("mul", (1, 72, 28, 28))
    assert sum(row.op == "mul" for row in result.rows) == 8  # blocks with squeeze-and-excitation
    assert sum(row.op == "add" for row in result.rows) == 10  # stride 1, same width in and out


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision.models._utils._make_divisible, as published (min_value = divisor)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


# torchvision's _efficientnet_conf for B0: (output width, layers) per stage, after a 32-wide stem
B0_STAGES = [(16, 1), (24, 2), (40, 2), (80, 3), (112, 3), (192, 4), (320, 1)]


@pytest.mark.parametrize("name, width, depth", [("efficientnet-b0", 1.0, 1.0), ("efficientnet-b3", 1.2, 1.4),
                                                ("efficientnet-b7", 2.0, 3.1)])
def test_efficientnet_scales_b0_stage_table(name, width, depth):
    # each stage: make_divisible(width x c, 8) wide, ceil(depth x n) blocks at features.N.0, .1, ...
    rows = archcalc.analyze(name, input=(3, 64, 64)).rows
    assert rows[0].output_shape[1] == _make_divisible(32 * width)
    for stage, (out, layers) in enumerate(B0_STAGES, start=1):
        inside = [r for r in rows if r.path[:2] == ("features", str(stage))]
        assert {r.path[2] for r in inside} == {str(i) for i in range(math.ceil(layers * depth))}, stage
        assert inside[-1].output_shape[1] == _make_divisible(out * width), stage
    assert rows[-5].output_shape[1] == 4 * _make_divisible(320 * width)  # the last conv's silu, before the pool


def test_efficientnet_v2_fused_stages_have_no_squeeze_excitation():
    # EfficientNetV2-S (Table 4): stages 1-3 FusedMBConv, 4-6 MBConv with squeeze-and-excitation
    rows = archcalc.analyze("efficientnet-v2-s", input=(3, 64, 64)).rows
    gated = {r.path[1] for r in rows if r.path[0] == "features" and "se" in r.path}
    assert gated == {"4", "5", "6"}
    assert sum(r.path[-1] == "stochastic_depth" for r in rows) == 40 - 5  # every block but each stage's first past stage 1


def test_d2l_lenet():
    # Dive into Deep Learning 7.6: 61,706 parameters; MACs by hand:
    # 6*25*28*28 + 16*6*25*10*10 + 400*120 + 120*84 + 84*10
    total = archcalc.analyze("lenet").total
    assert total.params == 61_706
    assert total.macs == 6 * 25 * 28 * 28 + 16 * 6 * 25 * 10 * 10 + 400 * 120 + 120 * 84 + 84 * 10


def test_d2l_alexnet_shape_chain():
    # The seeds (001) print these shapes for a 1x224x224 input: 54 -> 26 -> 12 -> 5, flatten 6400.
    rows = {row.name: row for row in archcalc.analyze("alexnet").rows}
    assert rows["conv1"].output_shape == (1, 96, 54, 54)
    assert rows["pool1"].output_shape == (1, 96, 26, 26)
    assert rows["conv2"].output_shape == (1, 256, 26, 26)
    assert rows["pool2"].output_shape == (1, 256, 12, 12)
    assert rows["conv5"].output_shape == (1, 256, 12, 12)
    assert rows["pool5"].output_shape == (1, 256, 5, 5)
    assert rows["flatten"].output_shape == (1, 6400)
    assert rows["classifier.fc8"].output_shape == (1, 10)


def test_input_override():
    rows = {r.name: r for r in archcalc.analyze("alexnet", input=(1, 227, 227)).rows}
    assert rows["conv1"].output_shape == (1, 96, 55, 55)
    big = archcalc.analyze("alexnet-torchvision", input=(3, 512, 512)).total
    assert big.params == 61_100_840  # the adaptive pool keeps the classifier's input at 6x6
    rows = {r.name: r for r in archcalc.analyze("alexnet", input=(1, 512, 512)).rows}
    # (512 + 2 - 11) // 4 + 1 = 126 -> 62 -> 30 -> 14: the first linear grows to 256*14*14 inputs
    assert rows["flatten"].output_shape == (1, 256 * 14 * 14)
    assert rows["classifier.fc6"].params == 256 * 14 * 14 * 4096 + 4096


def test_alexnet_paper():
    # Krizhevsky et al. 2012: "60 million parameters"; conv1 55x55x96, pooling to 27, 13, 6.
    result = archcalc.analyze("alexnet-paper")
    assert round(result.total.params / 1e6) == 61  # 60,965,224 with the two-GPU split
    rows = {r.name: r for r in result.rows}
    assert rows["conv1"].output_shape == (1, 96, 55, 55)
    assert rows["conv1"].params == 11 * 11 * 3 * 96 + 96  # CS231n: (11*11*3)*96 = 35K weights
    assert [rows[p].output_shape[-1] for p in ("pool1", "pool2", "pool5")] == [27, 13, 6]
    assert rows["conv2"].params == 256 * 48 * 25 + 256  # each GPU's kernels see 48 channels


def test_googlenet_paper_table1():
    # Szegedy et al. 2015, Table 1 "ops" column (millions of multiply-adds, rounded or
    # truncated: 4a computes 73.6M, listed 73M). Inception 5a is listed as 54M, but its
    # convolutions compute 51.08M: the table is off there.
    table = {"inception3a": 128, "inception3b": 304, "inception4a": 73, "inception4b": 88, "inception4c": 100,
             "inception4d": 119, "inception4e": 170, "inception5b": 71}
    result = archcalc.analyze("googlenet")
    for group in result.groups:
        if group.path[0] in table and len(group.path) == 1:
            macs = sum(r.macs for r in result.rows[group.start:group.stop])
            assert abs(macs / 1e6 - table[group.path[0]]) < 1, group.path
    inception5a = next(g for g in result.groups if g.path == ("inception5a",))
    assert sum(r.macs for r in result.rows[inception5a.start:inception5a.stop]) == 49 * (
        256 * 832 + 160 * 832 + 320 * 160 * 9 + 32 * 832 + 128 * 32 * 25 + 128 * 832
    )  # 7x7 positions x the six convolutions of Table 1's row, on 832 channels
    assert result.total.depth == 22  # "22 layers deep when counting only layers with parameters"
    assert round(result.total.macs / 1e9, 1) == 1.6  # the paper's "1.5 billion multiply-adds" is a floor


def test_resnet_paper_figures():
    # He et al. 2015, Table 1: ResNet-50 3.8 x 10^9 FLOPs (multiply-adds), 152 layers;
    # Table 6: ResNet-20 0.27M and ResNet-56 0.85M parameters on CIFAR-10.
    assert round(archcalc.analyze("resnet50-paper").total.macs / 1e9, 1) == 3.9  # 3.86: the table truncates
    assert archcalc.analyze("resnet152").total.depth == 152
    assert round(archcalc.analyze("resnet20").total.params / 1e6, 2) == 0.27
    assert round(archcalc.analyze("resnet56").total.params / 1e6, 2) == 0.85


def test_lessons():
    # CS231n: the naive module costs 854M ops; weights of 3x3 stacks vs one big kernel.
    assert archcalc.analyze("inception-naive").total.macs == 854_196_224
    assert archcalc.analyze("inception-bottleneck").rows[-1].output_shape == (1, 480, 28, 28)
    for c in (64, 256):
        p = {"C": c}
        assert archcalc.analyze("conv7x7", params=p).total.params == 49 * c * c
        assert archcalc.analyze("stacked-3x3", params=p).total.params == 27 * c * c
        assert archcalc.analyze("conv5x5", params=p).total.params == 25 * c * c
        assert archcalc.analyze("stacked-3x3-2", params=p).total.params == 18 * c * c
    assert archcalc.analyze("stacked-3x3").total.receptive_field == (7, 7)
    assert archcalc.analyze("stacked-3x3-2").total.receptive_field == (5, 5)


def test_analysis_never_imports_torch():
    import subprocess
    import sys

    code = "import archcalc, sys; [archcalc.analyze(m) for m in archcalc.list_models()]; " \
           "print(sorted(m for m in ('torch', 'fvcore', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_groups_come_in_walk_order() -> None:
    # by first row, a composite before the composites it holds: what `fold` and the tables read
    for name in archcalc.list_models():
        groups = archcalc.analyze(name).groups
        assert list(groups) == sorted(groups, key=lambda g: (g.start, len(g.path))), name


# torchvision 0.28's model code publishes `num_params` and `_ops` (GFLOPS: multiply-adds,
# attention's matmuls included) to three decimals in each weights' meta, at `min_size`
# (torchvision/models/{vision_transformer,swin_transformer,convnext}.py). Swin-V2-T's is
# written 5.94 there (5.940). The position embedding follows the input, so ViT's SWAG
# weights at 384 / 512 / 518 are the same specs at those sizes.
TORCHVISION_3 = {
    ("vit-b-16", 224): (86_567_656, 17.564),
    ("vit-b-16", 384): (86_859_496, 55.484),
    ("vit-b-32", 224): (88_224_232, 4.409),
    ("vit-l-16", 224): (304_326_632, 61.555),
    ("vit-l-16", 512): (305_174_504, 361.986),
    ("vit-l-32", 224): (306_535_400, 15.378),
    ("vit-h-14", 224): (632_045_800, 167.295),
    ("vit-h-14", 518): (633_470_440, 1016.717),
    ("swin-t", 224): (28_288_354, 4.491),
    ("swin-s", 224): (49_606_258, 8.741),
    ("swin-b", 224): (87_768_224, 15.431),
    ("swin-v2-t", 256): (28_351_570, 5.940),
    ("swin-v2-s", 256): (49_737_442, 11.546),
    ("swin-v2-b", 256): (87_930_848, 20.325),
    ("convnext-tiny", 224): (28_589_128, 4.456),
    ("convnext-small", 224): (50_223_688, 8.684),
    ("convnext-base", 224): (88_591_464, 15.355),
    ("convnext-large", 224): (197_767_336, 34.361),
}


@pytest.mark.parametrize("name, size", sorted(TORCHVISION_3))
def test_torchvision_published_totals_to_three_decimals(name, size):
    params, gmacs = TORCHVISION_3[name, size]
    total = archcalc.analyze(name, input=(3, size, size)).total
    assert total.params == params
    assert round(total.macs / 1e9, 3) == gmacs


def test_attention_matmuls_make_vit_and_swin_published_gflops():
    # torchvision's 17.564 for ViT-B/16 counts Q K^T and A V (12 x 2 x 197^2 x 768); without them 16.849
    rows = archcalc.analyze("vit-b-16").rows
    attention = [row for row in rows if row.op == "multiheadattention"]
    matmuls = 12 * 2 * 197 * 197 * 768
    assert sum(row.macs for row in attention) == 12 * 4 * 197 * 768 * 768 + matmuls
    assert round((sum(row.macs for row in rows) - matmuls) / 1e9, 3) == 16.849
    # Swin-T's 4.491: Q K^T and A V in 7 x 7 windows, none padded at 224 (4.350 without them)
    swin = archcalc.analyze("swin-t").total
    window_matmuls = 2 * 49 * (2 * 56 * 56 * 96 + 2 * 28 * 28 * 192 + 6 * 14 * 14 * 384 + 2 * 7 * 7 * 768)
    assert round((swin.macs - window_matmuls) / 1e9, 3) == 4.350
    # MaxViT-T's 5.558: Q K^T and A V within every 7 x 7 window and grid partition (5.381 without them)
    maxvit = archcalc.analyze("maxvit-t").total
    partition_matmuls = 2 * 2 * 49 * (2 * 56 * 56 * 64 + 2 * 28 * 28 * 128 + 5 * 14 * 14 * 256 + 2 * 7 * 7 * 512)
    assert round(maxvit.macs / 1e9, 3) == 5.558
    assert round((maxvit.macs - partition_matmuls) / 1e9, 3) == 5.381


def test_a_warm_load_reads_no_file(monkeypatch):
    # the regression that made every load re-read the built-in files (5 ms a call): found once, kept
    from pathlib import Path

    from archcalc.bench import clear_parse_cache

    clear_parse_cache()  # as a process that never lists the built-ins: no full index
    archcalc.load("resnet18")
    reads = []
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *args, **kwargs: reads.append(self) or real(self, *args, **kwargs))
    archcalc.load("resnet18")
    archcalc.analyze("resnet18")
    assert reads == []
