"""Variants derived from a built-in spec in code: GoogLeNet without its 1x1 reductions.

Nothing is copied: the built-in Model is walked and rebuilt with `dataclasses.replace`,
dropping 1x1 convolution units from the Inception branches.
"""

from __future__ import annotations

from dataclasses import replace

from archcalc.spec import AvgPool2d, Concat, Conv2d, MaxPool2d, Model, Node, Repeat, Residual, Sequential, pair
from archcalc.reports.common import leaves


def kernel(node: Node) -> tuple[int, int] | None:
    """The kernel of a conv, or of a unit holding exactly one conv (conv + norm + relu); else None."""
    convs = [x for x in leaves(node) if isinstance(x, Conv2d)]
    return pair(convs[0].kernel_size) if len(convs) == 1 else None


def _pool(node: Node) -> bool:
    return isinstance(node, (MaxPool2d, AvgPool2d))


def strip_branch(branch: tuple[Node, ...], projections: bool) -> tuple[Node, ...]:
    """A branch without the 1x1 units that reduce depth before a larger convolution and, if `projections`,
    without those that project a pooled input; a branch that is a lone 1x1 stays."""
    kept = []
    for i, node in enumerate(branch):
        one = kernel(node) == (1, 1)
        reduces = one and any(kernel(later) not in (None, (1, 1)) for later in branch[i + 1:])
        projects = one and projections and any(_pool(earlier) for earlier in branch[:i])
        if not (reduces or projects):
            kept.append(node)
    return tuple(kept)


def _walk(node: Node, projections: bool) -> Node:
    if isinstance(node, Concat):
        branches = tuple(tuple(_walk(x, projections) for x in strip_branch(b, projections)) for b in node.branches)
        return replace(node, branches=branches)
    if isinstance(node, (Sequential, Repeat)):
        return replace(node, layers=tuple(_walk(x, projections) for x in node.layers))
    if isinstance(node, Residual):
        return replace(node, body=tuple(_walk(x, projections) for x in node.body),
                       shortcut=tuple(_walk(x, projections) for x in node.shortcut))
    return node


def without_reductions(model: Model, *, projections: bool = False) -> Model:
    """`model` with every Inception branch's 1x1 reductions dropped (and the pool projections too, if asked:
    the naive module of Szegedy et al.'s figure 2a, where the pooled input passes through whole)."""
    suffix = "-naive" if projections else "-no-reductions"
    what = ("naive Inception modules (no 1x1 reductions, no pool projections)" if projections
            else "no 1x1 reductions before the 3x3 and 5x5 convolutions (pool projections kept)")
    return replace(model, name=model.name + suffix, description=f"{model.name} with {what}",
                   layers=tuple(_walk(x, projections) for x in model.layers))
