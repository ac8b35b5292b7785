"""OpenCLIP's ViT with the SPARO read-out in place of class-token pooling and projection."""

from __future__ import annotations

import torch
from open_clip.transformer import VisionTransformer
from torch import nn

from .embedding import SlotEmbedding
from .output import SparoOutput
from .readout import Sparo


class SparoVisionTransformer(VisionTransformer):
    """A ``VisionTransformer`` whose pooled output is the SPARO embedding ``(B, L * V)``.

    ``ln_post`` normalises all tokens (class token included) and ``sparo`` attends over all of
    them; there is no ``proj``. Everything else (patch embedding, blocks, intermediates, grad
    checkpointing) is OpenCLIP's.
    """

    sparo: Sparo
    slot_embedding: SlotEmbedding

    @classmethod
    def from_vit(
        cls, vit: VisionTransformer, sparo: Sparo, slot_embedding: SlotEmbedding
    ) -> SparoVisionTransformer:
        """Specialise a ViT built by OpenCLIP's own tower builder, in place.

        OpenCLIP's builder hard-codes the class it instantiates; building with it and then
        specialising keeps every ``CLIPVisionCfg`` option exactly as OpenCLIP interprets it.
        """
        if type(vit) is not VisionTransformer:
            raise ValueError(
                f"SPARO needs OpenCLIP's VisionTransformer tower, got {type(vit).__name__}; "
                "timm and ResNet vision towers are not supported."
            )
        if vit.attn_pool is not None:
            raise ValueError(
                "vision_cfg.attentional_pool conflicts with the SPARO read-out; remove it."
            )
        vit.__class__ = cls
        vit.proj = None
        vit.sparo = sparo
        vit.slot_embedding = slot_embedding
        return vit

    def read_out(self, tokens: torch.Tensor) -> SparoOutput:
        """``(B, N, width)`` tokens after ``ln_post`` -> weighted slots and attention."""
        slots, attn = self.sparo(tokens)
        return SparoOutput(self.slot_embedding(slots), attn)

    def forward_slots(self, image: torch.Tensor) -> SparoOutput:
        """Images ``(B, 3, H, W)`` -> :class:`SparoOutput`."""
        x = self.transformer(self._embeds(image))
        return self.read_out(self.ln_post(x))

    def _pool(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.ln_post(x)  # (B, 1 + HW, width)
        return self.read_out(x).slots.flatten(1), x[:, 1:]  # (B, L * V), patch tokens

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the tower, read-out included; ``unlocked_groups`` counts the read-out as the
        last group (where OpenCLIP counts ``proj``)."""
        if unlocked_groups == 0:
            self.requires_grad_(False)
            return
        # OpenCLIP's lock() unlocks its final group, `proj`, which this tower does not have;
        # let it handle the backbone with one group fewer, then unlock the read-out
        self.proj = nn.Parameter(torch.empty(0))
        try:
            super().lock(unlocked_groups, freeze_bn_stats)
        finally:
            self.proj = None
        self.sparo.requires_grad_(True)

    def no_weight_decay(self) -> set[str]:
        names = set(super().no_weight_decay())
        if self.sparo.queries is not None:
            names.add("sparo.queries")
        return names
