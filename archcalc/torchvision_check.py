"""Proof that a built-in is the same function as torchvision's model: its weights loaded into
`build_module(name)`, the same input, the same output, and the same shape at every layer.

The weight mapping, stated once: torchvision's floating-point tensors (parameters, and batch
norm's running mean and variance) are taken in `state_dict` order, and each tensor of the
archcalc module, in its own order, takes the first one not yet taken that has its shape. The
orders agree except where torchvision registers a tensor on a parent module before its
children (ViT's class token, ConvNeXt's layer scale, Swin's bias tables), which the shape
tells apart, and where a torchvision block registers (or runs) its children in another order
than the spec: a projection shortcut before its body (RegNet's proj(x) + f(x), MaxViT's MBConv),
a post-norm before the attention it follows (Swin V2). SPEC_ORDER lists those blocks, and their
children's tensors and layers are taken in the built-in's order (for an imported spec, which keeps
torchvision's order of shortcut and body, only RUN_ORDER's registration-vs-run differences). Every tensor on both sides must be
used exactly once.

torch and torchvision are imported here only.
"""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from archcalc.registry import list_models, load
from archcalc.spec import Model
from archcalc.torchbuild import build_module

# torchvision's PyPI wheels are CUDA builds; beside torch's CPU wheel their compiled ops
# cannot load, which torchvision tolerates except for two fake-kernel registrations that
# need the ops' schemas (pytorch/vision#9085). Declaring the schemas is enough to import
# the models; the detection ops stay unavailable, as torchvision says when they are called.
_MISSING_OPS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
                "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_LIBRARIES: list[Any] = []  # kept alive: a torch.library.Library unregisters its ops when collected


def import_torchvision():
    """torchvision.models, importing torchvision beside a CPU-only torch if need be."""
    try:
        import torchvision.models as models
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "DEF")
        for schema in _MISSING_OPS:
            library.define(schema)
        _LIBRARIES.append(library)
        models = importlib.import_module("torchvision.models")
    return models


# What a torchvision builder is called with so that it builds the network its published figures
# describe: with weights=None, googlenet adds the training-only auxiliary classifiers; ViT-H/14's
# default (SWAG) weights are for 518 x 518, and its position embedding is sized at build;
# inception_v3 keeps its auxiliary classifier (counted in its published params) and, as
# inception.yaml states, is compared without transform_input's fixed input rescaling
# (init_weights=False, as when its weights load, skips a slow initialisation and its FutureWarning).
BUILDER_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "vit_h_14": {"image_size": 518},
    "inception_v3": {"aux_logits": True, "transform_input": False, "init_weights": False},
}


# Builders that run a channels-last map's norms and linears on a rearrangement of its positions:
# MaxViT's on the partitioned batch x groups x group size x C tensor, where the spec runs them on
# the batch x H x W x C map (they act on each position alone). Their 4-d outputs are compared as
# batch, positions, channels.
POSITIONS_REARRANGED = {"maxvit_t"}


def builder_name(name: str) -> str:
    """torchvision's builder for a built-in: the one its `published:` names, else by spelling
    (`efficientnet-b0` -> efficientnet_b0, `alexnet-torchvision` -> alexnet)."""
    return load(name).published.get("torchvision") or name.removesuffix("-torchvision").replace("-", "_")


def torchvision_classifiers() -> list[str]:
    """torchvision's classification builders (`models.list_models(module=models)`: 80 in 0.28)."""
    models = import_torchvision()
    return list(models.list_models(module=models))


def torchvision_builder(name: str) -> str:
    """torchvision's builder for `name`: a classification builder's own name (densenet121), or the
    one a built-in names (builder_name)."""
    return name if name in torchvision_classifiers() else builder_name(name)


@dataclass(frozen=True)
class Published:
    """What torchvision publishes for a builder's default weights (their `meta`, their eval transform)."""

    weights: str
    params: int  # meta["num_params"]
    gflops: float  # meta["_ops"]: MACs in billions, at the crop
    crop: int  # the evaluation crop: the input those figures belong to


