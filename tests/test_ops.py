"""Closed-form checks of every op: shapes from torch's documented formulas, counts by hand."""

from __future__ import annotations

import math

import pytest

import archcalc
from archcalc import (
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, ChannelPad, Concat, Conv2d, Dropout, Flatten, Linear,
    LocalResponseNorm, MaxPool2d, Model, ReLU, Repeat, Residual, Sequential, Softmax, SpecError,
)


def one(layer, shape=(3, 32, 32), batch=1):
    """The single row of a one-layer model."""
    result = archcalc.analyze(Model(name="t", input=shape, layers=[layer]), batch=batch)
    assert len(result.rows) == 1
    return result.rows[0]


def out_len(n, k, s=1, p=0, d=1):
    # torch.nn.Conv2d docs: floor((H + 2p - d(k-1) - 1) / s + 1)
    return math.floor((n + 2 * p - d * (k - 1) - 1) / s + 1)


@pytest.mark.parametrize(
    "c, h, w, out, k, s, p, d, g, bias",
    [
        (3, 224, 224, 96, 11, 4, 1, 1, 1, True),  # d2l AlexNet conv1
        (3, 227, 227, 96, 11, 4, 0, 1, 1, True),  # the paper's conv1
        (96, 27, 27, 256, 5, 1, 2, 1, 2, True),  # grouped, as split over two GPUs
        (64, 30, 17, 64, 3, 2, 1, 3, 64, False),  # depthwise, dilated, odd sizes
        (8, 20, 40, 16, (3, 5), (1, 2), (0, 2), (2, 1), 4, True),  # asymmetric everything
    ],
)
def test_conv2d_closed_form(c, h, w, out, k, s, p, d, g, bias):
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
        (v, v) if isinstance(v, int) else v for v in (k, s, p, d)
    )
    row = one(Conv2d(out_channels=out, kernel_size=k, stride=s, padding=p, dilation=d, groups=g, bias=bias), (c, h, w), batch=2)
    oh, ow = out_len(h, kh, sh, ph, dh), out_len(w, kw, sw, pw, dw)
    assert row.output_shape == (2, out, oh, ow)
    weights = out * (c // g) * kh * kw
    assert row.params == weights + (out if bias else 0)
    assert row.macs == 2 * weights * oh * ow
    assert row.flops == 2 * row.macs == row.torch_flops
    assert row.fvcore_flops == row.macs
    assert row.activations == 2 * out * oh * ow
    assert row.receptive_field == (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    assert row.stride == (sh, sw)


def test_conv2d_same_and_valid_padding():
    assert one(Conv2d(out_channels=4, kernel_size=4, padding="same"), (3, 9, 9)).output_shape == (1, 4, 9, 9)
    assert one(Conv2d(out_channels=4, kernel_size=4, padding="valid"), (3, 9, 9)).output_shape == (1, 4, 6, 6)
    with pytest.raises(SpecError, match="padding='same' needs stride 1"):
        one(Conv2d(out_channels=4, kernel_size=3, stride=2, padding="same"))


def pool_len(n, k, s, p=0, d=1, ceil=False):
    # torch.nn.MaxPool2d docs, and the rule that the last window must start inside
    # the input or left padding (aten/src/ATen/native/Pool.h, pooling_output_shape)
    span = n + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


@pytest.mark.parametrize(
    "n, k, s, p, ceil, expected",
    [
        (54, 3, 2, 0, False, 26),  # d2l AlexNet pool1
        (112, 3, 2, 0, True, 56),  # GoogLeNet pool1 (Caffe rounds up)
        (112, 3, 2, 0, False, 55),
        (14, 2, 2, 0, True, 7),
        (5, 2, 2, 1, True, 3),  # ceil would give 4, but that window starts in the padding
        (6, 3, 2, 1, True, 4),
    ],
)
def test_pool_output_lengths(n, k, s, p, ceil, expected):
    assert pool_len(n, k, s, p, ceil=ceil) == expected
    for op in (MaxPool2d, AvgPool2d):
        row = one(op(kernel_size=k, stride=s, padding=p, ceil_mode=ceil), (7, n, n))
        assert row.output_shape == (1, 7, expected, expected)
        assert (row.params, row.macs, row.fvcore_flops, row.torch_flops) == (0, 0, 0, 0)


def test_pool_stride_defaults_to_kernel_and_dilation():
    assert one(MaxPool2d(kernel_size=(2, 3)), (1, 9, 9)).output_shape == (1, 1, 4, 3)
    row = one(MaxPool2d(kernel_size=3, stride=1, dilation=2), (1, 9, 9))
    assert row.output_shape == (1, 1, pool_len(9, 3, 1, d=2), 5)
    assert row.receptive_field == (5, 5)


@pytest.mark.parametrize("n, out", [(13, 6), (6, 6), (5, 3), (7, 2), (224, 7)])
def test_adaptive_avg_pool(n, out):
    row = one(AdaptiveAvgPool2d(output_size=out), (16, n, n), batch=3)
    assert row.output_shape == (3, 16, out, out)
    assert row.fvcore_flops == 3 * 16 * n * n  # fvcore: one flop per input element
    assert row.macs == row.torch_flops == 0
    # widest bin: max over i of ceil((i+1)n/out) - floor(i*n/out)
    widest = max(math.ceil((i + 1) * n / out) - math.floor(i * n / out) for i in range(out))
    assert row.receptive_field == (widest, widest)


def test_linear_and_flatten():
    model = Model(name="t", input=(4, 5, 5), layers=[Flatten(), Linear(out_features=10), Linear(out_features=3, bias=False)])
    flat, fc1, fc2 = archcalc.analyze(model, batch=7).rows
    assert flat.output_shape == (7, 100)
    assert (fc1.params, fc1.macs, fc1.fvcore_flops, fc1.torch_flops) == (1010, 7000, 7000, 14000)
    assert (fc2.params, fc2.macs) == (30, 7 * 30)
    assert fc1.receptive_field == (5, 5)  # a linear after flatten sees the whole map


def test_batchnorm_counts_two_flops_per_element_for_fvcore_only():
    row = one(BatchNorm2d(), (8, 10, 12), batch=2)
    assert row.params == 16
    assert row.fvcore_flops == 2 * 8 * 10 * 12 * 2
    assert row.macs == row.torch_flops == 0
    assert one(BatchNorm2d(affine=False), (8, 10, 12)).fvcore_flops == 8 * 10 * 12
    assert one(BatchNorm2d(affine=False), (8, 10, 12)).params == 0


@pytest.mark.parametrize("layer", [ReLU(), Dropout(p=0.3), LocalResponseNorm(size=5), archcalc.Sigmoid(), archcalc.Tanh()])
def test_shape_preserving_ops_cost_nothing(layer):
    row = one(layer, (6, 11, 13), batch=4)
    assert row.output_shape == (4, 6, 11, 13)
    assert (row.params, row.macs, row.fvcore_flops) == (0, 0, 0)
    assert row.activations == 4 * 6 * 11 * 13


def test_softmax_over_features():
    model = Model(name="t", input=(10,), layers=[Softmax()])
    assert archcalc.analyze(model).rows[0].output_shape == (1, 10)
    with pytest.raises(SpecError, match="softmax over dim 2"):
        one(Softmax(dim=2))


def test_channelpad():
    assert one(ChannelPad(out_channels=32), (16, 8, 8)).output_shape == (1, 32, 8, 8)
    with pytest.raises(SpecError, match="fewer than the 16 incoming"):
        one(ChannelPad(out_channels=8), (16, 8, 8))


def test_concat_joins_channels_and_keeps_the_widest_receptive_field():
    block = Concat(branches=[[Conv2d(out_channels=4, kernel_size=1)], [Conv2d(out_channels=6, kernel_size=5, padding=2)], []])
    result = archcalc.analyze(Model(name="t", input=(3, 16, 16), layers=[block]))
    join = result.rows[-1]
    assert (join.op, join.output_shape, join.receptive_field) == ("concat", (1, 13, 16, 16), (5, 5))
    assert [r.name for r in result.rows] == ["0.0", "0.1", "0"]


def test_residual_identity_and_projection():
    body = [Conv2d(out_channels=8, kernel_size=3, stride=2, padding=1), ReLU(), Conv2d(out_channels=8, kernel_size=3, padding=1)]
    block = Residual(body=body, shortcut=[Conv2d(out_channels=8, kernel_size=1, stride=2, bias=False)])
    result = archcalc.analyze(Model(name="t", input=(4, 16, 16), layers=[block, Residual(body=[ReLU()])]))
    names = [r.name for r in result.rows]
    assert names == ["0.body.0", "0.body.1", "0.body.2", "0.shortcut", "0", "1.body", "1"]
    assert result.rows[4].output_shape == (1, 8, 8, 8)
    assert result.rows[3].params == 8 * 4
    assert result.total.depth == 2  # the longest path: two convs in the body


def test_repeat_multiplies_cost_and_receptive_field():
    layer = Repeat(times=3, layers=[Conv2d(out_channels=5, kernel_size=3, padding=1, bias=False), ReLU()])
    result = archcalc.analyze(Model(name="t", input=(5, 20, 20), layers=[layer]))
    assert result.total.params == 3 * 5 * 5 * 9
    assert result.total.receptive_field == (7, 7)  # three stacked 3x3 see 7x7
    assert result.rows[-1].name == "0.2.1"


def test_repeat_of_zero_copies_is_nothing():
    # EfficientNet-B0's one-block stages: the first block, then ceil(1 x 1.0) - 1 = 0 more
    layers = [Linear(out_features=6), Repeat(times=0, layers=[Linear(out_features=9), ReLU()]), Linear(out_features=2)]
    result = archcalc.analyze(Model(name="t", input=(4,), layers=layers))
    assert [r.name for r in result.rows] == ["0", "2"]
    assert result.total.params == (4 * 6 + 6) + (6 * 2 + 2)
    assert all(g.path != ("1",) for g in result.groups)  # an empty composite spans nothing: no group


def test_inline_repeat_copies_take_places_in_the_list():
    # torch's nn.Sequential(first, *copies, last): the copies are the list's items 1 and 2, `last` is 3
    layers = [Linear(out_features=6), Repeat(times=2, inline=True, layers=[Linear(out_features=6), ReLU()]),
              Linear(out_features=2)]
    result = archcalc.analyze(Model(name="t", input=(4,), layers=layers))
    assert [r.name for r in result.rows] == ["0", "1.0", "1.1", "2.0", "2.1", "3"]
    assert ("1",) not in [g.path for g in result.groups]  # the repeat itself is no module
    empty = [Repeat(times=0, inline=True, layers=[Linear(out_features=9)]), Linear(out_features=2)]
    assert [r.name for r in archcalc.analyze(Model(name="t", input=(4,), layers=empty)).rows] == ["0"]


def test_inline_repeat_builds_the_same_module_names():
    pytest.importorskip("torch")
    from archcalc.torchbuild import build_module

    layers = [Linear(out_features=6), Repeat(times=2, inline=True, layers=[Linear(out_features=6)]), ReLU()]
    module = build_module(Model(name="t", input=(4,), layers=layers))
    assert [name for name, _ in module.named_children()] == ["0", "1", "2", "3"]


def test_trainable_false_freezes_a_subtree():
    frozen = Sequential(layers=[Conv2d(out_channels=4, kernel_size=3)], trainable=False)
    result = archcalc.analyze(Model(name="t", input=(3, 8, 8), layers=[frozen, Flatten(), Linear(out_features=2)]))
    assert result.total.params == 4 * 27 + 4 + 4 * 36 * 2 + 2
    assert result.total.trainable_params == 4 * 36 * 2 + 2


def test_cost_does_not_depend_on_batch_beyond_scaling():
    small = archcalc.analyze("resnet18", batch=1).total
    big = archcalc.analyze("resnet18", batch=32).total
    assert big.macs == 32 * small.macs and big.activations == 32 * small.activations
    assert big.params == small.params


def test_dtype_bytes():
    total = archcalc.analyze("lenet", dtype="float16").total
    assert total.params_bytes == 2 * total.params and total.activation_bytes == 2 * total.activations


def test_fold_sums_composites():
    result = archcalc.analyze("resnet50")
    folded = result.fold(1)
    assert [r.name for r in folded] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert sum(r.params for r in folded) == result.total.params
    assert sum(r.macs for r in folded) == result.total.macs
    assert folded[1].output_shape == (1, 256, 56, 56)


# ---- activations, regularisers and channel ops of modern networks (issue 12) ----------------


@pytest.mark.parametrize(
    "layer",
    [archcalc.ReLU6(), archcalc.Hardswish(), archcalc.Hardsigmoid(), archcalc.SiLU(), archcalc.GELU(),
     archcalc.GELU(approximate="tanh"), archcalc.Identity(), archcalc.StochasticDepth(p=0.2, mode="batch")],
)
def test_activations_and_stochastic_depth_keep_the_shape_and_cost_nothing(layer):
    row = one(layer, (6, 11, 13), batch=4)
    assert row.output_shape == (4, 6, 11, 13)
    assert (row.params, row.macs, row.fvcore_flops, row.torch_flops) == (0, 0, 0, 0)
    assert row.receptive_field == (1, 1) and row.stride == (1, 1)
    assert archcalc.analyze(Model(name="t", input=(10,), layers=[layer])).rows[0].output_shape == (1, 10)


def test_gelu_and_stochastic_depth_take_torchs_choices():
    assert one(archcalc.GELU(approximate="tanh")).description == "gelu tanh"
    assert one(archcalc.StochasticDepth(p=0.1)).description == "stochasticdepth p=0.1 row"
    with pytest.raises(SpecError, match="approximate must be 'none' or 'tanh', got 'fast'"):
        archcalc.GELU(approximate="fast")
    with pytest.raises(SpecError, match="mode must be 'row' or 'batch'"):
        archcalc.StochasticDepth(p=0.1, mode="col")
    with pytest.raises(SpecError, match="p must be a number between 0 and 1"):
        archcalc.StochasticDepth(p=1.5)


@pytest.mark.parametrize("shape, params", [((96, 56, 56), 96), ((10,), 10)])
def test_layerscale_learns_one_factor_per_channel(shape, params):
    row = one(archcalc.LayerScale(), shape, batch=3)
    assert row.output_shape == (3, *shape)
    assert (row.params, row.macs, row.fvcore_flops) == (params, 0, 0)


@pytest.mark.parametrize(
    "c, chunks, index, size",
    [(116, 2, 0, 58), (116, 2, 1, 58), (5, 2, 0, 3), (5, 2, 1, 2), (10, 4, 3, 1), (3, 5, 2, 1)],
)
def test_chunk_follows_torch_chunk(c, chunks, index, size):
    # torch.chunk: parts of ceil(c / chunks), the last one what is left
    row = one(archcalc.Chunk(chunks=chunks, index=index), (c, 7, 9), batch=2)
    assert row.output_shape == (2, size, 7, 9)
    assert (row.params, row.macs, row.fvcore_flops) == (0, 0, 0)


def test_chunk_index_beyond_the_parts_torch_makes():
    # torch.chunk(6 channels, 4) gives three parts of 2: there is no chunk 3
    with pytest.raises(SpecError, match="chunk index 3 is out of range: 6 channels in chunks of 2 make 3"):
        one(archcalc.Chunk(chunks=4, index=3), (6, 5, 5))


def test_channelshuffle_keeps_the_shape_and_needs_groups_to_divide_channels():
    row = one(archcalc.ChannelShuffle(groups=2), (116, 28, 28))
    assert row.output_shape == (1, 116, 28, 28) and (row.params, row.macs, row.fvcore_flops) == (0, 0, 0)
    with pytest.raises(SpecError, match="groups=3 must divide the 116 channels"):
        one(archcalc.ChannelShuffle(groups=3), (116, 28, 28))
    with pytest.raises(SpecError, match="channelshuffle needs a C x H x W feature map, got 10 \\(flat\\)"):
        one(archcalc.ChannelShuffle(groups=2), (10,))


def squeeze_excitation(c, squeeze):
    return archcalc.Gate(layers=[
        AdaptiveAvgPool2d(output_size=1), Conv2d(out_channels=squeeze, kernel_size=1), ReLU(),
        Conv2d(out_channels=c, kernel_size=1), archcalc.Hardsigmoid(),
    ])


def test_gate_multiplies_by_a_broadcast_factor():
    # MobileNetV3's first squeeze-and-excitation: 72 channels at 28x28 squeezed to 24
    result = archcalc.analyze(Model(name="t", input=(72, 28, 28), layers=[squeeze_excitation(72, 24)]), batch=2)
    *body, join = result.rows
    assert [r.name for r in body] == ["0.0", "0.1", "0.2", "0.3", "0.4"]
    assert (join.name, join.op, join.description) == ("0", "mul", "mul by 72x1x1")
    assert join.input_shape == join.output_shape == (2, 72, 28, 28)
    assert (join.params, join.macs, join.fvcore_flops, join.activations) == (0, 0, 0, 2 * 72 * 28 * 28)
    assert result.total.params == (72 * 24 + 24) + (24 * 72 + 72)
    assert result.total.macs == 2 * 2 * 72 * 24  # two 1x1 convs on a 1x1 map, batch 2
    assert result.total.fvcore_flops == result.total.macs + 2 * 72 * 28 * 28  # and the pool's input
    # the factor sees the whole map; the product stays on the input's grid and stride
    assert (join.receptive_field, join.stride) == ((28, 28), (1, 1))
    assert result.total.depth == 2
    assert [(g.kind, g.start, g.stop) for g in result.groups] == [("gate", 0, 6)]


def test_gate_of_the_same_shape_and_one_that_does_not_broadcast():
    same = archcalc.Gate(layers=[Conv2d(out_channels=8, kernel_size=3, padding=1), archcalc.Sigmoid()])
    result = archcalc.analyze(Model(name="t", input=(8, 10, 10), layers=[same]))
    assert result.rows[-1].output_shape == (1, 8, 10, 10) and result.rows[-1].receptive_field == (3, 3)
    wrong = archcalc.Gate(layers=[AdaptiveAvgPool2d(output_size=1), Conv2d(out_channels=4, kernel_size=1)])
    with pytest.raises(SpecError, match=r"layers\[0\] \(gate\): gate layers give 4x1x1, which does not broadcast "
                                        r"over the input 8x10x10"):
        archcalc.analyze(Model(name="t", input=(8, 10, 10), layers=[wrong]))
    with pytest.raises(SpecError, match="gate has no layers"):
        archcalc.analyze(Model(name="t", input=(8, 10, 10), layers=[archcalc.Gate(layers=[])]))


def test_auxiliary_counts_parameters_but_runs_nothing_at_inference() -> None:
    from archcalc.spec import Auxiliary, Flatten

    head = [AdaptiveAvgPool2d(output_size=1), Flatten(), Linear(out_features=10)]
    body = [Conv2d(out_channels=8, kernel_size=3)]
    net = Model(name="n", input=(3, 32, 32), layers=(*body, Auxiliary(layers=head), Conv2d(out_channels=16, kernel_size=3)))
    plain = Model(name="p", input=(3, 32, 32), layers=(*body, Conv2d(out_channels=16, kernel_size=3)))
    with_aux, without = archcalc.analyze(net), archcalc.analyze(plain)
    assert with_aux.total.params == without.total.params + 8 * 10 + 10
    assert (with_aux.total.macs, with_aux.total.activations, with_aux.total.depth) == (
        without.total.macs, without.total.activations, without.total.depth)
    aux_rows = [r for r in with_aux.rows if r.path[0] == "1"]
    assert [r.output_shape for r in aux_rows] == [(1, 8, 1, 1), (1, 8), (1, 10)]
    assert all(r.macs == r.activations == 0 for r in aux_rows)
    assert with_aux.rows[-1].receptive_field == without.rows[-1].receptive_field == (5, 5)


def test_unknown_placeholder_gives_the_traced_shape_at_no_cost():
    row = one(archcalc.Unknown(what="torch.fft.rfft2", output=[8, 32, 17]), (8, 32, 32), batch=2)
    assert row.output_shape == (2, 8, 32, 17) and row.description == "UNKNOWN torch.fft.rfft2 (not counted)"
    assert (row.params, row.macs, row.fvcore_flops, row.receptive_field) == (0, 0, 0, (1, 1))
    with pytest.raises(SpecError, match="output must be a list of 1 to 8 positive integers"):
        archcalc.Unknown(what="x", output=[8, 0])
