"""Concept search over SPARO slots: which subset of slots serves a task best (torch only)."""

from .search import (
    SEARCHES,
    Step,
    SubsetSums,
    backward_elimination,
    best_step,
    forward_selection,
    split_items,
    values_along,
)

__all__ = [
    "SEARCHES",
    "Step",
    "SubsetSums",
    "backward_elimination",
    "best_step",
    "forward_selection",
    "split_items",
    "values_along",
]