def published(builder: str) -> Published:
    weights = import_torchvision().get_model_weights(builder).DEFAULT
    crop = weights.transforms.keywords["crop_size"]
    return Published(weights.name, weights.meta["num_params"], weights.meta["_ops"],
                     crop if isinstance(crop, int) else crop[0])


def torchvision_builtins() -> list[str]:
    """Every built-in that claims to be a torchvision model (its `published:` names the builder)."""
    return [name for name in list_models() if load(name).published.get("torchvision")]


# torchvision blocks (module.qualname) whose children register in another order than they run, and
# the order they run in, which every spec (written or imported) has (other children keep their
# places): Swin V2's post-norm block registers `norm1` before `attn` (and `norm2` before `mlp`) but
# runs it after, and the norm's C-vectors share the projection bias's shape.
RUN_ORDER: dict[str, tuple[str, ...]] = {
    "torchvision.models.swin_transformer.SwinTransformerBlockV2": ("attn", "norm1", "mlp", "norm2"),
}
# ... and blocks that register and run a shortcut before their body, where a built-in's `residual`
# has the body first (an imported spec keeps torchvision's order): RegNet's ResBottleneckBlock
# computes proj(x) + f(x), and with bottleneck multiplier 1 proj's 1x1 conv and batch norm have
# the shapes of f.a's; MaxViT's MBConv registers `proj` before `layers`, whose batch norm vectors
# share the projection bias's shape.
SPEC_ORDER: dict[str, tuple[str, ...]] = {
    **RUN_ORDER,
    "torchvision.models.regnet.ResBottleneckBlock": ("f", "proj"),
    "torchvision.models.maxvit.MBConv": ("layers", "proj"),
}

T = TypeVar("T")


def _in_spec_order(module: nn.Module, items: list[tuple[str, T]], orders: dict[str, tuple[str, ...]] | None = None
                   ) -> list[tuple[str, T]]:
    """`items`, keyed by qualified name in the module's order, with the children of each block in
    `orders` (default SPEC_ORDER) in the order given there, where the first of them stood
    (idempotent: calls already in that order stay as they are)."""
    orders = SPEC_ORDER if orders is None else orders
    for prefix, block in module.named_modules():
        order = orders.get(f"{type(block).__module__}.{type(block).__qualname__}")
        if order is None:
            continue
        inside = f"{prefix}." if prefix else ""

        def child(key: str) -> str | None:
            return next((c for c in order if key == inside + c or key.startswith(f"{inside}{c}.")), None)

        groups: dict[str, list[tuple[str, T]]] = {c: [] for c in order}
        kept, at = [], None
        for item in items:
            found = child(item[0])
            if found is None:
                kept.append(item)
            else:
                groups[found].append(item)
                at = len(kept) if at is None else at
        if at is not None:
            items = kept[:at] + [item for c in order for item in groups[c]] + kept[at:]
    return items


def _floating(module: nn.Module, orders: dict[str, tuple[str, ...]] | None = None) -> list[tuple[str, torch.Tensor]]:
    tensors = [(key, t) for key, t in module.state_dict(keep_vars=True).items() if t.is_floating_point()]
    return _in_spec_order(module, tensors, orders)


def transfer_weights(source: nn.Module, target: nn.Module, imported: bool = False) -> dict[str, str]:
    """Copy `source`'s weights into `target` by the mapping in this module's docstring; returns
    target key -> source key (`imported`: `target` was imported from `source`, so only RUN_ORDER
    applies). Raises ValueError naming any tensor left without a partner."""
    available = _floating(source, RUN_ORDER if imported else SPEC_ORDER)
    taken = [False] * len(available)
    mapping: dict[str, str] = {}
    with torch.no_grad():
        for key, tensor in _floating(target):
            index = next((i for i, (_, t) in enumerate(available) if not taken[i] and t.shape == tensor.shape), None)
            if index is None:
                raise ValueError(f"{key} {tuple(tensor.shape)} has no torchvision tensor of that shape left")
            taken[index] = True
            source_key, source_tensor = available[index]
            tensor.copy_(source_tensor)
            mapping[key] = source_key
    left = [f"{key} {tuple(t.shape)}" for (key, t), used in zip(available, taken) if not used]
    if left:
        raise ValueError(f"torchvision tensors without a partner: {', '.join(left[:5])}")
    return mapping


