"""Ops that rearrange or pad a tensor without arithmetic."""

from __future__ import annotations

import math

from archcalc.errors import SpecError
from archcalc.ops.common import ChannelsLast, Cost, Line, describe_shape, new, spatial, times
from archcalc.spec import ChannelPad, Flatten, PatchMerge, Permute, Unknown


def flatten(layer: Flatten, shape) -> Cost:
    return new(Cost, ((math.prod(shape),), 0, 0, 0, None))


def channelpad(layer: ChannelPad, shape) -> Cost:
    c = spatial(shape, "channelpad")[0]
    if layer.out_channels < c:
        raise SpecError(f"out_channels {layer.out_channels} is fewer than the {c} incoming channels")
    return new(Cost, ((layer.out_channels, *shape[1:]), 0, 0, 0, None))


TO_CHANNELS_LAST, TO_CHANNELS_FIRST = (0, 2, 3, 1), (0, 3, 1, 2)


def permute(layer: Permute, shape) -> Cost:
    dims = tuple(layer.dims)
    if len(shape) == 3 and dims == TO_CHANNELS_LAST and shape.__class__ is not ChannelsLast:
        c, h, w = shape
        return new(Cost, (ChannelsLast((h, w, c)), 0, 0, 0, None))
    if dims == TO_CHANNELS_FIRST and shape.__class__ is ChannelsLast:
        h, w, c = shape
        return new(Cost, ((c, h, w), 0, 0, 0, None))
    if dims == tuple(range(len(shape) + 1)):
        return new(Cost, (shape, 0, 0, 0, None))
    raise SpecError(
        f"permute {list(dims)} of {describe_shape(shape)} is not supported: archcalc permutes a C x H x W map "
        "to channels last with [0, 2, 3, 1], and back with [0, 3, 1, 2]"
    )


def patchmerge(layer: PatchMerge, shape) -> Cost:
    if shape.__class__ is not ChannelsLast:
        raise SpecError(
            f"patchmerge needs a channels-last H x W x C map, got {describe_shape(shape)}: "
            "add a permute [0, 2, 3, 1] before it"
        )
    h, w, c = shape
    return new(Cost, (ChannelsLast((-(-h // 2), -(-w // 2), 4 * c)), 0, 0, 0, (2, 2, 2, 2)))


def unknown(layer: Unknown, shape) -> Cost:
    """A placeholder for a call the importer could not map: the traced output shape, no cost counted."""
    return new(Cost, (tuple(layer.output), 0, 0, 0, None))


KIND = "reshape"  # how `unknown op` errors group these ops
HANDLERS = {Flatten: flatten, ChannelPad: channelpad, Permute: permute, PatchMerge: patchmerge, Unknown: unknown}
DESCRIPTIONS = {
    ChannelPad: lambda layer: f"channelpad to {layer.out_channels}",
    Permute: lambda layer: f"permute {list(layer.dims)}",
    Unknown: lambda layer: f"UNKNOWN {layer.what} (not counted)",
}


def explain_flatten(layer: Flatten, shape, cost: Cost) -> list[Line]:
    return [Line("output", times(*shape), cost.output[0], "every value in one vector, in C, H, W order")]


def explain_channelpad(layer: ChannelPad, shape, cost: Cost) -> list[Line]:
    c, out = shape[0], layer.out_channels
    return [Line("output C", f"{c} + {out - c}", out, f"{out - c} channels of zeros appended")]


def explain_permute(layer: Permute, shape, cost: Cost) -> list[Line]:
    if cost.output.__class__ is ChannelsLast:
        return [Line("output C", "", shape[0], "the channels moved last (H x W x C, as a linear over channels wants)")]
    if shape.__class__ is ChannelsLast:
        return [Line("output C", "", shape[-1], "the channels moved back first (C x H x W)")]
    return []  # the dimensions in their own order: nothing moves


def explain_patchmerge(layer: PatchMerge, shape, cost: Cost) -> list[Line]:
    h, w, c = shape
    oh, ow, oc = cost.output
    return [Line("output H", f"⌈{h} / 2⌉", oh, "odd: padded by one" if h % 2 else ""),
            Line("output W", f"⌈{w} / 2⌉", ow, "odd: padded by one" if w % 2 else ""),
            Line("output C", times(4, c), oc, "each 2x2 patch's four C-wide vectors side by side")]


EXPLANATIONS = {
    Flatten: explain_flatten, ChannelPad: explain_channelpad, Permute: explain_permute, PatchMerge: explain_patchmerge,
}
