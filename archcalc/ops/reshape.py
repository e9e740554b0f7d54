"""Ops that rearrange or pad a tensor without arithmetic."""

from __future__ import annotations

import math

from archcalc.errors import SpecError
from archcalc.ops.common import Cost, new, spatial
from archcalc.spec import ChannelPad, Flatten, Unknown


def flatten(layer: Flatten, shape) -> Cost:
    return new(Cost, ((math.prod(shape),), 0, 0, 0, None))


def channelpad(layer: ChannelPad, shape) -> Cost:
    c = spatial(shape, "channelpad")[0]
    if layer.out_channels < c:
        raise SpecError(f"out_channels {layer.out_channels} is fewer than the {c} incoming channels")
    return new(Cost, ((layer.out_channels, *shape[1:]), 0, 0, 0, None))


def unknown(layer: Unknown, shape) -> Cost:
    """A placeholder for a call the importer could not map: the traced output shape, no cost counted."""
    return new(Cost, (tuple(layer.output), 0, 0, 0, None))


KIND = "reshape"  # how `unknown op` errors group these ops
HANDLERS = {Flatten: flatten, ChannelPad: channelpad, Unknown: unknown}
DESCRIPTIONS = {
    ChannelPad: lambda layer: f"channelpad to {layer.out_channels}",
    Unknown: lambda layer: f"UNKNOWN {layer.what} (not counted)",
}
