"""Training memory against batch size for a few built-ins, the budgets of common GPUs, and where the memory goes."""

from __future__ import annotations

from archcalc.registry import list_models
from archcalc.reports import charts as drawing
from archcalc.reports.common import GENERATED, md_table, n, pct
from archcalc.training import train_step

MODELS = ("resnet50", "vit-b-16", "efficientnet-b0", "vgg16")
BUDGETS = (16 * 10**9, 24 * 10**9, 40 * 10**9, 80 * 10**9)  # GB = 1e9 bytes: a card sold as "24 GB" holds 24 GiB
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
OPTIMIZER, PRECISION = "adamw", "bf16-mixed"
CHART = "img/training-memory.png"


def _models() -> list[str]:
    known = list_models()
    return [name for name in MODELS if name in known]


def series() -> list[tuple[str, list[int], list[int]]]:
    """Each model's peak at each batch: from its fixed and per-sample terms (exact from batch 2 on)."""
    out = []
    for name in _models():
        out.append((name, list(BATCHES), [train_step(name, batch=b, optimizer=OPTIMIZER, precision=PRECISION)
                                          .total.peak_bytes for b in BATCHES]))
    return out


def charts() -> dict[str, bytes]:
    return {CHART: drawing.training_memory(series(), BUDGETS)}


def crossing_table() -> str:
    rows = []
    for name in _models():
        step = train_step(name, batch=2, optimizer=OPTIMIZER, precision=PRECISION)
        total = step.total
        rows.append([f"`{name}`", total.fixed_bytes, total.per_sample_bytes,
                     *(total.max_batch(budget) for budget in BUDGETS)])
    return md_table(["model", "fixed bytes", "bytes per sample", *(f"largest batch at {b // 10**9} GB" for b in BUDGETS)],
                    rows)


def breakdown_table(batch: int) -> str:
    rows = []
    for name in _models():
        total = train_step(name, batch=batch, optimizer=OPTIMIZER, precision=PRECISION).total
        peak = total.peak_bytes
        rows.append([f"`{name}`", f"{total.weight_bytes / 1e9:.2f} ({pct(total.weight_bytes, peak)})",
                     f"{total.gradient_bytes / 1e9:.2f} ({pct(total.gradient_bytes, peak)})",
                     f"{total.optimizer_bytes / 1e9:.2f} ({pct(total.optimizer_bytes, peak)})",
                     f"{total.saved_bytes / 1e9:.2f} ({pct(total.saved_bytes, peak)})",
                     f"{total.transient_bytes / 1e9:.2f} ({pct(total.transient_bytes, peak)})",
                     f"{peak / 1e9:.2f}", f"{total.step_flops / 1e12:.2f}"])
    return md_table(["model", "weights GB", "gradients GB", "AdamW state GB", "saved activations GB",
                     "largest transient GB", "peak GB", "TFLOP per step"], rows)


def _largest_state() -> tuple[str, int]:
    """The model whose weights, gradients and optimizer state are largest, and those bytes."""
    states = []
    for name in _models():
        total = train_step(name, batch=2, optimizer=OPTIMIZER, precision=PRECISION).total
        states.append((total.weight_bytes + total.gradient_bytes + total.optimizer_bytes, name))
    size, name = max(states)
    return name, size


def render() -> str:
    largest, state = _largest_state()
    lines = [
        GENERATED,
        "# Training memory against batch size",
        "",
        f"One training step (`archcalc train`, {OPTIMIZER}, {PRECISION}: torch.autocast with float32 master weights, "
        "gradients and optimizer state) of each model at its default input, on CUDA's rules. The peak is weights + "
        "gradients + optimizer state + the activations autograd saves + the largest transient (one layer's input and "
        "output gradients); from batch 2 on it is exactly `fixed + batch x per_sample`, so the largest batch under a "
        "budget is `floor((budget - fixed) / per_sample)`. GB = 1e9 bytes; a card sold as 24 GB holds 24 GiB "
        "(25.8e9 bytes): give `--budget 24GiB` to use all of it. The per-op rules are proved exactly against torch's "
        "saved_tensors_hooks and FlopCounterMode on CPU (tests/test_training_torch.py); the CUDA rules (bool dropout "
        "masks, float32 layer norm and softmax under autocast) and the peak against torch.cuda.max_memory_allocated "
        "are checked only where a GPU runs that test.",
        "",
        f"![peak training memory against batch size]({CHART})",
        "",
        "## Where each model crosses the common budgets",
        "",
        crossing_table(),
        "",
        "## Where the memory goes, at batch 256",
        "",
        breakdown_table(256),
        "",
        "Activations dominate at any batch worth training with. The model state (weights, gradients and AdamW's two "
        f"buffers: 16 bytes per parameter) is a fixed cost, largest for `{largest}` ({n(state)} bytes).",
        "",
    ]
    return "\n".join(lines)
