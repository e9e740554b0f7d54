"""Hypothesis strategies for random archcalc specs, written as the YAML users write.

`valid_specs()` draws specs that torch can run: shapes are tracked with torch's documented
output-size formula (nn.Conv2d / nn.MaxPool2d docs), independently of archcalc's code, so
that every layer fits. Composite joins keep shapes compatible by construction: concat
branches and residual bodies use "keep" layers (odd kernel, padding (k-1)/2 x dilation, one
common stride), whose output length is floor((n - 1) / s) + 1 whatever the kernel.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

MAX_CHANNELS = 12
NAMES = ("a", "conv", "pool", "x_1", "body", "shortcut", "stage-2", "0a")


def out_len(n: int, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> int:
    """torch's output length (nn.MaxPool2d docs); ceil mode drops a window starting in the right padding."""
    span = n + 2 * p - d * (k - 1) - 1
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    return out - 1 if (out - 1) * s >= n + p else out


def keep_len(n: int, s: int) -> int:
    return (n - 1) // s + 1


def _hw(a, b):
    """An [h, w] pair, or one int when both axes agree (both spellings must work)."""
    return a if a == b else [a, b]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _layer(op: str, args: dict | None, draw, name_pool: list[str]) -> dict:
    item: dict = {op: args or {}}
    if name_pool and draw(st.integers(0, 3)) == 0:
        item["name"] = name_pool.pop(draw(st.integers(0, len(name_pool) - 1)))
    if draw(st.integers(0, 9)) == 0:
        item["trainable"] = False
    return item


# ---- leaf layers: (draw, shape, names) -> (item, new shape) -------------------------------


