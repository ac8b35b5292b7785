"""Sparsemax (Martins & Astudillo, 2016): the Euclidean projection onto the probability simplex."""

from __future__ import annotations

import torch


def sparsemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``argmin_p ||p - x||`` over the simplex along ``dim``: ``max(x - tau, 0)`` with ``tau``
    making each row sum to one. Rows are sparse where ``softmax`` would be dense; the gradient
    (through autograd) is the projection's: ``delta_ij - 1/|S|`` on the support ``S``."""
    z = x.movedim(dim, -1)  # (..., n)
    ranked = z.sort(dim=-1, descending=True).values
    sizes = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)  # k = 1..n
    cumulative = ranked.cumsum(dim=-1)
    # the support is the k largest entries for the largest k with 1 + k * z_(k) > sum_{j<=k} z_(j)
    support = (1 + sizes * ranked > cumulative).sum(dim=-1, keepdim=True)  # (..., 1), >= 1
    tau = (cumulative.gather(-1, support - 1) - 1) / support.to(z.dtype)
    return (z - tau).clamp_min(0).movedim(-1, dim)
