"""`claims.md`: every numeric claim of the course notes this project audits, quoted, computed now, and judged.

A claim is data: the seed's words, an English gloss, the number(s) it states. Its check
analyses the relevant specs with `archcalc.analyze` and returns what was computed, a
verdict (holds / holds under a convention / wrong by a factor) and the arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from archcalc import analyze
from archcalc.registry import load
from archcalc.result import DTYPE_BYTES, Result
from archcalc.spec import N, Conv2d, MaxPool2d, Model, pair
from archcalc.reports.common import (
    GENERATED, Verdict, does_not_hold, holds, holds_under, leaves, n, quote, rounds_to, row, times, u,
    weight_rows, wrong_by,
)

SEED_000 = "000_329ecda1f5eaa886.txt"  # d2l AlexNet lecture notes
SEED_001 = "001_f14cdb0c65bd8c09.txt"  # PyTorch AlexNet walk-through
SEED_002 = "002_59212af1ff57b0c2.txt"  # CS231n CNN architectures notes
SEED_003 = "003_ab5610a0dc9a732c.txt"  # d2l (TensorFlow) AlexNet chapter
SEED_004 = "004_0d104632fd0e0f58.txt"  # a reading of the AlexNet paper
ELLIPSIS = " … "  # joins non-adjacent excerpts of one seed in a quote


@dataclass(frozen=True)
class Finding:
    computed: str
    verdict: Verdict
    arithmetic: str


@dataclass(frozen=True)
class Claim:
    key: str
    title: str
    seeds: tuple[str, ...]
    original: str  # the seed's words, verbatim (excerpts joined by ELLIPSIS)
    gloss: str
    claimed: Any  # the number(s) the seed states
    check: Callable[[Any], Finding]
    extra: bool = False  # not in the list: found while reading the seeds

    def find(self) -> Finding:
        return self.check(self.claimed)


def _spatial(result: Result, name: str) -> int:
    return row(result, name).output_shape[-1]


def _leaf(model: Model, name: str, kind: type[N]) -> N:
    """The leaf layer named `name`, which must be a `kind`."""
    node = next(x for x in leaves(model) if x.name == name)
    if not isinstance(node, kind):
        raise TypeError(f"{model.name}'s {name} is {node.OP}, not {kind.OP}")
    return node


def _window(model: Model, name: str) -> tuple[int, int, int]:
    """(kernel, stride, padding) along one axis of a named conv or max pool."""
    node = next(x for x in leaves(model) if x.name == name)
    if isinstance(node, Conv2d) and not isinstance(node.padding, str):
        return pair(node.kernel_size)[1], pair(node.stride)[1], pair(node.padding)[1]
    if isinstance(node, MaxPool2d):
        stride = node.kernel_size if node.stride is None else node.stride
        return pair(node.kernel_size)[1], pair(stride)[1], pair(node.padding)[1]
    raise TypeError(f"{model.name}'s {name} ({node.OP}) has no numeric window to show")


def _formula(model: Model, result: Result, name: str) -> str:
    """`⌊(224 + 2·1 − 11) / 4⌋ + 1 = 54` for a named conv or pool, from its spec and input."""
    k, s, p = _window(model, name)
    size = row(result, name).input_shape[-1]
    return f"{name}: ⌊({size} + 2·{p} − {k}) / {s}⌋ + 1 = {_spatial(result, name)}"


D2L_STEPS = ("conv1", "pool1", "pool2", "pool5")


def _d2l_chain(claimed: dict[str, int], input: tuple[int, int, int] | None = None) -> Finding:
    model = load("alexnet")
    result = analyze(model, input=input)
    computed = {name: _spatial(result, name) for name in D2L_STEPS}
    computed["flatten"] = row(result, "flatten").output_shape[-1]
    wrong = [k for k in claimed if claimed[k] != computed[k]]
    shown = ", ".join(f"{k} {computed[k]}" for k in claimed)
    arithmetic = "; ".join(_formula(model, result, name) for name in D2L_STEPS)
    c, h, w = row(result, "pool5").output_shape[1:]
    arithmetic += f"; flatten: {c}·{h}·{w} = {computed['flatten']}"
    verdict = holds() if not wrong else does_not_hold(f"{', '.join(wrong)} differ")
    return Finding(f"`alexnet` at {'x'.join(map(str, result.input_shape[1:]))}: {shown}", verdict, arithmetic)


def _chain_1ch(claimed: dict[str, int]) -> Finding:
    found = _d2l_chain(claimed)
    # 003's TensorFlow code gives conv1 no padding: the floor hides the difference
    unpadded = analyze(Model(name="conv1-valid", input=(1, 224, 224),
                             layers=(Conv2d(out_channels=96, kernel_size=11, stride=4, name="conv1"),)))
    extra = (f". `{SEED_003}`'s TensorFlow code pads nothing on conv1 ('valid'): ⌊(224 − 11) / 4⌋ + 1 = "
             f"{_spatial(unpadded, 'conv1')} as well, so both versions agree")
    return Finding(found.computed, found.verdict, found.arithmetic + extra)


def _chain_3ch(claimed: dict[str, int]) -> Finding:
    found = _d2l_chain(claimed, input=(3, 224, 224))
    one, three = analyze("alexnet"), analyze("alexnet", input=(3, 224, 224))
    extra = (f". Input channels change only conv1's weights ({n(row(one, 'conv1').params)} -> "
             f"{n(row(three, 'conv1').params)} params), never the spatial sizes")
    return Finding(found.computed, found.verdict, found.arithmetic + extra)


def _padding_text(claimed: dict[str, int]) -> Finding:
    size, pad = claimed["size"], claimed["padding"]
    outs = {}
    for p in (pad, 1):
        result = analyze(Model(name=f"conv3-p{p}", input=(256, size, size),
                               layers=(Conv2d(out_channels=384, kernel_size=3, padding=p, name="conv3"),)))
        outs[p] = _spatial(result, "conv3")
    arithmetic = (f"padding {pad}: ⌊({size} + 2·{pad} − 3) / 1⌋ + 1 = {outs[pad]}; padding 1: "
                  f"⌊({size} + 2·1 − 3) / 1⌋ + 1 = {outs[1]}. A 3x3 kernel keeps the size with padding (3 − 1) / 2 = 1")
    verdict = holds() if outs[pad] == size else does_not_hold(
        f"padding {pad} turns {size}x{size} into {outs[pad]}x{outs[pad]}; the code beside the text (padding=1) is right")
    return Finding(f"{size}x{size} -> {outs[pad]}x{outs[pad]} with padding {pad}; -> {outs[1]}x{outs[1]} with padding 1",
                   verdict, arithmetic)


def _paper_conv1(claimed: dict[str, int]) -> Finding:
    model = load("alexnet-paper")
    at227, at224 = analyze(model), analyze(model, input=(3, 224, 224))
    shape227 = row(at227, "conv1").output_shape[1:]
    shape224 = row(at224, "conv1").output_shape[1:]
    arithmetic = f"{_formula(model, at227, 'conv1')} (227x227 input); {_formula(model, at224, 'conv1')} (224x224)"
    ok = tuple(shape227) == (claimed["channels"], claimed["size"], claimed["size"])
    verdict = holds_under("a 227x227 input (the paper's text says 224, which gives "
                          f"{shape224[1]}x{shape224[2]})") if ok else does_not_hold("the sizes differ")
    return Finding(f"`alexnet-paper` conv1: {'x'.join(map(str, shape227))} at 227x227, "
                   f"{'x'.join(map(str, shape224))} at 224x224", verdict, arithmetic)


def _paper_conv1_params(claimed: dict[str, int]) -> Finding:
    model = load("alexnet-paper")
    conv1 = row(analyze(model), "conv1")
    node = _leaf(model, "conv1", Conv2d)
    k, cin = pair(node.kernel_size)[0], conv1.input_shape[1]
    weights = k * k * cin * node.out_channels
    biases = conv1.params - weights
    both = rounds_to(weights, claimed["value"], claimed["step"]) and rounds_to(conv1.params, claimed["value"], claimed["step"])
    verdict = holds(f"to the nearest {n(claimed['step'])}, with or without the {biases} biases") if both else wrong_by(
        claimed["value"], conv1.params)
    return Finding(f"{n(weights)} weights + {n(biases)} biases = {n(conv1.params)} params",
                   verdict, f"({k}·{k}·{cin})·{node.out_channels} = {n(weights)}; + {biases} biases = {n(conv1.params)}")


def _paper_pool1(claimed: dict[str, int]) -> Finding:
    model = load("alexnet-paper")
    result = analyze(model)
    pool = row(result, "pool1")
    shape = pool.output_shape[1:]
    ok = tuple(shape) == (claimed["channels"], claimed["size"], claimed["size"]) and pool.params == claimed["params"]
    return Finding(f"`alexnet-paper` pool1: {'x'.join(map(str, shape))}, {pool.params} params",
                   holds("at the paper's 227x227 input") if ok else does_not_hold("the sizes differ"),
                   f"{_formula(model, result, 'pool1')}; a max pool has no weights")


# The two pairings of the "10x parameters, 260x compute" claim: (label, LeNet, AlexNet).
PAIRINGS = (
    ("the course notes' pair (d2l)", "lenet", "alexnet"),
    ("the papers' pair (LeCun 1998, Krizhevsky 2012)", "lenet5", "alexnet-paper"),
)


def ratios(small: str, big: str) -> dict[str, float]:
    """AlexNet over LeNet: params, MACs, FLOPs (2 x MACs) and fvcore's count."""
    a, b = analyze(small).total, analyze(big).total
    return {"params": b.params / a.params, "MACs": b.macs / a.macs, "FLOPs": b.flops / a.flops,
            "fvcore": b.fvcore_flops / a.fvcore_flops}