def conv_any(draw, shape, names):
    c, h, w = shape
    g = draw(st.sampled_from(_divisors(c))) if draw(st.booleans()) else 1
    out = g * draw(st.integers(1, max(1, MAX_CHANNELS // g)))
    axes = []
    for n in (h, w):
        d = draw(st.integers(1, 3))
        p = draw(st.integers(0, 3))
        k = draw(st.integers(1, max(1, min(5, (n + 2 * p - 1) // d + 1))))
        s = draw(st.integers(1, 3))
        axes.append((k, s, p, d))
    (kh, sh, ph, dh), (kw, sw, pw, dw) = axes
    args = {"out_channels": out, "kernel_size": _hw(kh, kw), "stride": _hw(sh, sw), "dilation": _hw(dh, dw)}
    mode = draw(st.sampled_from(["int", "int", "int", "same", "valid"]))
    if mode == "same" and (sh, sw) == (1, 1):
        args["padding"] = "same"
        new = (out, h, w)
    elif mode == "valid" and all(d * (k - 1) + 1 <= n for (k, s, p, d), n in zip(axes, (h, w))):
        args["padding"] = "valid"
        new = (out, out_len(h, kh, sh, 0, dh), out_len(w, kw, sw, 0, dw))
    else:
        args["padding"] = _hw(ph, pw)
        new = (out, out_len(h, kh, sh, ph, dh), out_len(w, kw, sw, pw, dw))
    if g > 1:
        args["groups"] = g
    if draw(st.booleans()):
        args["bias"] = False
    if draw(st.integers(0, 4)) == 0:
        args["in_channels"] = c
    return _layer("conv2d", args, draw, names), new


def conv_keep(draw, shape, names, stride: int = 1, out: int | None = None):
    c, h, w = shape
    out = out or draw(st.integers(1, MAX_CHANNELS))
    k, d = draw(st.sampled_from([1, 3, 5])), draw(st.integers(1, 2))
    args = {"out_channels": out, "kernel_size": k, "padding": d * (k - 1) // 2, "dilation": d, "bias": draw(st.booleans())}
    if stride > 1:
        args["stride"] = stride
    elif draw(st.booleans()):
        args = {**args, "padding": "same", "kernel_size": _hw(draw(st.integers(1, 4)), draw(st.integers(1, 4)))}
    return _layer("conv2d", args, draw, names), (out, keep_len(h, stride), keep_len(w, stride))


def pool_any(draw, shape, names):
    c, h, w = shape
    op = draw(st.sampled_from(["maxpool2d", "avgpool2d"]))
    axes = []
    for n in (h, w):
        # torch: padding <= kernel // 2 (the undilated kernel), and the dilated kernel must fit
        k = draw(st.integers(1, 5))
        d = draw(st.integers(1, 2)) if op == "maxpool2d" else 1
        if d * (k - 1) + 1 - 2 * (k // 2) > n:
            d = 1
        p = draw(st.integers(max(0, -(-(d * (k - 1) + 1 - n) // 2)), k // 2))
        axes.append((k, p, d))
    (kh, ph, dh), (kw, pw, dw) = axes
    stride = None if draw(st.booleans()) else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    ceil = draw(st.booleans())
    args = {"kernel_size": _hw(kh, kw), "padding": _hw(ph, pw), "ceil_mode": ceil}
    sh, sw = (kh, kw) if stride is None else stride
    if stride is not None:
        args["stride"] = _hw(sh, sw)
    if op == "maxpool2d":
        args["dilation"] = _hw(dh, dw)
    elif draw(st.booleans()):
        args["count_include_pad"] = False
    new = (c, out_len(h, kh, sh, ph, dh, ceil), out_len(w, kw, sw, pw, dw, ceil))
    return _layer(op, args, draw, names), new


def pool_keep(draw, shape, names, stride: int = 1):
    c, h, w = shape
    op = draw(st.sampled_from(["maxpool2d", "avgpool2d"]))
    k = draw(st.sampled_from([1, 3]))
    args = {"kernel_size": k, "stride": stride, "padding": k // 2}
    return _layer(op, args, draw, names), (c, keep_len(h, stride), keep_len(w, stride))


def adaptive(draw, shape, names):
    c, h, w = shape
    oh, ow = draw(st.integers(1, h + 2)), draw(st.integers(1, w + 2))
    return _layer("adaptiveavgpool2d", {"output_size": _hw(oh, ow)}, draw, names), (c, oh, ow)


def batchnorm(draw, shape, names):
    args = {}
    if draw(st.booleans()):
        args["affine"] = False
    # without running statistics torch needs more than one value per channel, even in eval
    if shape[1] * shape[2] > 1 and draw(st.booleans()):
        args["track_running_stats"] = False
    if draw(st.booleans()):
        args["num_features"] = shape[0]
    return _layer("batchnorm2d", args, draw, names), shape


def lrn(draw, shape, names):
    args = {"size": draw(st.integers(1, 5))}
    if draw(st.booleans()):
        args.update(alpha=0.001, beta=0.5, k=2.0)
    return _layer("localresponsenorm", args, draw, names), shape


ACTIVATIONS = ["relu", "sigmoid", "tanh", "dropout", "softmax", "relu6", "hardswish", "hardsigmoid", "silu", "gelu",
               "identity", "stochasticdepth", "layerscale"]


def activation(draw, shape, names):
    op = draw(st.sampled_from(ACTIVATIONS))
    args = None
    if op == "dropout" and draw(st.booleans()):
        args = {"p": 0.25}
    elif op == "gelu" and draw(st.booleans()):
        args = {"approximate": draw(st.sampled_from(["none", "tanh"]))}
    elif op == "stochasticdepth":
        args = {"p": draw(st.sampled_from([0.0, 0.1, 0.5])), "mode": draw(st.sampled_from(["row", "batch"]))}
    elif op == "layerscale" and draw(st.booleans()):
        args = {"init_value": 0.5}
    return _layer(op, args, draw, names), shape


def channelshuffle(draw, shape, names):
    return _layer("channelshuffle", {"groups": draw(st.sampled_from(_divisors(shape[0])))}, draw, names), shape


def chunk(draw, shape, names):
    c = shape[0]
    chunks = draw(st.integers(1, 4))
    size = -(-c // chunks)  # torch.chunk: parts of ceil(c / chunks), as many as the channels fill
    index = draw(st.integers(0, -(-c // size) - 1))
    return _layer("chunk", {"chunks": chunks, "index": index}, draw, names), (min(size, c - index * size), *shape[1:])


def channelpad(draw, shape, names):
    out = shape[0] + draw(st.integers(0, 4))
    return _layer("channelpad", {"out_channels": out}, draw, names), (out, *shape[1:])


def layernorm(draw, shape, names):
    args = {}
    if draw(st.integers(0, 3)) == 0:
        args["elementwise_affine"] = False
    elif draw(st.integers(0, 3)) == 0:
        args["bias"] = False
    if draw(st.booleans()):
        args["eps"] = 1e-6
    return _layer("layernorm", args, draw, names), shape


# ---- tokens (N x D) and channels-last maps (H x W x C): shapes as plain tuples, tagged -------


def _heads(draw, width: int) -> int:
    return draw(st.sampled_from(_divisors(width)))


def token_layer(draw, shape, names):
    """A layer on N x D tokens that keeps them tokens."""
    n, d = shape
    kind = draw(st.sampled_from(["norm", "linear", "attention", "activation", "residual"]))
    if kind == "norm":
        return layernorm(draw, shape, names)
    if kind == "linear":
        out = draw(st.integers(1, MAX_CHANNELS))
        return _layer("linear", {"out_features": out, "bias": draw(st.booleans())}, draw, names), (n, out)
    if kind == "attention":
        args = {"num_heads": _heads(draw, d)}
        if draw(st.booleans()):
            args["bias"] = False
        return _layer("multiheadattention", args, draw, names), shape
    if kind == "activation":
        return activation(draw, shape, names)
    inner = list(NAMES)  # a pre-norm transformer half-block: x + f(norm(x))
    body = [layernorm(draw, shape, inner)[0],
            _layer("multiheadattention", {"num_heads": _heads(draw, d)}, draw, inner) if draw(st.booleans())
            else _layer("linear", {"out_features": d}, draw, inner)]
    return _layer("residual", {"body": body}, draw, names), shape


def tokens_tail(draw, shape, names):
    """ViT-like: a map read as tokens, a class token and position embedding, token layers, then one
    token or their mean as a vector."""
    c, h, w = shape
    items = [_layer("tokens", None, draw, names)]
    shape = (h * w, c)
    if draw(st.booleans()):
        items.append(_layer("classtoken", None, draw, names))
        shape = (shape[0] + 1, c)
    if draw(st.booleans()):
        items.append(_layer("positionembedding", None, draw, names))
    for _ in range(draw(st.integers(1, 3))):
        item, shape = token_layer(draw, shape, names)
        items.append(item)
    if draw(st.booleans()):
        items.append(_layer("meantokens", None, draw, names))
    else:
        items.append(_layer("selecttoken", {"index": draw(st.integers(-shape[0], shape[0] - 1))}, draw, names))
    return items, (shape[1],)


def window_attention(draw, shape, names):
    h, w, c = shape
    window = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    shift = (draw(st.integers(0, window[0] - 1)), draw(st.integers(0, window[1] - 1)))
    args = {"window_size": _hw(*window), "num_heads": _heads(draw, c)}
    if any(shift):
        args["shift_size"] = _hw(*shift)
    if draw(st.integers(0, 3)) == 0:
        args["qkv_bias"] = False
    op = draw(st.sampled_from(["shiftedwindowattention", "shiftedwindowattentionv2"]))
    if op.endswith("v2") and draw(st.booleans()):
        args["pretrained_window_size"] = draw(st.integers(2, 8))
    return _layer(op, args, draw, names), shape


def partition_attention(draw, shape, names):
    """MaxViT's attention: partitions that tile the map (any divisors of H and W), heads of any width dividing C."""
    h, w, c = shape
    args = {"partition_size": _hw(draw(st.sampled_from(_divisors(h))), draw(st.sampled_from(_divisors(w)))),
            "head_dim": draw(st.sampled_from(_divisors(c))),
            "partition_type": draw(st.sampled_from(["window", "grid"]))}
    return _layer("partitionattention", args, draw, names), shape


def channels_last_layer(draw, shape, names):
    h, w, c = shape
    kind = draw(st.sampled_from(["norm", "linear", "window", "partition", "merge", "residual"]))
    if kind == "norm":
        return layernorm(draw, shape, names)
    if kind == "linear":
        out = draw(st.integers(1, MAX_CHANNELS))
        return _layer("linear", {"out_features": out, "bias": draw(st.booleans())}, draw, names), (h, w, out)
    if kind == "window":
        return window_attention(draw, shape, names)
    if kind == "partition":
        return partition_attention(draw, shape, names)
    if kind == "merge":
        return _layer("patchmerge", None, draw, names), ((h + 1) // 2, (w + 1) // 2, 4 * c)
    inner = list(NAMES)  # a Swin half-block: x + attn(norm(x))
    body = [layernorm(draw, shape, inner)[0], window_attention(draw, shape, inner)[0]]
    return _layer("residual", {"body": body}, draw, names), shape


def channels_last_run(draw, shape, names):
    """Swin-like: to channels last, 1-3 layers there, back to channels first."""
    c, h, w = shape
    items = [_layer("permute", {"dims": [0, 2, 3, 1]}, draw, names)]
    shape = (h, w, c)
    for _ in range(draw(st.integers(1, 3))):
        item, shape = channels_last_layer(draw, shape, names)
        items.append(item)
    items.append(_layer("permute", {"dims": [0, 3, 1, 2]}, draw, names))
    h, w, c = shape
    return _layer("sequential", items, draw, names), (c, h, w)


# ---- composites ---------------------------------------------------------------------------


def keep_chain(draw, shape, depth: int, stride: int, out: int | None = None):
    """1-3 layers that keep H x W (or apply `stride` once), ending with `out` channels if given."""
    names = list(NAMES)
    items = []
    strided_at = draw(st.integers(0, 2)) if stride > 1 else -1
    count = draw(st.integers(1, 3))
    for i in range(max(count, strided_at + 1)):
        if i == strided_at:
            maker = draw(st.sampled_from(["conv", "pool"]))
            item, shape = (conv_keep if maker == "conv" else pool_keep)(draw, shape, names, stride)
        else:
            choices = [conv_keep, pool_keep, batchnorm, activation, lrn, channelpad, channelshuffle]
            if depth > 0:
                choices.append(lambda d_, s_, n_: residual(d_, s_, n_, depth - 1, stride=1))
            item, shape = draw(st.sampled_from(choices))(draw, shape, names)
        items.append(item)
    if out is not None and shape[0] != out:
        item, shape = conv_keep(draw, shape, names, 1, out)
        items.append(item)
    return items, shape


def residual(draw, shape, parent_names, depth: int, stride: int | None = None):
    c, h, w = shape
    stride = stride or draw(st.sampled_from([1, 1, 2]))
    out = c if draw(st.booleans()) else draw(st.integers(1, MAX_CHANNELS))
    body, new = keep_chain(draw, shape, depth, stride, out)
    names = list(NAMES)
    if stride == 1 and out == c and draw(st.booleans()):
        shortcut = []
    elif out >= c and draw(st.booleans()):  # option A: subsample, zero-pad channels
        shortcut = [_layer("maxpool2d", {"kernel_size": 1, "stride": stride}, draw, names),
                    _layer("channelpad", {"out_channels": out}, draw, names)]
    else:
        shortcut = [_layer("conv2d", {"out_channels": out, "kernel_size": 1, "stride": stride, "bias": False}, draw, names)]
        if draw(st.booleans()):
            shortcut.append(_layer("batchnorm2d", {}, draw, names))
    args = {"body": body}
    if shortcut or draw(st.booleans()):
        args["shortcut"] = shortcut
    return _layer("residual", args, draw, parent_names), new


def concat(draw, shape, parent_names, depth: int):
    stride = draw(st.sampled_from([1, 1, 2]))
    branches, outs = [], []
    for _ in range(draw(st.integers(1, 3))):
        items, new = keep_chain(draw, shape, depth, stride)
        branches.append(items)
        outs.append(new)
    return _layer("concat", branches, draw, parent_names), (sum(o[0] for o in outs), *outs[0][1:])


def gate(draw, shape, parent_names, depth: int):
    """x * layers(x): squeeze-and-excitation (a C x 1 x 1 factor), or a same-shape chain."""
    c = shape[0]
    names = list(NAMES)
    if draw(st.booleans()):
        squeeze = draw(st.integers(1, MAX_CHANNELS))
        layers = [
            _layer("adaptiveavgpool2d", {"output_size": 1}, draw, names),
            _layer("conv2d", {"out_channels": squeeze, "kernel_size": 1}, draw, names),
            activation(draw, (squeeze, 1, 1), names)[0],
            _layer("conv2d", {"out_channels": c, "kernel_size": 1}, draw, names),
            _layer(draw(st.sampled_from(["sigmoid", "hardsigmoid"])), None, draw, names),
        ]
    else:
        layers, _ = keep_chain(draw, shape, max(depth - 1, 0), 1, c)
    return _layer("gate", layers, draw, parent_names), shape


def shuffle_unit(draw, shape, parent_names, depth: int):
    """ShuffleNetV2's unit: one half of the channels kept, the other through a chain, joined and shuffled."""
    c = shape[0]
    if c % 2:
        return channelpad(draw, shape, parent_names)
    names = list(NAMES)
    half = c // 2
    body, new = keep_chain(draw, (half, *shape[1:]), max(depth - 1, 0), 1, half)
    unit = [
        _layer("concat", [[_layer("chunk", {"chunks": 2, "index": 0}, draw, names)],
                          [_layer("chunk", {"chunks": 2, "index": 1}, draw, names), *body]], draw, names),
        _layer("channelshuffle", {"groups": 2}, draw, names),
    ]
    return _layer("sequential", unit, draw, parent_names), shape


def repeat(draw, shape, parent_names, depth: int):
    """A shape-invariant unit repeated 0-3 times."""
    names = list(NAMES)
    if depth > 0 and draw(st.booleans()):
        c = shape[0]
        body, _ = keep_chain(draw, shape, depth - 1, 1, c)
        unit = [_layer("residual", {"body": body}, draw, names)]
    else:
        item, _ = conv_keep(draw, shape, names, 1, shape[0])
        unit = [item] + ([_layer("relu", None, draw, names)] if draw(st.booleans()) else [])
    if draw(st.integers(0, 3)) == 0:  # inline: the copies take places in the enclosing list (none: no copies)
        return {"repeat": {"times": draw(st.integers(0, 3)), "layers": unit, "inline": True}}, shape
    return _layer("repeat", {"times": draw(st.integers(0, 3)), "layers": unit}, draw, parent_names), shape


def sequential(draw, shape, parent_names, depth: int):
    items, new = chain(draw, shape, list(NAMES), depth - 1, draw(st.integers(1, 3)))
    return _layer("sequential", items, draw, parent_names), new


def chain(draw, shape, names: list[str], depth: int, count: int):
    items = []
    for _ in range(count):
        leaves = [conv_any, conv_any, pool_any, adaptive, batchnorm, activation, lrn, channelpad, channelshuffle, chunk,
                  layernorm, channels_last_run, channels_last_run]
        composites = [residual, concat, repeat, sequential, gate, shuffle_unit] if depth > 0 else []
        if composites and draw(st.integers(0, 2)) == 0:
            item, shape = draw(st.sampled_from(composites))(draw, shape, names, depth)
        else:
            item, shape = draw(st.sampled_from(leaves))(draw, shape, names)
        items.append(item)
    return items, shape


def head(draw, features: int, names):
    items = []
    for _ in range(draw(st.integers(1, 2))):
        out = draw(st.integers(1, 16))
        args = {"out_features": out}
        if draw(st.booleans()):
            args["bias"] = False
        if draw(st.integers(0, 3)) == 0:
            args["in_features"] = features
        items.append(_layer("linear", args, draw, names))
        features = out
        if draw(st.booleans()):
            items.append(activation(draw, (features,), names)[0])
    return items


@st.composite
def valid_specs(draw) -> dict:
    """A random spec (as parsed YAML) that torch can run."""
    names = list(NAMES)
    if draw(st.integers(0, 9)) == 0:  # a plain MLP on a flat input
        features = draw(st.integers(1, 32))
        return {"name": "random-mlp", "input": [features], "layers": head(draw, features, names)}
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 20)), draw(st.integers(1, 20)))
    layers, out = chain(draw, shape, names, draw(st.integers(0, 2)), draw(st.integers(1, 5)))
    if draw(st.integers(0, 3)) == 0:
        items, out = tokens_tail(draw, out, names)
        layers += items
        if draw(st.booleans()):
            layers += head(draw, out[0], names)
    elif draw(st.booleans()):
        layers.append(_layer("flatten", None, draw, names))
        layers += head(draw, math.prod(out), names)
    return {"name": "random", "input": list(shape), "layers": layers}
