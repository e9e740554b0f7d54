"""Closed-form checks of the ops on tokens, channels-last maps and attention: shapes from torch's
semantics, counts by hand (ViT-B/16's and Swin-T's layers as the worked cases)."""

from __future__ import annotations

import pytest

import archcalc
from archcalc import Model, SpecError
from archcalc.spec import (
    ClassToken, Conv2d, LayerNorm, Linear, MeanTokens, MultiheadAttention, PartitionAttention, PatchMerge, Permute,
    PositionEmbedding, SelectToken, ShiftedWindowAttention, ShiftedWindowAttentionV2, Tokens,
)

TO_LAST, TO_FIRST = Permute(dims=[0, 2, 3, 1]), Permute(dims=[0, 3, 1, 2])


def rows(layers, shape=(3, 32, 32), batch=1):
    return archcalc.analyze(Model(name="t", input=shape, layers=layers), batch=batch).rows


def vit_tokens(width=768, patch=16, size=224):
    """ViT's patch embedding: (size/patch)^2 tokens of `width`, then the class token."""
    return [Conv2d(out_channels=width, kernel_size=patch, stride=patch), Tokens(), ClassToken()]


def test_permute_to_channels_last_and_back():
    to_last, back = rows([TO_LAST, TO_FIRST], (8, 5, 7))
    assert to_last.output_shape == (1, 5, 7, 8) and back.output_shape == (1, 8, 5, 7)
    assert (to_last.params, to_last.macs, to_last.fvcore_flops) == (0, 0, 0)
    assert rows([Permute(dims=[0, 1, 2, 3])], (8, 5, 7))[0].output_shape == (1, 8, 5, 7)  # the identity
    with pytest.raises(SpecError, match=r"permute \[0, 3, 1, 2\] of 8x5x7 is not supported"):
        rows([TO_FIRST], (8, 5, 7))  # already channels first
    with pytest.raises(SpecError, match="permute"):
        rows([TO_LAST, TO_LAST], (8, 5, 7))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_over_the_last_dim(bias):
    # tokens: every token through the same weights, N x in x out MACs; each position on its own
    *_, on_tokens = rows([*vit_tokens(64, 8, 32), Linear(out_features=10, bias=bias)])
    assert on_tokens.output_shape == (1, 17, 10)
    assert on_tokens.params == 64 * 10 + (10 if bias else 0)
    assert on_tokens.macs == on_tokens.fvcore_flops == 17 * 64 * 10
    assert on_tokens.receptive_field == (8, 8)  # the patch's, not widened
    # a channels-last map: H x W positions
    _, on_map = rows([TO_LAST, Linear(out_features=6, bias=bias)], (4, 5, 7), batch=3)
    assert on_map.output_shape == (3, 5, 7, 6)
    assert on_map.macs == 3 * 5 * 7 * 4 * 6 and on_map.receptive_field == (1, 1)
    with pytest.raises(SpecError, match="linear acts on the last dim, and a C x H x W map's is W"):
        rows([Linear(out_features=6)], (4, 5, 7))


@pytest.mark.parametrize("affine, bias, params, per_element", [(True, True, 16, 5), (True, False, 8, 5), (False, True, 0, 4)])
def test_layernorm_in_every_layout(affine, bias, params, per_element):
    norm = LayerNorm(elementwise_affine=affine, bias=bias)
    first = rows([norm], (8, 5, 7), batch=2)[0]  # ConvNeXt's LayerNorm2d: over the channels of a C x H x W map
    last = rows([TO_LAST, norm], (8, 5, 7), batch=2)[1]
    assert first.output_shape == (2, 8, 5, 7) and last.output_shape == (2, 5, 7, 8)
    for row in (first, last):
        # fvcore's layer_norm handle: 5 flops per element with a weight, 4 without
        assert (row.params, row.macs, row.fvcore_flops) == (params, 0, 2 * 8 * 5 * 7 * per_element)
    flat = rows([LayerNorm(normalized_shape=12)], (12,))[0]
    assert flat.params == 24 and flat.fvcore_flops == 60
    with pytest.raises(SpecError, match="normalized_shape is 3 but the incoming shape has 8"):
        rows([LayerNorm(normalized_shape=3)], (8, 5, 7))


