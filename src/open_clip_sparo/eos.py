"""Where a text read-out stops: the end-of-text token, found as OpenCLIP's text pooling finds it.

SPARO's text read-out (and the codebook control's) attends over positions ``0..EOS`` only.
"""

from __future__ import annotations

import torch

# OpenCLIP's text pool types that locate an end-of-text token
EOS_POOL_TYPES = ("argmax", "eos", "last")


def check_eos_pool_type(pool_type: str) -> None:
    """``text_cfg.pool_type`` must locate an end-of-text token."""
    if pool_type not in EOS_POOL_TYPES:
        raise ValueError(
            f"text_cfg.pool_type={pool_type!r} does not locate an end-of-text token; "
            f"use one of {list(EOS_POOL_TYPES)}."
        )


def eos_positions(text: torch.Tensor, pool_type: str, eos_id: int | None) -> torch.Tensor:
    """Token ids ``(B, N)`` -> ``(B,)`` position of the end-of-text token."""
    if pool_type == "argmax":
        return text.argmax(dim=-1)
    if pool_type == "eos":
        assert eos_id is not None, "OpenCLIP sets text_eos_id for the 'eos' pool type"
        return (text == eos_id).int().argmax(dim=-1)
    return torch.full_like(text[:, 0], text.shape[1] - 1)


def after_eos(text: torch.Tensor, pool_type: str, eos_id: int | None) -> torch.Tensor:
    """Token ids ``(B, N)`` -> ``(B, N)`` bool, True after the end-of-text token (the padding a
    text read-out must not see)."""
    positions = torch.arange(text.shape[1], device=text.device)
    return positions[None, :] > eos_positions(text, pool_type, eos_id)[:, None]
