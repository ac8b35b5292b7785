"""Where a text read-out stops: the end of the text, found as OpenCLIP's text pooling finds it.

SPARO's text read-out (and the codebook control's) attends over positions ``0..end`` only:

- ``pool_type`` ``argmax`` or ``eos`` (OpenCLIP's causal CLIP text towers): ``end`` is the
  end-of-text token, the one token OpenCLIP's pooling reads;
- every other pool type (``last``, ``first``, ``none``; CLIPA's bidirectional text tower pools
  ``last``): ``end`` is the last token that is not padding (``pad_id``). Such towers read no
  end-of-text token, so the read-out sees the text's own tokens and never the padding after it:
  in a causal tower the last of them has seen the whole text, in a bidirectional one
  (``no_causal_mask``) every one of them has.
"""

from __future__ import annotations

import torch

# OpenCLIP's text pool types that locate an end-of-text token
EOS_POOL_TYPES = ("argmax", "eos")


def check_eos_pool_type(pool_type: str) -> None:
    """``text_cfg.pool_type`` must locate an end-of-text token (the codebook control's rule)."""
    if pool_type not in EOS_POOL_TYPES:
        raise ValueError(
            f"text_cfg.pool_type={pool_type!r} does not locate an end-of-text token; "
            f"use one of {list(EOS_POOL_TYPES)}."
        )


def eos_positions(
    text: torch.Tensor, pool_type: str, eos_id: int | None, pad_id: int = 0
) -> torch.Tensor:
    """Token ids ``(B, N)`` -> ``(B,)`` position of the end of the text: the end-of-text token
    for ``argmax``/``eos``, else the last token other than ``pad_id`` (0 for an all-padding
    row)."""
    if pool_type == "argmax":
        return text.argmax(dim=-1)
    if pool_type == "eos":
        assert eos_id is not None, "OpenCLIP sets text_eos_id for the 'eos' pool type"
        return (text == eos_id).int().argmax(dim=-1)
    positions = torch.arange(text.shape[1], device=text.device)
    return torch.where(text != pad_id, positions, 0).amax(dim=-1)


def after_eos(
    text: torch.Tensor, pool_type: str, eos_id: int | None, pad_id: int = 0
) -> torch.Tensor:
    """Token ids ``(B, N)`` -> ``(B, N)`` bool, True after the end of the text (the padding a
    text read-out must not see)."""
    positions = torch.arange(text.shape[1], device=text.device)
    return positions[None, :] > eos_positions(text, pool_type, eos_id, pad_id)[:, None]
