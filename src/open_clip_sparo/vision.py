"""OpenCLIP's ViT with the SPARO read-out in place of class-token pooling and projection."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from open_clip.model import CLIPVisionCfg
from open_clip.transformer import VisionTransformer
from torch import nn

from .config import SparoCfg, TowerSizes
from .embedding import SlotEmbedding
from .openclip_internals import VIT_HAS_LAYER_GROUPS
from .output import SparoOutput
from .readout import Sparo
from .towers import vision_support


class SparoVisionTransformer(VisionTransformer):
    """A ``VisionTransformer`` whose pooled output is the SPARO embedding ``(B, L * V)``.

    ``ln_post`` normalises all tokens (class token included) and ``sparo`` attends over all of
    them; there is no ``proj``. Everything else (patch embedding, blocks, intermediates, grad
    checkpointing) is OpenCLIP's.

    It declares no class annotations of its own (``sparo: Sparo`` would be a string TorchScript
    cannot read, and would hide ``VisionTransformer``'s ``Final`` ones from it).
    """

    @classmethod
    def from_vit(
        cls, vit: VisionTransformer, sparo_cfg: SparoCfg, sizes: TowerSizes
    ) -> SparoVisionTransformer:
        """Specialise a ViT built by OpenCLIP's own tower builder, in place: the one way both
        :class:`~open_clip_sparo.SparoCLIP` and the DINO backbone get their SPARO tower.

        OpenCLIP's builder hard-codes the class it instantiates; building with it (``sizes.layers``
        blocks) and then specialising keeps every ``CLIPVisionCfg`` option exactly as OpenCLIP
        interprets it.
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
        vit.sparo = Sparo.from_cfg(sparo_cfg, sizes)
        vit.slot_embedding = SlotEmbedding(sparo_cfg.slot_repr, sparo_cfg.slot_weight)
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

    def layer_groups(self, *args: Any, **kwargs: Any) -> list[tuple[str, list[Any]]]:
        """OpenCLIP's lock groups (where it has ``layer_groups``), the read-out as the last one
        in place of ``proj``."""
        return [*super().layer_groups(*args, **kwargs), ("sparo", [self.sparo])]

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the tower, read-out included; ``unlocked_groups`` counts the read-out as the
        last group (where OpenCLIP counts ``proj``)."""
        if unlocked_groups == 0:
            self.requires_grad_(False)
            return
        if VIT_HAS_LAYER_GROUPS:  # OpenCLIP's lock() freezes by self.layer_groups()
            super().lock(unlocked_groups, freeze_bn_stats)
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


def check_vision_cfg(vision: CLIPVisionCfg) -> None:
    """SPARO reads out of a vision tower :func:`~open_clip_sparo.towers.vision_support` accepts."""
    reason = vision_support(asdict(vision))
    if reason is not None:
        raise ValueError(
            f"SPARO (and its DINO class-token twin) cannot read this vision tower: {reason}; "
            "use OpenCLIP's ViT (no timm_model_name, vision_cfg.layers as one integer, no "
            "attentional_pool)."
        )


def vision_tower_sizes(vision: CLIPVisionCfg, sparo_cfg: SparoCfg) -> TowerSizes:
    """The SPARO read-out sizes of the ViT tower ``vision`` (checked)."""
    check_vision_cfg(vision)
    return sparo_cfg.tower("vision_cfg", vision.width, vision.head_width, vision.layers)
