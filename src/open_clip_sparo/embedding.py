"""From read-out slots to the SPARO embedding: slot representations and weights.

No ``from __future__ import annotations`` here: TorchScript reads the class annotations below as
types, not strings.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import LOGIT_SLOT_WEIGHTS


class SlotEmbedding(nn.Module):
    """Turns read-out slots into weighted slot vectors whose concatenation has unit norm.

    Each slot ``y_l`` becomes a unit vector (``slot_repr``) scaled by a weight ``w_l``
    (``slot_weight``), where the weights over slots have unit L2 norm. With the defaults
    (``cont``, ``const``) ``w_l = sqrt(1 / L)``, so the dot product of two embeddings is the
    mean of the per-slot cosines.

    ``selected`` (set through :func:`open_clip_sparo.select_slots`) restricts the embedding to a
    subset of slots: the other slots get weight zero and the weights are renormalised over the
    subset, keeping the ``(B, L, V)`` shape and the unit norm.
    """

    # True when the read-out must emit one extra weight logit per slot
    needs_logit: torch.jit.Final[bool]
    # a sorted slot subset (a tuple in eager mode, a list once scripted), or None for all slots
    selected: list[int] | None

    def __init__(self, slot_repr: str = "cont", slot_weight: str = "const") -> None:
        """``slot_repr`` and ``slot_weight`` as :class:`~open_clip_sparo.SparoCfg` checked them."""
        super().__init__()
        self.slot_repr = slot_repr
        self.slot_weight = slot_weight
        self.needs_logit = slot_weight in LOGIT_SLOT_WEIGHTS
        self.selected = None

    def forward(self, slots: torch.Tensor) -> torch.Tensor:
        """``(B, L, V [+ 1 logit])`` read-out slots -> ``(B, L, V)`` weighted slot vectors."""
        dtype = slots.dtype
        slots = slots.float()
        logits = slots[..., -1]  # (B, L): the weight logits, read when the read-out emits them
        if self.needs_logit:
            slots = slots[..., :-1]  # (B, L, V)
        if self.slot_repr == "cont":
            vectors = F.normalize(slots, dim=-1)
        elif self.slot_repr == "sem":
            vectors = F.normalize(slots.softmax(dim=-1), dim=-1)
        else:  # sqrtsem; exp(log_softmax / 2) is sqrt(softmax) without sqrt's infinite slope at 0
            vectors = torch.exp(0.5 * slots.log_softmax(dim=-1))

        if self.slot_weight == "const":
            weights = torch.ones_like(slots[..., 0])
        elif self.slot_weight == "norm" and self.slot_repr == "sqrtsem":
            # ||exp(y_l / 2)||, the norm of what sqrtsem normalises (the authors' definition),
            # as exp(logsumexp(y_l) / 2) scaled by a constant so that it cannot overflow
            weights = torch.exp(0.5 * slots.logsumexp(dim=-1).log_softmax(dim=-1))
        elif self.slot_weight == "norm":
            weights = slots.norm(p=2, dim=-1)
        elif self.slot_weight == "softmax":
            weights = logits.softmax(dim=-1)
        else:  # sqrtsoftmax
            weights = torch.exp(0.5 * logits.log_softmax(dim=-1))
        if self.selected is not None:
            weights = weights * self.slot_mask(weights.shape[-1], weights.device)
        weights = F.normalize(weights, dim=-1)  # (B, L), unit norm over (selected) slots
        return (vectors * weights[..., None]).to(dtype)

    def slot_mask(self, num_slots: int, device: torch.device) -> torch.Tensor:
        """``(L,)`` float mask, 1 at the selected slots (at all slots without a selection)."""
        selected = self.selected
        if selected is None:
            return torch.ones(num_slots, device=device)
        mask = torch.zeros(num_slots, device=device)
        mask[list(selected)] = 1.0
        return mask

    def extra_repr(self) -> str:
        return f"slot_repr={self.slot_repr!r}, slot_weight={self.slot_weight!r}"


def check_slot_indices(indices: Sequence[int], num_slots: int) -> tuple[int, ...]:
    """Validate a slot subset; returns it as a sorted tuple."""
    chosen = tuple(sorted(int(i) for i in indices))
    if not chosen:
        raise ValueError("the slot selection is empty; give at least one slot index.")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"the slot selection repeats indices: {list(indices)}.")
    bad = [i for i in chosen if not 0 <= i < num_slots]
    if bad:
        raise ValueError(
            f"slot indices {bad} are out of range; this model has slots 0..{num_slots - 1}."
        )
    return chosen