def test_vit_b_16_tokens_class_token_and_position_embedding():
    conv, tokens, cls, pos = rows([*vit_tokens(), PositionEmbedding()], (3, 224, 224))
    assert tokens.output_shape == (1, 196, 768) and tokens.params == 0
    assert cls.output_shape == (1, 197, 768) and cls.params == 768
    assert pos.output_shape == (1, 197, 768) and pos.params == 197 * 768  # 151,296
    assert pos.receptive_field == (16, 16)
    with pytest.raises(SpecError, match=r"tokens needs a C x H x W feature map, got 10 \(flat\)"):
        rows([Tokens()], (10,))


def test_select_and_mean_tokens():
    *_, first = rows([*vit_tokens(32, 8, 32), SelectToken()])
    *_, last = rows([*vit_tokens(32, 8, 32), SelectToken(index=-1)])
    *_, mean = rows([*vit_tokens(32, 8, 32), MeanTokens()])
    assert first.output_shape == last.output_shape == mean.output_shape == (1, 32)
    assert first.receptive_field == (8, 8)  # one token: one patch
    assert mean.receptive_field == (32, 32)  # every token
    with pytest.raises(SpecError, match="token index 17 is out of range for 17 tokens"):
        rows([*vit_tokens(32, 8, 32), SelectToken(index=17)])


def test_multiheadattention_is_vit_b_16s():
    n, d = 197, 768
    *_, attn = rows([*vit_tokens(), MultiheadAttention(num_heads=12)], (3, 224, 224))
    assert attn.output_shape == (1, n, d)
    assert attn.params == 3 * d * d + 3 * d + d * d + d == 2_362_368  # torch's packed in_proj, out_proj
    # Q, K, V and output projections, then Q K^T and attention x V
    assert attn.macs == attn.fvcore_flops == 4 * n * d * d + 2 * n * n * d
    assert attn.torch_flops == 2 * attn.macs
    assert attn.receptive_field == (224, 224)  # global
    no_bias = rows([*vit_tokens(), MultiheadAttention(num_heads=12, bias=False)], (3, 224, 224))[-1]
    assert no_bias.params == 4 * d * d
    with pytest.raises(SpecError, match="the width 768 is not divisible by num_heads 5"):
        rows([*vit_tokens(), MultiheadAttention(num_heads=5)], (3, 224, 224))
    with pytest.raises(SpecError, match="embed_dim is 512 but the incoming shape has 768"):
        rows([*vit_tokens(), MultiheadAttention(num_heads=8, embed_dim=512)], (3, 224, 224))


def test_depth_counts_attention_as_one_layer():
    layers = [*vit_tokens(64, 8, 32), MultiheadAttention(num_heads=4), Linear(out_features=8)]
    assert archcalc.analyze(Model(name="t", input=(3, 32, 32), layers=layers)).total.depth == 3


def swin_stage1(window=7, shift=0, size=224, v2=False, heads=3):
    attention = ShiftedWindowAttentionV2 if v2 else ShiftedWindowAttention
    return [Conv2d(out_channels=96, kernel_size=4, stride=4), TO_LAST,
            attention(window_size=window, shift_size=shift, num_heads=heads)], (3, size, size)


@pytest.mark.parametrize("shift", [0, 3])
def test_window_attention_is_swin_ts_first_block(shift):
    c, h, w = 96, 56, 56
    *_, attn = rows(*swin_stage1(shift=shift))
    assert attn.output_shape == (1, h, w, c)
    # qkv and proj with biases, and the (2w-1)^2 x heads relative position bias table
    assert attn.params == 3 * c * c + 3 * c + c * c + c + 13 * 13 * 3 == 37_755
    # 64 windows of 49 positions: the projections on every position, Q K^T and A V within each window
    assert attn.macs == attn.fvcore_flops == h * w * 4 * c * c + 2 * 64 * 49 * 49 * c
    assert attn.receptive_field == (4 + 6 * 4, 4 + 6 * 4)  # a 7 x 7 window of 4-pixel patches


def test_window_attention_runs_at_the_padded_size():
    # 15 x 15 is padded to 21 x 21 (nine 7 x 7 windows): torchvision computes on the padding too
    *_, attn = rows(*swin_stage1(size=60))
    assert attn.output_shape == (1, 15, 15, 96)
    assert attn.macs == 21 * 21 * (4 * 96 * 96 + 2 * 49 * 96)
    # a window wider than the map sees the map, no more
    *_, small = rows(*swin_stage1(size=20))
    assert small.receptive_field == (4 + 4 * 4, 4 + 4 * 4)


