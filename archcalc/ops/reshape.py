"""Ops that rearrange or pad a tensor without arithmetic."""

from __future__ import annotations

import math

from archcalc.errors import SpecError
from archcalc.ops.common import Cost, new, spatial
from archcalc.spec import ChannelPad, Flatten


def flatten(layer: Flatten, shape) -> Cost:
    return new(Cost, ((math.prod(shape),), 0, 0, 0, None))


def channelpad(layer: ChannelPad, shape) -> Cost:
    c = spatial(shape, "channelpad")[0]
    if layer.out_channels < c:
        raise SpecError(f"out_channels {layer.out_channels} is fewer than the {c} incoming channels")
    return new(Cost, ((layer.out_channels, *shape[1:]), 0, 0, 0, None))


KIND = "reshape"  # how `unknown op` errors group these ops
HANDLERS = {Flatten: flatten, ChannelPad: channelpad}
DESCRIPTIONS = {ChannelPad: lambda layer: f"channelpad to {layer.out_channels}"}