def _ten_x(claimed: dict[str, float]) -> Finding:
    parts, arithmetic, worst = [], [], []
    for label, small, big in PAIRINGS:
        a, b = analyze(small).total, analyze(big).total
        r = ratios(small, big)
        parts.append(f"{label}: params {times(r['params'])}, compute {times(r['MACs'])}")
        arithmetic.append(f"{big} / {small}: params {n(b.params)} / {n(a.params)} = {times(r['params'])}; "
                          f"MACs {n(b.macs)} / {n(a.macs)} = {times(r['MACs'])}")
        worst.append((r["params"], r["MACs"]))
    p_lo, m_lo = min(w[0] for w in worst), min(w[1] for w in worst)
    verdict = wrong_by(claimed["params"], p_lo, f"compute: wrong by at least {times(m_lo / claimed['compute'])} "
                       "under every pairing; FLOPs (2 x MACs) and fvcore's count give the same ratios as MACs, "
                       "since a factor both sides share cancels")
    return Finding("; ".join(parts), verdict, "; ".join(arithmetic))


def _one_gb(claimed: dict[str, float]) -> Finding:
    parts, arithmetic, sizes = [], [], []
    for name in ("alexnet", "alexnet-paper"):
        result = analyze(name)
        fc = [r for r in weight_rows(result) if r.op == "linear" and r.output_shape[-1] == 4096]
        params = sum(r.params for r in fc)
        for dtype in ("float32",):
            size = params * DTYPE_BYTES[dtype]
            sizes.append(size)
            parts.append(f"`{name}`: {n(params)} params = {u(size)}B in {dtype}")
            arithmetic.append(" + ".join(f"{r.input_shape[-1]}·4096 + 4096" for r in fc)
                              + f" = {n(params)} params; x {DTYPE_BYTES[dtype]} bytes = {n(size)} bytes ({name})")
    biggest = max(sizes)
    double = biggest * DTYPE_BYTES["float64"] // DTYPE_BYTES["float32"]
    return Finding("; ".join(parts), wrong_by(claimed["bytes"], biggest,
                   f"even in float64 the larger pair is {u(double)}B"), "; ".join(arithmetic))