def test_window_attention_v2_bias_mlp_runs_once_per_forward():
    c, heads = 96, 3
    mlp = 15 * 15 * (2 * 512 + 512 * heads)  # on the (2w-1)^2 relative coordinates, whatever the batch
    one = rows(*swin_stage1(window=8, v2=True, size=256))[-1]
    two = rows(*swin_stage1(window=8, v2=True, size=256), batch=2)[-1]
    per_sample = 64 * 64 * (4 * c * c + 2 * 64 * c)
    assert one.macs == per_sample + mlp and two.macs == 2 * per_sample + mlp
    assert two.fvcore_flops == two.macs and two.torch_flops == 2 * two.macs
    # qkv, proj, a logit scale per head, the MLP 2 -> 512 (bias) -> heads; no table
    assert one.params == 4 * c * c + 4 * c + heads + (2 * 512 + 512) + 512 * heads


def test_window_attention_needs_channels_last_and_divisible_heads():
    with pytest.raises(SpecError, match="needs a channels-last H x W x C map, got 96x56x56"):
        rows([Conv2d(out_channels=96, kernel_size=4, stride=4), ShiftedWindowAttention(window_size=7, num_heads=3)],
             (3, 224, 224))
    with pytest.raises(SpecError, match="the width 96 is not divisible by num_heads 5"):
        rows(*swin_stage1(heads=5))


def maxvit_stage1(kind, size=224, partition=7, head_dim=32):
    """MaxViT-T's first stage at `size`: a 4-pixel stride, 64 channels, to channels last, then one attention."""
    return [Conv2d(out_channels=64, kernel_size=4, stride=4), TO_LAST,
            PartitionAttention(partition_size=partition, head_dim=head_dim, partition_type=kind)], (3, size, size)


@pytest.mark.parametrize("kind", ["window", "grid"])
def test_partition_attention_is_maxvit_ts_first_layer(kind):
    c, h, w, heads = 64, 56, 56, 2  # head_dim 32
    *_, attn = rows(*maxvit_stage1(kind))
    assert attn.output_shape == (1, h, w, c)
    # to_qkv and merge with biases, and the (2p-1)^2 x heads relative position bias table
    assert attn.params == 3 * c * c + 3 * c + c * c + c + 13 * 13 * heads == 16_978
    # 64 partitions of 49 positions either way: the projections on every position, Q K^T and A V within each
    assert attn.macs == attn.fvcore_flops == h * w * 4 * c * c + 2 * 64 * 49 * 49 * c
    assert attn.torch_flops == 2 * attn.macs
    # a window: 7 x 7 adjacent 4-pixel patches; a grid: 7 positions 56 / 7 = 8 apart, spanning 6 x 8 + 1
    span = 7 if kind == "window" else 6 * 8 + 1
    assert attn.receptive_field == (4 + (span - 1) * 4,) * 2
    assert attn.stride == (4, 4)


def test_partition_attention_on_a_rectangle():
    # 12 x 8 in 3 x 2 partitions: the bias table (2·3 − 1)·(2·2 − 1) x 4 heads; a grid's 3 x 2 positions 4 apart
    grid = rows([TO_LAST, PartitionAttention(partition_size=[3, 2], head_dim=4, partition_type="grid")], (16, 12, 8))[1]
    assert grid.params == 4 * 16 * 16 + 4 * 16 + 5 * 3 * 4
    assert grid.macs == 12 * 8 * (4 * 16 * 16 + 2 * 6 * 16)
    assert grid.receptive_field == (2 * 4 + 1, 1 * 4 + 1)


def test_partition_attention_needs_whole_partitions_channels_last_and_divisible_heads():
    with pytest.raises(SpecError, match="a 28x28 map does not split into grid partitions of 8x8: H and W must be"):
        rows(*maxvit_stage1("grid", size=112, partition=8))
    with pytest.raises(SpecError, match="the width 64 is not divisible by head_dim 24"):
        rows(*maxvit_stage1("window", head_dim=24))
    with pytest.raises(SpecError, match="partitionattention needs a channels-last H x W x C map, got 64x56x56"):
        rows([Conv2d(out_channels=64, kernel_size=4, stride=4),
              PartitionAttention(partition_size=7, head_dim=32, partition_type="window")], (3, 224, 224))
    with pytest.raises(SpecError, match="partition_type must be 'window' or 'grid', got 'block'"):
        PartitionAttention(partition_size=7, head_dim=32, partition_type="block")


