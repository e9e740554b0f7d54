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
]


@pytest.mark.parametrize("name, shape, kwargs", MODERN, ids=[f"{c[0]}-{c[1][1] if c[1] else 'default'}" for c in MODERN])
def test_modern_builtin_is_torchvisions_function_at_two_sizes(name: str, shape, kwargs) -> None:
    result = check_identity(name, shape, torchvision_kwargs=kwargs)
    assert result.shape_mismatch is None, result.shape_mismatch
    assert result.ok, f"max |difference| {result.max_abs_difference:.3g} on outputs up to {result.output_scale:.3g}"


def test_weight_mapping_uses_every_tensor_once() -> None:
    from archcalc.torchbuild import build_module
    from archcalc.torchvision_check import transfer_weights

    models = import_torchvision()
    mapping = transfer_weights(models.resnet18(), build_module("resnet18", init=False))
    assert len(mapping) == len(set(mapping.values())) == 62 + 40  # 62 parameters, 20 batch norms x 2 running stats
    assert mapping["stem.conv1.conv.weight"] == "conv1.weight"
