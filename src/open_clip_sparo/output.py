"""Result type of the SPARO encoders."""

from __future__ import annotations

from typing import NamedTuple

import torch


class SparoOutput(NamedTuple):
    """Per-slot view of an encoding.

    slots: ``(B, L, V)`` weighted slot vectors; ``slots.flatten(1)`` is the embedding.
    attn: ``(B, L, N)`` each slot's attention over the encoder's output tokens.
    """

    slots: torch.Tensor
    attn: torch.Tensor