_RECORDED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.LayerNorm)


def _layer_shapes(module: nn.Module, x: torch.Tensor, positions: bool = False,
                  orders: dict[str, tuple[str, ...]] | None = None) -> tuple[torch.Tensor, list[tuple[str, tuple[int, ...]]]]:
    """The module's output, and (kind, output shape) of every conv, linear and norm layer it calls, in
    order (SPEC_ORDER's blocks' children in the spec's order); with `positions`, a 4-d linear or layer norm
    output as (batch, positions, channels)."""
    calls: list[tuple[str, tuple[str, tuple[int, ...]]]] = []

    def recorder(name: str) -> Any:
        def record(layer: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            kind = next(cls.__name__ for cls in _RECORDED if isinstance(layer, cls))
            shape = tuple(output.shape)
            if positions and kind in ("Linear", "LayerNorm") and len(shape) == 4:
                shape = (shape[0], shape[1] * shape[2], shape[3])
            calls.append((name, (kind, shape)))
        return record

    handles = [m.register_forward_hook(recorder(name))
               for name, m in module.named_modules() if isinstance(m, _RECORDED)]
    try:
        with torch.no_grad():
            output = module(x)
    finally:
        for handle in handles:
            handle.remove()
    return output, [shape for _, shape in _in_spec_order(module, calls, orders)]


@dataclass(frozen=True)
class Identity:
    """One built-in beside torchvision's module at one input size."""

    name: str
    input: tuple[int, ...]
    max_abs_difference: float
    output_scale: float
    layers: int  # conv / linear / norm layers whose output shapes were compared
    shape_mismatch: str | None
    seconds: float = 0.0  # building both, moving the weights, two forward passes

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.name, "input": list(self.input), "layers": self.layers,
                "max_abs_difference": self.max_abs_difference, "output_scale": self.output_scale,
                "shape_mismatch": self.shape_mismatch, "seconds": self.seconds, "ok": self.ok}

    @property
    def ok(self) -> bool:
        return self.shape_mismatch is None and self.max_abs_difference <= 1e-4 * max(1.0, self.output_scale)


def check_identity(name: str, input: tuple[int, ...] | None = None, seed: int = 0,
                   torchvision_kwargs: dict[str, Any] | None = None, spec: Model | None = None) -> Identity:
    """Build torchvision's model and the built-in (or `spec`, imported from it, in its place; an
    imported spec keeps torchvision's order of a block's shortcut and body),
    move the weights across, and compare in eval mode. `name` is a built-in, or with `spec` also
    a torchvision builder that no built-in stands for (densenet121); `input` defaults to the
    spec's, else the built-in's.

    Batch norm running statistics are randomised first, so that eval mode does not reduce them
    to the identity, and every parameter gets a little noise, so that none stays zero.
    `torchvision_kwargs` go to the builder (ViT's image_size at another input).
    """
    started = time.perf_counter()
    models = import_torchvision()
    shape = tuple(input) if input is not None else spec.input if spec is not None else load(name).input
    torch.manual_seed(seed)
    builder = torchvision_builder(name) if spec is not None else builder_name(name)
    reference = getattr(models, builder)(**{**BUILDER_KWARGS.get(builder, {}), **(torchvision_kwargs or {})}).eval()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
                module.get_buffer("running_mean").uniform_(-0.5, 0.5)
                module.get_buffer("running_var").uniform_(0.5, 1.5)
        # torchvision zero-initialises some tensors (ViT's head and class token, biases): with them
        # the outputs could agree vacuously, so every parameter is moved off its initial value
        for parameter in reference.parameters():
            parameter.add_(torch.randn_like(parameter), alpha=0.02)
    ours = build_module(spec or name, input=shape, init=False).eval()
    transfer_weights(reference, ours, imported=spec is not None)
    x = torch.randn(2, *shape)
    positions = builder in POSITIONS_REARRANGED
    expected, expected_shapes = _layer_shapes(reference, x, positions, RUN_ORDER if spec is not None else SPEC_ORDER)
    got, got_shapes = _layer_shapes(ours, x, positions)
    mismatch = None
    if expected_shapes != got_shapes:
        first = next((i for i, (a, b) in enumerate(zip(expected_shapes, got_shapes)) if a != b),
                     min(len(expected_shapes), len(got_shapes)))
        mismatch = (f"layer {first}: torchvision {expected_shapes[first] if first < len(expected_shapes) else 'ends'}, "
                    f"archcalc {got_shapes[first] if first < len(got_shapes) else 'ends'} "
                    f"({len(expected_shapes)} vs {len(got_shapes)} layers)")
    elif expected.shape != got.shape:
        mismatch = f"output: torchvision {tuple(expected.shape)}, archcalc {tuple(got.shape)}"
    difference = float((expected - got).abs().max()) if expected.shape == got.shape else float("inf")
    return Identity(name, shape, difference, float(expected.abs().max()), len(expected_shapes), mismatch,
                    time.perf_counter() - started)