def test_partition_attention_is_explained_as_the_table_has_it():
    from archcalc.explain import explain

    (e,) = explain(Model(name="t", input=(3, 224, 224), layers=maxvit_stage1("grid")[0]), ["2"])
    lines = {line.what: line for line in e.lines}
    assert lines["params"].formula == "4 · 64 · 64 + 4 · 64 bias + 169 · 2" and lines["params"].value == 16_978
    assert lines["partitions"].formula == "56 · 56 / 49" and "grid partitions of 7x7" in lines["partitions"].note
    assert lines["MACs Q, K, V, out"].formula == "56 · 56 · 4 · 64 · 64"  # H W (4 C^2): the projections
    assert lines["MACs Q·Kᵀ"].formula == lines["MACs attention·V"].formula == "64 · 49 · 49 · 64"  # per partition
    assert lines["MACs"].value == e.macs == 56 * 56 * (4 * 64 * 64 + 2 * 49 * 64)


def test_patchmerge_pads_odd_sides():
    merge = rows([TO_LAST, PatchMerge()], (8, 7, 6))[1]
    assert merge.output_shape == (1, 4, 3, 32)  # ceil(7/2) x ceil(6/2) x 4C
    assert (merge.params, merge.macs, merge.receptive_field, merge.stride) == (0, 0, (2, 2), (2, 2))
    with pytest.raises(SpecError, match="patchmerge needs a channels-last H x W x C map"):
        rows([PatchMerge()], (8, 7, 6))


def test_descriptions():
    described = [r.description for r in rows(
        [TO_LAST, ShiftedWindowAttention(window_size=7, shift_size=3, num_heads=3),
         PartitionAttention(partition_size=7, head_dim=4, partition_type="grid"), TO_FIRST, Tokens(),
         MultiheadAttention(num_heads=4), SelectToken(index=0)], (12, 14, 14))]
    assert described == ["permute [0, 2, 3, 1]", "shiftedwindowattention 7x7 shift 3 3 heads",
                         "partitionattention grid 7x7 head_dim 4", "permute [0, 3, 1, 2]",
                         "tokens", "multiheadattention 4 heads", "selecttoken 0"]


def test_token_and_window_ops_agree_with_torch_and_both_oracles():
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    from archcalc.crosscheck import check_model
    from archcalc.spec import AdaptiveAvgPool2d, Flatten, Residual

    vit = Model(name="tiny-vit", input=(3, 32, 32), layers=[
        *vit_tokens(48, 8, 32), PositionEmbedding(), LayerNorm(eps=1e-6),
        Residual(body=[LayerNorm(), MultiheadAttention(num_heads=4)]), Linear(out_features=24), MeanTokens(),
        Linear(out_features=5)])
    swin = Model(name="tiny-swin", input=(3, 60, 52), layers=[
        Conv2d(out_channels=12, kernel_size=4, stride=4), LayerNorm(), TO_LAST, LayerNorm(),
        Residual(body=[LayerNorm(), ShiftedWindowAttention(window_size=7, shift_size=3, num_heads=3)]),
        PatchMerge(), LayerNorm(), Linear(out_features=24, bias=False),
        ShiftedWindowAttentionV2(window_size=[4, 3], shift_size=[2, 1], num_heads=2, pretrained_window_size=6),
        TO_FIRST, AdaptiveAvgPool2d(output_size=1), Flatten(), Linear(out_features=5)])
    maxvit = Model(name="tiny-maxvit", input=(3, 48, 40), layers=[
        Conv2d(out_channels=16, kernel_size=4, stride=4), TO_LAST,
        Residual(body=[LayerNorm(), PartitionAttention(partition_size=[3, 2], head_dim=8, partition_type="window")]),
        PartitionAttention(partition_size=[4, 5], head_dim=4, partition_type="grid"),
        TO_FIRST, AdaptiveAvgPool2d(output_size=1), Flatten(), Linear(out_features=5)])
    for model in (vit, swin, maxvit):
        checked = check_model(model, device="cpu", batch=2, runs=0)
        assert checked.ok, [(l.name, l.mismatches) for l in checked.mismatches]
        assert checked.totals.torch == 2 * checked.totals.macs  # every matmul seen, the bias MLP once


def test_readme_token_example_is_a_valid_spec(tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    path = tmp_path / "tiny-vit.yaml"
    path.write_text(re.search(r"```yaml\n(name: tiny-vit\n.*?)```", readme, re.S).group(1))
    result = archcalc.analyze(path)
    assert [row.output_shape for row in result.rows[1:3]] == [(1, 16, 64), (1, 17, 64)]
    assert result.rows[-1].output_shape == (1, 10)
    attention = next(row for row in result.rows if row.op == "multiheadattention")
    assert attention.receptive_field == (32, 32)  # the whole input
