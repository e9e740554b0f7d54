"""Every built-in that gives `published:` figures equals them: parameters exactly, MACs to the
three decimals of torchvision's GFLOPS, its default input torchvision's evaluation crop; and the
figures carried in the specs are torchvision's own (weights.meta), when torchvision is installed."""

from __future__ import annotations

import pytest

import archcalc

PUBLISHED = [name for name in archcalc.list_models() if archcalc.load(name).published]


@pytest.mark.parametrize("name", PUBLISHED)
def test_builtin_equals_its_published_figures(name: str) -> None:
    model = archcalc.load(name)
    published = model.published
    total = archcalc.analyze(model).total
    if "params" in published:
        assert total.params == published["params"]
    if "gflops" in published:
        assert round(total.macs / 1e9, 3) == published["gflops"], total.macs


@pytest.mark.parametrize("name", [n for n in PUBLISHED if "torchvision" in archcalc.load(n).published])
def test_published_figures_are_torchvisions_own(name: str, torchvision_models) -> None:
    models = torchvision_models
    model = archcalc.load(name)
    published = model.published
    weights = models.get_model_weights(published["torchvision"])[published.get("weights", "DEFAULT")]
    meta = weights.meta
    assert published["params"] == meta["num_params"]
    assert published["gflops"] == meta["_ops"]
    if "top1" in published:
        assert published["top1"] == meta["_metrics"]["ImageNet-1K"]["acc@1"]
    if "top5" in published:
        assert published["top5"] == meta["_metrics"]["ImageNet-1K"]["acc@5"]
    crop = weights.transforms.keywords["crop_size"]
    assert model.input == (3, crop, crop), "the default input is torchvision's evaluation crop"


def test_published_must_be_well_formed(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ninput: [3, 8, 8]\nlayers: [relu]\npublished: {params: 1.5}\n")
    with pytest.raises(archcalc.SpecError, match="published params must be an integer"):
        archcalc.load(str(path))
    path.write_text("name: p\ninput: [3, 8, 8]\nlayers: [relu]\npublished: {parms: 1}\n")
    with pytest.raises(archcalc.SpecError, match="unknown key 'parms' in published"):
        archcalc.load(str(path))
