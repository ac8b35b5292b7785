"""Restricting a SPARO model to a subset of its slots (concept selection)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import nn

from .embedding import SlotEmbedding, check_slot_indices
from .readout import Sparo


@contextmanager
def select_slots(model: nn.Module, indices: Sequence[int]) -> Iterator[nn.Module]:
    """Within the block, every encoding of ``model`` uses only the slots ``indices``.

    The other slots are zero and the weights are renormalised over the chosen ones, so the
    embedding keeps its ``(B, L * V)`` shape and unit norm, and image-text similarity is the mean
    of the chosen slots' cosines. The previous selection is restored on exit.
    """
    embeddings = [m for m in model.modules() if isinstance(m, SlotEmbedding)]
    if not embeddings:
        raise ValueError(f"{type(model).__name__} has no SPARO slots to select from.")
    num_slots = _num_slots(model)
    chosen = check_slot_indices(indices, num_slots)
    previous = [m.selected for m in embeddings]
    for m in embeddings:
        m.selected = chosen
    try:
        yield model
    finally:
        for m, sel in zip(embeddings, previous, strict=True):
            m.selected = sel


def _num_slots(model: nn.Module) -> int:
    return next(m.num_slots for m in model.modules() if isinstance(m, Sparo))
