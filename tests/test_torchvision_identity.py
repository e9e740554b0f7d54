"""Built-ins that claim to be torchvision's models are the same function: torchvision's weights
loaded into `build_module(name)` give torchvision's output, and every conv, linear and norm layer
gives torchvision's shape (archcalc.torchvision_check states the weight mapping).

Inputs are reduced where the architecture allows it, to keep the suite fast on two cores; the
zoo's full proof at every default size is `archcalc crosscheck --torchvision` (reports/)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
try:
    from archcalc.torchvision_check import check_identity, import_torchvision

    import_torchvision()
except ImportError:  # pragma: no cover - the test extra installs torchvision
    pytest.skip("torchvision is not installed", allow_module_level=True)

# (built-in, input) : one member per family, at a small input the architecture accepts
CASES = [
    ("alexnet-torchvision", (3, 96, 96)),  # its adaptive pool takes any size above 63
    ("vgg11-bn", (3, 64, 64)),
    ("googlenet-torchvision", (3, 96, 96)),
    ("resnet18", (3, 64, 64)),
    ("resnet50", (3, 64, 64)),
    ("resnext50-32x4d", (3, 64, 64)),  # grouped 3x3s (Wide ResNet: the same blocks, 1 group)
    ("squeezenet1-0", (3, 64, 64)),  # ceil-mode pools: 64 -> 29 -> 14 -> 7 -> 3
    ("squeezenet1-1", (3, 64, 64)),
    ("mobilenet-v2", (3, 96, 96)),
    ("efficientnet-b3", (3, 128, 128)),  # depth 1.4: stages of ceil(n x 1.4) blocks, widths x 1.2
    ("efficientnet-v2-s", (3, 128, 128)),  # FusedMBConv stages, batch norm eps 0.001
    ("regnet-y-400mf", (3, 64, 64)),  # five stride-2 stages: 2x2 at the end; projection shortcuts registered first
    ("regnet-x-400mf", (3, 64, 64)),  # a stage of one block (its repeat runs 0 times)
    ("mnasnet0-75", (3, 64, 64)),
    ("densenet121", (3, 64, 64)),  # three transitions halve 16 to 2
]


@pytest.mark.parametrize("name, shape", CASES, ids=[c[0] for c in CASES])
def test_builtin_is_torchvisions_function(name: str, shape: tuple[int, ...]) -> None:
    result = check_identity(name, shape)
    assert result.shape_mismatch is None, result.shape_mismatch
    assert result.layers > 0
    assert result.ok, f"max |difference| {result.max_abs_difference:.3g} on outputs up to {result.output_scale:.3g}"


# The spec language's six proofs (issue: gates, splits, tokens, attention): at torchvision's own
# input and at another valid size (ViT's builder is told the size: its position embedding follows it)
MODERN = [
    ("mobilenet-v3-large", None, {}), ("mobilenet-v3-large", (3, 160, 160), {}),
    ("efficientnet-b0", None, {}), ("efficientnet-b0", (3, 160, 160), {}),
    ("shufflenet-v2-x1-0", None, {}), ("shufflenet-v2-x1-0", (3, 160, 160), {}),
    ("convnext-tiny", None, {}), ("convnext-tiny", (3, 160, 160), {}),
    ("vit-b-16", None, {}), ("vit-b-16", (3, 160, 160), {"image_size": 160}),
    ("swin-t", None, {}), ("swin-t", (3, 200, 168), {}),  # 200 x 168: every stage's windows padded
    ("swin-v2-t", (3, 64, 64), {}),  # post-norm: norm1 registered before attn, run after (SPEC_ORDER)
    # MaxViT's 7 x 7 partitions must tile every stage: 221 to 224 give 56, 28, 14 and 7 (221 is the
    # smallest valid input); torchvision's grid partitions assume the square input it is built for
    ("maxvit-t", (3, 221, 221), {"input_size": (221, 221)}),  # at 224: reports/torchvision-identity.md
]


@pytest.mark.parametrize("name, shape, kwargs", MODERN, ids=[f"{c[0]}-{c[1][1] if c[1] else 'default'}" for c in MODERN])
def test_modern_builtin_is_torchvisions_function_at_two_sizes(name: str, shape, kwargs) -> None:
    result = check_identity(name, shape, torchvision_kwargs=kwargs)
    assert result.shape_mismatch is None, result.shape_mismatch
    assert result.ok, f"max |difference| {result.max_abs_difference:.3g} on outputs up to {result.output_scale:.3g}"


@pytest.mark.parametrize("width_mult", [0.35, 1.4])
def test_mobilenet_v2_width_multiplier_is_torchvisions(width_mult: float) -> None:
    """The spec's make_divisible widths follow torchvision's MobileNetV2(width_mult=...) off the default 1.0."""
    import archcalc

    spec = archcalc.load("mobilenet-v2", {"width_mult": width_mult})
    result = check_identity("mobilenet-v2", (3, 96, 96), torchvision_kwargs={"width_mult": width_mult}, spec=spec)
    assert result.shape_mismatch is None, result.shape_mismatch
    assert result.ok, f"max |difference| {result.max_abs_difference:.3g} on outputs up to {result.output_scale:.3g}"


def test_inception_v3_is_torchvisions_function_at_its_smallest_input() -> None:
    """At 75x75 (torchvision's min_size) Mixed_6e is 3x3, too small for the auxiliary head's 5x5 conv
    (it runs only in training), so both sides leave it out: `aux: []` and aux_logits=False. With it,
    at 299x299, the weights (AuxLogits' among them) map one to one: `check_identity("inception-v3")`."""
    import archcalc

    spec = archcalc.load("inception-v3", {"aux": []})
    result = check_identity("inception-v3", (3, 75, 75), torchvision_kwargs={"aux_logits": False}, spec=spec)
    assert result.shape_mismatch is None, result.shape_mismatch
    assert result.layers == 94 * 2 + 1  # BasicConv2d's conv and bn, and fc
    assert result.ok, f"max |difference| {result.max_abs_difference:.3g} on outputs up to {result.output_scale:.3g}"


def test_weight_mapping_uses_every_tensor_once() -> None:
    from archcalc.torchbuild import build_module
    from archcalc.torchvision_check import transfer_weights

    models = import_torchvision()
    mapping = transfer_weights(models.resnet18(), build_module("resnet18", init=False))
    assert len(mapping) == len(set(mapping.values())) == 62 + 40  # 62 parameters, 20 batch norms x 2 running stats
    assert mapping["stem.conv1.conv.weight"] == "conv1.weight"


def test_maxvit_shortcut_weights_are_taken_after_the_body(monkeypatch) -> None:
    # MBConv registers `proj` (avgpool, 1x1 conv with bias) before `layers`; the spec's residual its body
    # first, and a 64-vector is a batch norm's weight or the projection's bias alike
    from archcalc import torchvision_check
    from archcalc.torchbuild import build_module
    from archcalc.torchvision_check import transfer_weights

    models = import_torchvision()
    reference, ours = models.maxvit_t(), build_module("maxvit-t", init=False)
    tv, here = "blocks.0.layers.0.layers.MBconv.", "blocks.0.0.0.MBconv."
    with monkeypatch.context() as patched:
        patched.setattr(torchvision_check, "SPEC_ORDER", {})
        naive = transfer_weights(reference, ours)
    assert naive[here + "body.pre_norm.weight"] == tv + "proj.1.bias"  # shape order alone goes wrong
    mapping = transfer_weights(reference, ours)
    assert mapping[here + "body.pre_norm.weight"] == tv + "layers.pre_norm.weight"
    assert mapping[here + "shortcut.1.bias"] == tv + "proj.1.bias"
    assert all(key.rpartition(".")[2] == source.rpartition(".")[2] for key, source in mapping.items())
