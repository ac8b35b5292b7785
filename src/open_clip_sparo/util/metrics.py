"""The one top-k accuracy, shared by every evaluation (CLIP_benchmark's tasks, DINO's k-NN
and linear probe), and the one rule for doubting a fitted classifier's score (shared or too few
items)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence

import torch


def topk_hits(
    logits: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)
) -> torch.Tensor:
    """``(N, len(topk))`` bool: whether each row's target is among the k highest of its ``(N, C)``
    logits, for each k (one ``topk`` of the largest k, as CLIP_benchmark's ``accuracy``)."""
    top = logits.topk(max(topk), dim=1).indices  # (N, max k)
    hits = top == target.view(-1, 1)
    return torch.stack([hits[:, :k].any(dim=1) for k in topk], dim=1)


def topk_accuracy(
    logits: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)
) -> list[float]:
    """Top-k accuracies (fractions) of ``(N, C)`` logits for integer targets ``(N,)``, as
    CLIP_benchmark's ``accuracy`` computes them (and safe with NumPy 2)."""
    return [hits.sum().item() / len(target) for hits in topk_hits(logits, target, topk).T]


MIN_SPLIT_ITEMS = 50  # fewer fitting or scoring items than this: a score that means little
# two items are the same when their first 32 dims, L2-normalised, agree to 1e-3 each; they are
# found through cells of 0.05 a side (a query within 1e-3 of a cell's side also looks next door)
_KEY_DIMS, _SAME_TO, _CELL = 32, 1e-3, 0.05
_MOST_NEIGHBOUR_DIMS = 10  # a query near more cell sides than this is compared with every item


def shared_items(fit: torch.Tensor, score: torch.Tensor) -> int:
    """How many rows of ``score`` ``(M, D)`` have the features of a row of ``fit`` ``(N, D)``
    (compared after L2 normalisation, to 1e-3, on the first dims): an image in both sets."""
    fit_unit, score_unit = (
        torch.nn.functional.normalize(x[:, :_KEY_DIMS].float(), dim=1) for x in (fit, score)
    )  # (N, K), (M, K)
    rows_of_cell: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for row, cell in enumerate(torch.floor(fit_unit / _CELL).int().tolist()):
        rows_of_cell[tuple(cell)].append(row)
    position = score_unit / _CELL
    cells = torch.floor(position)
    offset = position - cells  # (M, K) in [0, 1): where each query lies in its cell
    near_low, near_high = offset < _SAME_TO / _CELL, offset > 1 - _SAME_TO / _CELL
    shared = 0
    queries = zip(cells.int().tolist(), near_low.tolist(), near_high.tolist(), strict=True)
    for index, (cell, low, high) in enumerate(queries):
        # each dim: its cell, and the next one where the query is within 1e-3 of their side
        steps = [
            (c, c - 1) if lo else (c, c + 1) if hi else (c,)
            for c, lo, hi in zip(cell, low, high, strict=True)
        ]
        if sum(len(step) > 1 for step in steps) > _MOST_NEIGHBOUR_DIMS:
            candidates = fit_unit
        else:
            rows = [row for key in itertools.product(*steps) for row in rows_of_cell.get(key, [])]
            if not rows:
                continue
            candidates = fit_unit[rows]  # (C, K)
        shared += bool(((candidates - score_unit[index]).abs().amax(dim=1) <= _SAME_TO).any())
    return shared


def split_doubts(
    fit: torch.Tensor, score: torch.Tensor, fit_name: str, score_name: str
) -> list[str]:
    """Why a score of a classifier fitted on the features ``fit`` ``(N, D)`` and scored on
    ``score`` ``(M, D)`` may mislead, one sentence each: the two sets share items, or one has
    fewer than :data:`MIN_SPLIT_ITEMS`. ``fit_name``/``score_name`` say where each came from."""
    doubts = []
    shared = shared_items(fit, score)
    if shared:
        doubts.append(
            f"{shared} of the {len(score)} items of {score_name} are also in {fit_name} (the "
            "same images in both?): the score overstates the accuracy on unseen images"
        )
    if min(len(fit), len(score)) < MIN_SPLIT_ITEMS:
        doubts.append(
            f"{fit_name} has {len(fit)} items and {score_name} {len(score)}: with fewer than "
            f"{MIN_SPLIT_ITEMS} the score is mostly noise"
        )
    return doubts
