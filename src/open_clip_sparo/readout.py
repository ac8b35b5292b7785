"""The SPARO read-out: one single-head attention per slot over all output tokens."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from .config import SparoCfg, TowerSizes


class SparoOutput(NamedTuple):
    """Per-slot view of an encoding.

    slots: ``(B, L, V)`` weighted slot vectors; ``slots.flatten(1)`` is the embedding.
    attn: ``(B, L, N)`` each slot's attention over the encoder's output tokens.
    """

    slots: torch.Tensor
    attn: torch.Tensor


class Sparo(nn.Module):
    """Separate-head attention read-out.

    Slot ``l`` has its own learned query ``q_l``; the ``num_slots / num_heads`` slots of a head
    share that head's key (and value) projection. Slots never mix: ``y_l = out(z_l)`` with a
    projection ``out`` shared by all slots.

    The key projection is folded into the queries, so neither keys nor values are materialised
    per token: ``q_l . (W_k h_n + b_k) = (W_k^T q_l) . h_n + q_l . b_k`` and, since attention
    weights sum to one, ``sum_n a_ln (W_v h_n + b_v) = W_v (sum_n a_ln h_n) + b_v``.

    Args:
        width: token width of the encoder.
        num_slots: number of slots ``L``.
        out_dim: per-slot output size (``slot_dim``, plus one weight logit where needed).
        attn_dim: query/key size ``a`` of each head.
        value_dim: value size of each head (``attn_dim`` with ``share_kv``).
        num_heads: number of key/value heads, a divisor of ``num_slots``.
        share_kv: use the keys as values (no separate value projection).
        shared_queries: own no queries; ``forward`` then takes them as an argument.

    The sizes are resolved and checked ones (:meth:`SparoCfg.tower`, :meth:`from_cfg`).
    """

    def __init__(
        self,
        width: int,
        num_slots: int,
        out_dim: int,
        attn_dim: int,
        value_dim: int,
        num_heads: int,
        share_kv: bool = True,
        shared_queries: bool = False,
    ) -> None:
        super().__init__()
        self.num_slots, self.num_heads = num_slots, num_heads
        self.attn_dim, self.value_dim = attn_dim, value_dim
        self.queries = None if shared_queries else nn.Parameter(torch.randn(num_slots, attn_dim))
        self.key = nn.Linear(width, num_heads * attn_dim)
        self.value = None if share_kv else nn.Linear(width, num_heads * value_dim)
        self.out = nn.Linear(value_dim, out_dim)
        self.reset_parameters()

    @classmethod
    def from_cfg(cls, cfg: SparoCfg, sizes: TowerSizes, shared_queries: bool = False) -> Sparo:
        """The read-out ``cfg`` describes for a tower of resolved ``sizes``."""
        return cls(
            width=sizes.width,
            num_slots=cfg.num_slots,
            out_dim=cfg.readout_dim,
            attn_dim=sizes.attn_dim,
            value_dim=sizes.value_dim,
            num_heads=sizes.num_heads,
            share_kv=cfg.share_kv,
            shared_queries=shared_queries,
        )

    def reset_parameters(self) -> None:
        """Initialise as the authors' code: xavier keys/values, zero biases, N(0, 1) queries."""
        if self.queries is not None:
            nn.init.normal_(self.queries)
        for proj in (self.key, self.value):
            if proj is not None:
                nn.init.xavier_uniform_(proj.weight)
                nn.init.zeros_(proj.bias)
        self.out.reset_parameters()
        nn.init.zeros_(self.out.bias)

    def forward(
        self,
        tokens: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        queries: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Read slots out of ``tokens``.

        Args:
            tokens: ``(B, N, width)`` encoder output after its final norm.
            key_padding_mask: ``(B, N)`` bool, True at tokens to ignore.
            queries: ``(num_slots, attn_dim)``, required when the module owns none.

        Returns:
            slots ``(B, L, out_dim)`` and attention ``(B, L, N)`` (rows sum to 1, 0 where masked).
        """
        if queries is None:
            queries = self.queries
        if queries is None:
            raise ValueError("this read-out shares its queries: pass queries= to forward.")
        dtype = tokens.dtype
        heads, per_head = self.num_heads, self.num_slots // self.num_heads
        q = queries.to(dtype).view(heads, per_head, self.attn_dim)
        key_weight = self.key.weight.to(dtype).view(heads, self.attn_dim, -1)
        key_bias = self.key.bias.to(dtype).view(heads, self.attn_dim)

        # fold W_k into the queries: one width-sized vector per slot
        scale = self.attn_dim**-0.5
        token_queries = torch.einsum("hga,haw->hgw", q, key_weight).flatten(0, 1) * scale  # (L, W)
        query_bias = torch.einsum("hga,ha->hg", q, key_bias).flatten() * scale  # (L,)

        logits = torch.matmul(tokens, token_queries.t()).transpose(1, 2)  # (B, L, N)
        softmax_dtype = torch.promote_types(dtype, torch.float32)  # fp16/bf16 -> fp32, fp64 kept
        logits = logits.to(softmax_dtype) + query_bias.to(softmax_dtype)[:, None]
        if key_padding_mask is not None:
            logits = logits.masked_fill(key_padding_mask[:, None, :], -math.inf)
        attn = logits.softmax(dim=-1)  # (B, L, N)

        pooled = torch.matmul(attn.to(dtype), tokens)  # (B, L, W)
        value = self.key if self.value is None else self.value
        value_weight = value.weight.to(dtype).view(heads, self.value_dim, -1)
        value_bias = value.bias.to(dtype).view(heads, 1, self.value_dim)
        pooled = pooled.view(pooled.shape[0], heads, per_head, -1)  # (B, H, L/H, W)
        z = torch.einsum("bhgw,hvw->bhgv", pooled, value_weight) + value_bias
        z = z.flatten(1, 2)  # (B, L, value_dim)
        slots = nn.functional.linear(z, self.out.weight.to(dtype), self.out.bias.to(dtype))
        return slots, attn