def _eight_layers(claimed: dict[str, int]) -> Finding:
    parts, ok = [], True
    for name in ("alexnet", "alexnet-paper", "alexnet-torchvision"):
        result = analyze(name)
        convs = sum(r.op == "conv2d" for r in result.rows)
        fcs = sum(r.op == "linear" for r in result.rows)
        ok &= (convs, fcs, result.total.depth) == (claimed["conv"], claimed["fc"], claimed["layers"])
        parts.append(f"`{name}`: {convs} conv + {fcs} linear, depth {result.total.depth}")
    return Finding("; ".join(parts), holds("depth counts conv and linear layers") if ok else does_not_hold("counts differ"),
                   f"{claimed['conv']} + {claimed['fc']} = {claimed['conv'] + claimed['fc']} weight layers, one path")


def _last_conv(name: str, input: tuple[int, int, int] | None = None) -> tuple[Result, int]:
    result = analyze(name, input=input)
    last = [r for r in result.rows if r.op == "conv2d"][-1]
    return result, last.output_shape[-1]


def _thirteen(claimed: dict[str, int]) -> Finding:
    cases = [("alexnet-paper", None), ("alexnet-paper", (3, 224, 224)), ("alexnet-torchvision", None), ("alexnet", None)]
    parts = []
    for name, input in cases:
        result, side = _last_conv(name, input)
        parts.append((name, result.input_shape[-1], side))
    shown = "; ".join(f"`{m}` at {s}x{s}: {side}x{side}" for m, s, side in parts)
    ok_227 = parts[0][2] == claimed["to"]
    at224 = parts[1][2]
    verdict = holds_under(
        f"the paper's layers on a 227x227 input, or torchvision's padding 2 in conv1 at 224x224; the paper's layers "
        f"on 224x224 end at {at224}x{at224}") if ok_227 else does_not_hold("no variant ends at that size")
    return Finding(f"the last convolution's output: {shown}", verdict,
                   "227 -> ⌊(227 − 11) / 4⌋ + 1 = 55 -> pool 27 -> 27 -> pool 13 -> 13 -> 13 -> 13; "
                   "224 -> 54 -> 26 -> 26 -> 12 -> 12")


