"""Restricting a SPARO model to a subset of its slots (concept selection), and the slots
file that names such a subset."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from .embedding import SlotEmbedding, check_slot_indices
from .readout import Sparo
from .util.files import read_json


@contextmanager
def select_slots(model: nn.Module, indices: Sequence[int]) -> Iterator[nn.Module]:
    """Within the block, every encoding of ``model`` uses only the slots ``indices``.

    The other slots are zero and the weights are renormalised over the chosen ones, so the
    embedding keeps its ``(B, L * V)`` shape and unit norm, and image-text similarity is the mean
    of the chosen slots' cosines. The previous selection is restored on exit. ``model`` may be
    scripted (``torch.jit.script``).
    """
    embeddings = [m for m in model.modules() if _is_a(m, SlotEmbedding)]
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
    return next(m.num_slots for m in model.modules() if _is_a(m, Sparo))


def _is_a(module: nn.Module, cls: type[nn.Module]) -> bool:
    """``module`` is a ``cls``, or a ``cls`` compiled by ``torch.jit.script``."""
    if isinstance(module, torch.jit.RecursiveScriptModule):
        return module.original_name == cls.__name__
    return isinstance(module, cls)


def read_slots(path: str | Path) -> list[int]:
    """Slot indices from ``path``: the ``slots.json`` of ``sparo select`` or a JSON list."""
    path = Path(path)
    content = read_json(path, "the slots file")
    slots = content.get("slots") if isinstance(content, dict) else content
    if not isinstance(slots, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in slots
    ):
        raise ValueError(
            f"{path} must hold a JSON list of slot indices or an object with a 'slots' list "
            "(as `sparo select` writes)."
        )
    return slots
