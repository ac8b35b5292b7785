"""The codebook control's read-out: tokens -> a sparse mixture of codes shared by both towers."""

from __future__ import annotations

import math

import torch
from torch import nn

from .sparsemax import sparsemax


class CodebookQuery(nn.Module):
    """FDT-style read-out (Chen et al., CVPR 2023) with the settings of SPARO's codebook control.

    Each token is mapped to the code space by ``q_map`` (LayerNorm, Linear, GELU, LayerNorm,
    Linear); a code's score is its largest scaled dot product with any token, divided by
    ``temperature``; sparsemax over the codes weights them, and the embedding is the weighted
    sum of the codes::

        s_c = max_n (q_map(h_n) . c) / sqrt(D) / temperature      padded tokens score 0
        out = sum_c sparsemax(s)_c c

    Padded tokens score 0 rather than being left out, as in the authors' code.
    """

    def __init__(self, width: int, code_dim: int, temperature: float) -> None:
        super().__init__()
        self.code_dim = code_dim
        self.temperature = temperature
        self.q_map = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, code_dim),
            nn.GELU(),
            nn.LayerNorm(code_dim),
            nn.Linear(code_dim, code_dim),
        )

    def forward(
        self,
        tokens: torch.Tensor,
        codes: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``tokens (B, N, width)``, ``codes (C, D)``, ``key_padding_mask (B, N)`` True at
        padding -> ``(B, D)``."""
        queries = self.q_map(tokens)  # (B, N, D)
        scores = queries @ codes.to(queries.dtype).T / math.sqrt(self.code_dim)  # (B, N, C)
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[..., None], 0.0)
        pooled = (scores / self.temperature).amax(dim=1)  # (B, C)
        weights = sparsemax(pooled.float(), dim=-1)  # (B, C), rows on the simplex
        return weights.to(codes.dtype) @ codes  # (B, D)
