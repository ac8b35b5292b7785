"""The SPARO read-out as its authors formulate it: keys and values for every token and slot.

The baseline of the read-out benchmark. It uses the parameters of an
:class:`open_clip_sparo.Sparo` and computes the same function, vectorised over slots (no Python
loop, so the comparison is with a fair implementation), but it materialises
``k_{l,n} = W_k[h(l)] h_n + b_k[h(l)]`` (and the values) for every token ``n`` and head ``h``:
``O(width * L * a)`` work per token where the folded read-out needs ``O(width * L)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from open_clip_sparo import Sparo


class NaiveSparo(nn.Module):
    """The read-out of docs/model.md written out literally, sharing the parameters of ``sparo``."""

    def __init__(self, sparo: Sparo) -> None:
        super().__init__()
        self.sparo = sparo

    def forward(
        self,
        tokens: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        queries: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same contract as :meth:`open_clip_sparo.Sparo.forward`."""
        sparo = self.sparo
        queries = sparo.queries if queries is None else queries
        batch, num_tokens, _ = tokens.shape
        heads, per_head = sparo.num_heads, sparo.num_slots // sparo.num_heads
        keys = sparo.key(tokens).view(batch, num_tokens, heads, sparo.attn_dim)  # (B, N, H, a)
        if sparo.value is None:
            values = keys
        else:
            values = sparo.value(tokens).view(batch, num_tokens, heads, sparo.value_dim)

        q = queries.view(heads, per_head, sparo.attn_dim)
        logits = torch.einsum("bnha,hga->bhgn", keys, q) / math.sqrt(sparo.attn_dim)
        logits = logits.flatten(1, 2).float()  # (B, L, N)
        if key_padding_mask is not None:
            logits = logits.masked_fill(key_padding_mask[:, None, :], -math.inf)
        attn = logits.softmax(dim=-1)  # (B, L, N)

        per_head_attn = attn.view(batch, heads, per_head, num_tokens).to(values.dtype)
        z = torch.einsum("bhgn,bnhv->bhgv", per_head_attn, values).flatten(
            1, 2
        )  # (B, L, value_dim)
        return sparo.out(z), attn