@dataclass(frozen=True)
class ImportCheck:
    """A torchvision model imported (archcalc.importer): its totals beside torchvision's published
    figures (and a built-in's, where one names the builder), and the same function as torchvision's."""

    builder: str
    input: tuple[int, ...]
    seconds: float  # the import: trace, shapes, spec written and loaded
    params: int
    macs: int
    published: Published | None  # None: built with other arguments than those the figures are for
    builtin: tuple[str, int, int] | None  # the built-in naming this builder: its name, params, MACs at the input
    identity: Identity
    spec_lines: int

    @property
    def at_crop(self) -> bool:
        """Whether the input is the published figures' (their MACs are for that input only)."""
        return self.published is not None and self.input == (3, self.published.crop, self.published.crop)

    @property
    def problems(self) -> list[str]:
        """What does not hold, each in words (none: the round trip holds)."""
        out = []
        figures = self.published
        if figures is not None and self.params != figures.params:
            out.append(f"params {self.params:,}, torchvision publishes {figures.params:,}")
        if figures is not None and self.at_crop and round(self.macs / 1e9, 3) != figures.gflops:
            out.append(f"{self.macs / 1e9:.4f} GMACs, torchvision publishes {figures.gflops}")
        if self.builtin is not None and self.builtin[1:] != (self.params, self.macs):
            out.append(f"built-in {self.builtin[0]}: params {self.builtin[1]:,}, MACs {self.builtin[2]:,}")
        if self.identity.shape_mismatch:
            out.append(self.identity.shape_mismatch)
        elif not self.identity.ok:
            out.append(f"outputs differ by {self.identity.max_abs_difference:.3g}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems


def check_import(name: str, input: tuple[int, ...] | None = None,
                 torchvision_kwargs: dict[str, Any] | None = None) -> ImportCheck:
    """Import torchvision's builder `name` (or the one the built-in `name` names), built on the meta
    device, at `input` (default: its default weights' evaluation crop); compare its totals with
    torchvision's published figures and any built-in's, then prove it is torchvision's function
    (check_identity). `torchvision_kwargs` change the build (Inception-v3 without its auxiliary head,
    which needs a 299 input): then only the function (and the input) is compared."""
    from archcalc.analysis import run
    from archcalc.importer import build_on_meta, convert

    models = import_torchvision()
    builder = torchvision_builder(name)
    figures = published(builder)
    kwargs = {**BUILDER_KWARGS.get(builder, {}), **(torchvision_kwargs or {})}
    shape = tuple(input) if input is not None else (3, figures.crop, figures.crop)
    module = build_on_meta(getattr(models, builder), kwargs)
    start = time.perf_counter()
    imported = convert(module, shape, name=builder.replace("_", "-"),
                       source=f"torchvision.models:{builder}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})")
    seconds = time.perf_counter() - start
    ours = run(imported.model).total
    builtin = None
    for other in list_models() if not torchvision_kwargs else []:
        spec = load(other)
        if spec.published.get("torchvision") == builder:
            total = run(spec, input=shape).total
            builtin = (other, total.params, total.macs)
            break
    identity = check_identity(builder, shape, torchvision_kwargs=torchvision_kwargs, spec=imported.model)
    return ImportCheck(builder, shape, seconds, ours.params, ours.macs, None if torchvision_kwargs else figures,
                       builtin, identity,
                       len(imported.text.splitlines()))