def _stacked(claimed: dict[str, int]) -> Finding:
    parts, ok, arithmetic = [], True, []
    for big, stack, k in (("conv7x7", "stacked-3x3", 7), ("conv5x5", "stacked-3x3-2", 5)):
        for c in (64, 256):
            a, b = analyze(big, params={"C": c}), analyze(stack, params={"C": c})
            ca, cb = a.total.params / (c * c), b.total.params / (c * c)
            if k == claimed["field"]:  # the claim; the 5x5 pair is shown beside it
                ok &= (ca, cb, a.total.receptive_field[0], b.total.receptive_field[0]) == (
                    claimed["big"], claimed["stack"], k, k)
            if c == 256:
                parts.append(f"C = {c}: `{big}` {n(a.total.params)} = {ca:g}C², `{stack}` {n(b.total.params)} = "
                             f"{cb:g}C², receptive fields {a.total.receptive_field[0]} and {b.total.receptive_field[0]}")
                arithmetic.append(f"{k}·{k} = {k * k}; {b.total.depth}·(3·3) = {9 * b.total.depth}; receptive field "
                                  f"1 + {b.total.depth}·(3 − 1) = {1 + 2 * b.total.depth}")
    return Finding("; ".join(parts) + " (the same coefficients at C = 64)",
                   holds("weights only: the lessons' specs have no bias") if ok else does_not_hold(
                       "coefficients differ"), "; ".join(arithmetic))


def _five_by_five(claimed: dict[str, int]) -> Finding:
    result = analyze("stacked-3x3-2")
    convs = [r for r in result.rows if r.op == "conv2d"]
    fields = [r.receptive_field[0] for r in convs]
    ok = fields[-1] == claimed["field"]
    return Finding(f"`stacked-3x3-2`: receptive field after each conv {', '.join(map(str, fields))}",
                   holds() if ok else does_not_hold("the field differs"),
                   " -> ".join(f"{f}" for f in fields) + " (each stride-1 3x3 adds 3 − 1 = 2)")


