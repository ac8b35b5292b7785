"""Concept search: greedy searches over slot subsets, and the per-slot sums that score a subset
exactly. Torch only: nothing here reads data or draws."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

Term = TypeVar("Term")  # a per-slot term: supports + and -, e.g. SubsetSums


SEARCHES = ("forward", "backward")


@dataclass(frozen=True)
class Step:
    """One step of a subset search: the subset after it, the slot it added or removed (None for
    the starting subset) and the objective's value on the subset."""

    slots: tuple[int, ...]
    changed: int | None
    value: float


def forward_selection(
    num_slots: int,
    slot_term: Callable[[int], Term],
    value: Callable[[Term], float],
    max_slots: int | None = None,
) -> list[Step]:
    """Greedy forward selection: add, one at a time, the slot that maximises ``value`` of the
    summed terms of the chosen slots (the lowest index on ties); one step per added slot."""
    chosen: list[int] = []
    total: Term | None = None
    steps = []
    for _ in range(min(max_slots or num_slots, num_slots)):
        best = None
        for slot in (s for s in range(num_slots) if s not in chosen):
            candidate = slot_term(slot) if total is None else total + slot_term(slot)
            score = value(candidate)
            if best is None or score > best[0]:
                best = (score, slot, candidate)
        score, slot, total = best
        chosen.append(slot)
        steps.append(Step(tuple(sorted(chosen)), slot, score))
    return steps


def backward_elimination(
    num_slots: int,
    slot_term: Callable[[int], Term],
    value: Callable[[Term], float],
    min_slots: int = 1,
) -> list[Step]:
    """Backward elimination: from all slots, remove, one at a time, the slot whose removal
    maximises ``value`` (the lowest index on ties); the first step is the full set."""
    kept = list(range(num_slots))
    total = _sum_terms(kept, slot_term)
    steps = [Step(tuple(kept), None, value(total))]
    while len(kept) > max(min_slots, 1):
        best = None
        for slot in kept:
            candidate = total - slot_term(slot)
            score = value(candidate)
            if best is None or score > best[0]:
                best = (score, slot, candidate)
        score, slot, total = best
        kept.remove(slot)
        steps.append(Step(tuple(kept), slot, score))
    return steps


def best_step(steps: Sequence[Step]) -> Step:
    """The step with the highest value, the one with the fewest slots on ties."""
    return max(steps, key=lambda step: (step.value, -len(step.slots)))


def values_along(
    steps: Sequence[Step], slot_term: Callable[[int], Term], value: Callable[[Term], float]
) -> list[float]:
    """``value`` of every step's subset under other terms (e.g. the report part), updating the
    sum along the chain of steps instead of recomputing it."""
    values = []
    total = _sum_terms(steps[0].slots, slot_term)
    previous = set(steps[0].slots)
    for step in steps:
        current = set(step.slots)
        for slot in current - previous:
            total = total + slot_term(slot)
        for slot in previous - current:
            total = total - slot_term(slot)
        previous = current
        values.append(value(total))
    return values


def split_items(num_items: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random disjoint (selection, report) item indices, ``fraction`` of them for selection."""
    if not 0 < fraction < 1:
        raise ValueError(f"--selection_fraction must be in (0, 1), got {fraction}.")
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed))
    cut = round(num_items * fraction)
    if not 0 < cut < num_items:
        raise ValueError(
            f"{num_items} items cannot be split with fraction {fraction} into two non-empty "
            "parts; use more data or a --selection_split."
        )
    return order[:cut].sort().values, order[cut:].sort().values


def _sum_terms(slots: Sequence[int], slot_term: Callable[[int], Term]) -> Term:
    return functools.reduce(operator.add, map(slot_term, slots))


@dataclass
class SubsetSums:
    """Running sums over a slot subset: ``dots`` of the score's shape, squared norms that
    broadcast against it."""

    dots: torch.Tensor
    image_sq: torch.Tensor
    text_sq: torch.Tensor

    def __add__(self, other: SubsetSums) -> SubsetSums:
        return SubsetSums(
            self.dots + other.dots, self.image_sq + other.image_sq, self.text_sq + other.text_sq
        )

    def __sub__(self, other: SubsetSums) -> SubsetSums:
        return SubsetSums(
            self.dots - other.dots, self.image_sq - other.image_sq, self.text_sq - other.text_sq
        )

    def scores(self) -> torch.Tensor:
        """Cosine similarities on the subset (any item with all chosen slots zero scores 0)."""
        return self.dots / (self.image_sq * self.text_sq).sqrt().clamp_min(1e-12)
