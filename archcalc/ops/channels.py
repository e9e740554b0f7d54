"""Ops on the channel axis: taking a chunk of the channels, shuffling them, scaling each by a learned factor."""

from __future__ import annotations

from archcalc.errors import SpecError
from archcalc.ops.common import Cost, Line, channels, new, spatial, times
from archcalc.spec import ChannelShuffle, Chunk, LayerScale


def chunk(layer: Chunk, shape) -> Cost:
    c, h, w = spatial(shape, "chunk")
    # torch.chunk: parts of ceil(C / chunks) channels, the last one smaller; fewer parts when they run out
    size = -(-c // layer.chunks)
    parts = -(-c // size)
    if layer.index >= parts:
        raise SpecError(f"chunk index {layer.index} is out of range: {c} channels in chunks of {size} make {parts}")
    return new(Cost, ((min(size, c - layer.index * size), h, w), 0, 0, 0, None))


def channelshuffle(layer: ChannelShuffle, shape) -> Cost:
    c = spatial(shape, "channelshuffle")[0]
    if c % layer.groups:
        raise SpecError(f"groups={layer.groups} must divide the {c} channels")
    return new(Cost, (shape, 0, 0, 0, None))


def layerscale(layer: LayerScale, shape) -> Cost:
    return new(Cost, (shape, channels(shape), 0, 0, None))


KIND = "channels"  # how `unknown op` errors group these ops
HANDLERS = {Chunk: chunk, ChannelShuffle: channelshuffle, LayerScale: layerscale}
DESCRIPTIONS = {
    Chunk: lambda layer: f"chunk {layer.index} of {layer.chunks}",
    ChannelShuffle: lambda layer: f"channelshuffle groups={layer.groups}",
}


def explain_chunk(layer: Chunk, shape, cost: Cost) -> list[Line]:
    c, size = shape[0], -(-shape[0] // layer.chunks)
    taken = cost.output[0]
    lines = [Line("part size", f"⌈{c} / {layer.chunks}⌉", size, "torch.chunk: parts of ⌈C / chunks⌉ channels")]
    if taken != size:
        lines.append(Line("output C", f"{c} − {times(layer.index, size)}", taken, f"part {layer.index}, the last: what is left"))
    else:
        lines.append(Line("output C", "", taken, f"part {layer.index}: channels {layer.index * size} to {layer.index * size + taken - 1}"))
    return lines


def explain_channelshuffle(layer: ChannelShuffle, shape, cost: Cost) -> list[Line]:
    c, g = shape[0], layer.groups
    return [Line("channels per group", f"{c} / {g}", c // g,
                 f"the {g} groups' channels interleaved (a reshape and transpose: no arithmetic)")]


def explain_layerscale(layer: LayerScale, shape, cost: Cost) -> list[Line]:
    return [Line("params", "", cost.params, "one learned factor per channel, each value multiplied by its channel's")]


EXPLANATIONS = {Chunk: explain_chunk, ChannelShuffle: explain_channelshuffle, LayerScale: explain_layerscale}
