"""Ops on the channel axis: taking a chunk of the channels, shuffling them, scaling each by a learned factor."""

from __future__ import annotations

from archcalc.errors import SpecError
from archcalc.ops.common import Cost, channels, new, spatial
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