def _conv_terms(r) -> str:
    """`28·28·192·(3·3·256)`: H·W·C_out·(k·k·C_in) of a square, ungrouped convolution row."""
    c_out, h, w = r.output_shape[1:]
    c_in = r.input_shape[1]
    k = math.isqrt(r.macs // (c_out * h * w * c_in))
    return f"{h}·{w}·{c_out}·({k}·{k}·{c_in})"


def _inception(claimed: dict[str, int]) -> Finding:
    naive, neck = analyze("inception-naive"), analyze("inception-bottleneck")
    parts, verdicts, arithmetic = [], [], []
    for label, result, value in (("naive", naive, claimed["naive"]), ("bottleneck", neck, claimed["bottleneck"])):
        macs = result.total.macs
        convs = weight_rows(result)
        arithmetic.append(f"{label}: " + " + ".join(_conv_terms(r) for r in convs) + f" = {n(macs)}")
        parts.append(f"{label} {n(macs)} MACs ({u(macs)})")
        if rounds_to(macs, value, claimed["step"]):
            verdicts.append(f"{label}: {u(value)} holds")
        else:
            diff = value - macs
            twice = [r for r in convs if rounds_to(r.macs, diff, claimed["step"])]
            note = (f"; {u(value)} − {u(macs)} = {u(diff)}, the {twice[0].name} term ({n(twice[0].macs)}) again: "
                    "the slide's sum counts it twice") if twice else ""
            verdicts.append(str(wrong_by(value, macs)) + f" for the {label} module{note}")
    ok = all("holds" in v and "wrong" not in v for v in verdicts)
    verdict = Verdict("; ".join(verdicts), ok)
    return Finding("; ".join(parts) + " (operations = multiply-accumulates of the convolutions)", verdict,
                   "; ".join(arithmetic) + " (H·W·C_out·(k·k·C_in) per convolution; biases not counted)")


def _resnet_depth(claimed: dict[str, int]) -> Finding:
    parts, ok = [], True
    for name, layers in claimed.items():
        result = analyze(name)
        all_weighted = len(weight_rows(result))
        ok &= result.total.depth == layers
        parts.append(f"`{name}`: depth {result.total.depth} ({all_weighted} conv and linear layers in all)")
    return Finding("; ".join(parts), holds_under("depth = conv and linear layers on the longest path; the projection "
                                                 "shortcuts are off that path") if ok else does_not_hold("depths differ"),
                   "ImageNet bottleneck nets: 1 + 3·(3 + 8 + 36 + 3) + 1 = 152 on the longest path, plus 4 projection "
                   "shortcuts = 156 in all; CIFAR nets: 6n + 2 (n = 9: 56, n = 3: 20), parameter-free shortcuts")


def _crops(claimed: dict[str, int]) -> Finding:
    # the crop positions are a sliding 224 window over 256 with stride 1: a pool's output size
    big, crop = claimed["image"], claimed["crop"]
    result = analyze(Model(name="crops", input=(1, big, big), layers=(MaxPool2d(kernel_size=crop, stride=1, name="crop"),)))
    per_axis = _spatial(result, "crop")
    exact = per_axis * per_axis
    with_flips = exact * 2
    paper = (big - crop) ** 2 * 2
    verdict = holds_under(
        f"{big - crop} offsets per axis (0 to {big - crop - 1}, as Krizhevsky et al. count) and horizontal "
        f"reflections, which the notes leave out: ({big} − {crop})²·2 = {n(paper)}. Crops alone give {n(exact)} "
        f"positions ({times(claimed['factor'] / exact)} fewer than claimed); with reflections {n(with_flips)}"
    ) if paper == claimed["factor"] else wrong_by(claimed["factor"], with_flips)
    return Finding(f"{per_axis} positions per axis, {n(exact)} crops, {n(with_flips)} with reflections", verdict,
                   f"positions per axis: ({big} − {crop}) / 1 + 1 = {per_axis}; {per_axis}² = {n(exact)}; "
                   f"x 2 reflections = {n(with_flips)}")


def _vgg_rules(claimed: dict[str, Any]) -> Finding:
    depths, kernels, pools = [], set(), set()
    for name in ("vgg16", "vgg19"):
        model = load(name)
        depths.append(analyze(model).total.depth)
        for node in leaves(model):
            if isinstance(node, Conv2d):
                padding = node.padding if isinstance(node.padding, str) else pair(node.padding)
                kernels.add((pair(node.kernel_size), padding))
            if isinstance(node, MaxPool2d):
                pools.add(pair(node.kernel_size))
    ok = (min(depths), max(depths)) == claimed["depths"] and kernels == {((3, 3), (1, 1))} and pools == {(2, 2)}
    return Finding(f"depths {', '.join(map(str, depths))}; conv kernels {sorted(kernels)}; pools {sorted(pools)}",
                   holds() if ok else does_not_hold("the layouts differ"),
                   "16 = 13 conv + 3 linear (configuration D); 19 = 16 conv + 3 linear (E)")


def _two_gpus(claimed: dict[str, int]) -> Finding:
    model = load("alexnet-paper")
    result = analyze(model)
    parts, ok = [], True
    for name, depth in claimed.items():
        node = _leaf(model, name, Conv2d)
        cin = row(result, name).input_shape[1]
        ok &= cin // node.groups == depth
        parts.append(f"{name}: {cin} input channels / groups {node.groups} = {cin // node.groups} per filter")
    return Finding("; ".join(parts), holds() if ok else does_not_hold("the split differs"),
                   "a filter of a grouped convolution sees C_in / groups channels")


CLAIMS: tuple[Claim, ...] = (
    Claim("d2l-chain", "d2l AlexNet's shapes on 1x224x224", (SEED_000, SEED_003),
          "我们构造一个高和宽均为224的单通道数据样本来观察每一层的输出形状。" + ELLIPSIS
          + "conv2d output shape (1, 54, 54, 96)" + ELLIPSIS + "max_pooling2d output shape (1, 26, 26, 96)"
          + ELLIPSIS + "flatten output shape (1, 6400)",
          "We build a one-channel sample of height and width 224 to watch each layer's output shape: conv1 54x54, "
          "the pools 26, 12, 5, flatten 6400 (and nn.Linear(6400, 4096) in 000's code).",
          {"conv1": 54, "pool1": 26, "pool2": 12, "pool5": 5, "flatten": 6400}, _chain_1ch),
    Claim("d2l-chain-3ch", "The same chain on 3x224x224", (SEED_001,),
          "网络支持的输入的尺寸为:3×224×224。" + ELLIPSIS + "Conv2d output shape: torch.Size([1, 96, 54, 54])"
          + ELLIPSIS + "MaxPool2d output shape: torch.Size([1, 256, 5, 5])" + ELLIPSIS
          + "Flatten output shape: torch.Size([1, 6400])",
          "The network takes 3x224x224 inputs; conv1 gives 96x54x54, the last pool 256x5x5, flatten 6400.",
          {"conv1": 54, "pool1": 26, "pool2": 12, "pool5": 5, "flatten": 6400}, _chain_3ch),
    Claim("padding-2", "\"padding=2 keeps the size\" beside a 3x3 convolution", (SEED_001,),
          "nn.Conv2d(256, 384, kernel_size=3, padding=1) 使用一个 3*3 的卷积核窗口来捕捉对象, "
          "padding=2 边缘都向外扩充2,保持输出尺寸不变",
          "nn.Conv2d(256, 384, kernel_size=3, padding=1): a 3x3 window; padding=2 pads every edge by 2 and keeps "
          "the output size unchanged.",
          {"size": 12, "padding": 2}, _padding_text, extra=True),
    Claim("paper-conv1", "The paper's AlexNet: conv1 gives 55x55x96", (SEED_002,),
          "第一层有96个卷积核,每个卷积核的大小是11*11*3,所以第一层输出的大小是: 55*55*96。",
          "The first layer has 96 kernels of 11x11x3, so its output is 55x55x96.",
          {"channels": 96, "size": 55}, _paper_conv1),
    Claim("paper-conv1-params", "conv1's parameters: (11x11x3)x96 = 35K", (SEED_002,),
          "那么第一层的参数有:(11*11*3)*96 = 35K.",
          "So the first layer has (11x11x3)x96 = 35K parameters.",
          {"value": 35_000, "step": 1_000}, _paper_conv1_params),
    Claim("paper-pool1", "pool1 gives 27x27x96 and has no parameters", (SEED_002,),
          "第二层,即POOL1,这层在做Max pooling输出的结果大小是27*27*96。" + ELLIPSIS
          + "这一层没有参数,因为是在做Max Pooling,取最大值即可。",
          "The second layer, POOL1, max-pools to 27x27x96; it has no parameters, it only takes maxima.",
          {"channels": 96, "size": 27, "params": 0}, _paper_pool1),
    Claim("ten-x", "AlexNet vs LeNet: 10x the parameters, 260x the compute", (SEED_000,),
          "AlexNet 是更大更深的LeNet,10x参数个数,260x计算复杂度",
          "AlexNet is a bigger, deeper LeNet: 10x the parameters, 260x the computational complexity.",
          {"params": 10, "compute": 260}, _ten_x),
    Claim("one-gb", "The two 4096-wide FC layers: nearly 1 GB of parameters", (SEED_003,),
          "紧接着最后一个卷积层的是两个输出个数为4096的全连接层。这两个巨大的全连接层带来将近1 GB的模型参数。",
          "After the last convolution come two fully connected layers of 4096 outputs; these two huge layers bring "
          "nearly 1 GB of model parameters.",
          {"bytes": 10**9}, _one_gb),
    Claim("eight-layers", "AlexNet has 8 layers: 5 convolutional, 3 fully connected", (SEED_003, SEED_004),
          "AlexNet包含8层变换,其中有5层卷积和2层全连接隐藏层,以及1个全连接输出层。" + ELLIPSIS + "5卷积,3全连接,softmax",
          "AlexNet has 8 layers: 5 convolutional, 2 fully connected hidden layers and 1 fully connected output "
          "layer (004: 5 conv, 3 fully connected, softmax).",
          {"layers": 8, "conv": 5, "fc": 3}, _eight_layers),
    Claim("thirteen", "Feature maps shrink from 224x224 to 13x13", (SEED_004,),
          "随着网络增加,慢慢把空间信息压缩。224x224 压缩到最后 13x13",
          "As the network deepens it compresses spatial information: 224x224 down to 13x13 at the end.",
          {"from": 224, "to": 13}, _thirteen),
    Claim("vgg-rules", "VGG: 16-19 layers, only 3x3 convolutions (pad 1) and 2x2 max pools", (SEED_002,),
          "VGGNet一般16-19层,它只包含3*3的卷积(pad 1),Max Pooling是2*2的。",
          "VGGNet usually has 16-19 layers, only 3x3 convolutions (pad 1) and 2x2 max pooling.",
          {"depths": (16, 19)}, _vgg_rules, extra=True),
    Claim("stacked-7", "Three 3x3: a 7x7 receptive field, 27C² weights instead of 49C²", (SEED_002,),
          "3个步长为1的3x3卷积核的一层层叠加作用可看成一个大小为7的感受野(其实就表示3个3x3连续卷积相当于一个7x7卷积),"
          "其参数总量为 $3\\times(9\\times C^2)$ ,如果直接使用7x7卷积核,其参数总量为 $49\\times C^2$",
          "Three stacked stride-1 3x3 convolutions act like one receptive field of 7 (like a 7x7 convolution); "
          "their weights total 3x(9xC²), a 7x7 convolution's 49xC².",
          {"big": 49, "stack": 27, "field": 7}, _stacked),
    Claim("stacked-5", "Two 3x3: a 5x5 receptive field", (SEED_002,),
          "通过两层的3*3卷积使得第三层的一个单位可以看到第一层5*5的视野",
          "Through two 3x3 convolutions a unit of the third layer sees a 5x5 field of the first.",
          {"field": 5}, _five_by_five),
    Claim("inception-ops", "Inception: 854M operations naive, 358M with 1x1 bottlenecks", (SEED_002,),
          "如果不加1*1的卷积,那么对于上图的计算量高达8.54亿次计算。" + ELLIPSIS + "现在的操作降低到了3.58亿次操作。",
          "Without the 1x1 convolutions the module above costs as much as 854 million operations; with them, "
          "358 million.",
          {"naive": 854_000_000, "bottleneck": 358_000_000, "step": 1_000_000}, _inception),
    Claim("resnet-152", "ResNet: 152 layers (and 56 vs 20 on CIFAR)", (SEED_002,),
          "所以这也是ResNet敢用152层的原因。" + ELLIPSIS + "发现56层不仅在训练集上效果好",
          "That is why ResNet dares to use 152 layers. (And: experiments with 56 layers vs 20 layers.)",
          {"resnet152": 152, "resnet56": 56, "resnet20": 20}, _resnet_depth),
    Claim("crops", "Random 224x224 crops of 256x256 multiply the data by 2048", (SEED_004,),
          "在 256x256 里随机扣一块 224x224 的区域,相当于数据量变为 2048 倍。",
          "Cropping a random 224x224 region out of 256x256 multiplies the data by 2048.",
          {"image": 256, "crop": 224, "factor": 2048}, _crops),
    Claim("two-gpus", "The two-GPU split: 48-deep filters", (SEED_002, SEED_004),
          "我们之前算第二层的大小是55*55*96 ,而上图红色框种的深度是48" + ELLIPSIS
          + "第三个卷积层也会去看对方,拿到第二个卷积层在 GPU0 和 GPU1 上的输出,在输出通道维度合并,卷积核大小为3x3x256.",
          "Conv1's output is 55x55x96, yet the next layer's filters are 48 deep (the two-GPU split); the third "
          "convolution sees both GPUs' outputs, kernels 3x3x256.",
          {"conv2": 48, "conv3": 256}, _two_gpus, extra=True),
)

NOTES = {
    "resnet-152": (
        "The notes' sentence also says the 56-layer network did *better* than the 20-layer one on the test set. "
        "He et al. (2016, Figure 1) report the opposite for plain networks: the 56-layer one has the higher "
        "training *and* test error, which is the degradation problem residual connections solve. That is a "
        "result, not a count, so archcalc cannot compute it."
    ),
}


def claim(key: str) -> Claim:
    return next(c for c in CLAIMS if c.key == key)


def section(c: Claim, finding: Finding | None = None, level: str = "##") -> str:
    """One claim: quote, gloss, computed value, verdict, arithmetic."""
    found = finding or c.find()
    lines = [
        f'<a id="{c.key}"></a>',
        "",
        f"{level} {c.title}" + (" (found while reading the notes, beyond the list first asked for)" if c.extra else ""),
        "",
        quote(c.seeds, c.original, c.gloss),
        "",
        f"- **Computed:** {found.computed}",
        f"- **Verdict:** {found.verdict}",
        f"- **Arithmetic:** {found.arithmetic}",
    ]
    if c.key in NOTES:
        lines.append(f"- **Note:** {NOTES[c.key]}")
    return "\n".join(lines)


def render() -> str:
    findings = [(c, c.find()) for c in CLAIMS]
    held = sum(f.verdict.holds for _, f in findings)
    from archcalc.reports.common import md_table

    summary = md_table(
        ["claim", "notes file", "verdict"],
        [[f"[{c.title}](#{c.key})", ", ".join(s[:3] for s in c.seeds),
          "holds" if f.verdict.holds and "convention" not in f.verdict.text else
          "holds under a convention" if f.verdict.holds else "does not hold"] for c, f in findings],
    )
    lines = [
        GENERATED,
        "# Claims audit: the course notes' numbers, recomputed",
        "",
        "Every numeric claim in the course notes this project audits (Chinese notes on AlexNet, VGG, GoogLeNet and ResNet), "
        "quoted with its file, an English gloss, the value archcalc computes now, a verdict and the arithmetic. "
        "Operations are multiply-accumulates (MACs) of convolutions and linear layers, the convention of the slides "
        "quoted. Claims marked \"beyond the list first asked for\" were found while reading the notes.",
        "",
        f"{held} of {len(findings)} claims hold (some only under a stated convention); "
        f"{len(findings) - held} do not.",
        "",
        summary,
        "",
    ]
    for c, f in findings:
        lines += [section(c, f), ""]
    return "\n".join(lines)

