"""OpenCLIP's ViT with the SPARO read-out in place of class-token pooling and projection."""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from open_clip.model import CLIPVisionCfg
from open_clip.transformer import VisionTransformer
from torch import nn

from .config import SparoCfg, TowerSizes
from .embedding import SlotEmbedding
from .openclip_internals import VIT_HAS_LAYER_GROUPS
from .output import SparoOutput
from .readout import Sparo

ViT = TypeVar("ViT", bound=VisionTransformer)


def specialise_vit(vit: nn.Module, cls: type[ViT], what: str) -> ViT:
    """Turn a ViT built by OpenCLIP's own tower builder into its subclass ``cls``, in place: the
    one way every model of this package (SPARO, the controls, the backbones built on them) gets
    its vision tower.

    OpenCLIP's builder hard-codes the class it instantiates; building with it and then
    specialising keeps every ``CLIPVisionCfg`` option exactly as OpenCLIP interprets it. ``what``
    names the model in errors (``"SPARO"``, ``"the gap control"``).
    """
    if type(vit) is not VisionTransformer:
        raise ValueError(
            f"{what} needs OpenCLIP's VisionTransformer tower, got {type(vit).__name__}; remove "
            "vision_cfg.timm_model_name and give vision_cfg.layers as one integer."
        )
    if vit.attn_pool is not None:
        raise ValueError(f"vision_cfg.attentional_pool conflicts with {what}; remove it.")
    vit.__class__ = cls
    return vit


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
        """:func:`specialise_vit` of a ViT of ``sizes.layers`` blocks, with the read-out added."""
        vit = specialise_vit(vit, cls, "the SPARO read-out")
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


def check_vision_cfg(vision: CLIPVisionCfg, what: str = "SPARO") -> None:
    """``what`` reads out of OpenCLIP's own ViT tower, given as one integer of ``layers``."""
    if vision.timm_model_name or not isinstance(vision.layers, int):
        raise ValueError(
            f"{what} needs OpenCLIP's ViT vision tower; remove vision_cfg.timm_model_name and "
            "give vision_cfg.layers as one integer."
        )


def vision_tower_sizes(vision: CLIPVisionCfg, sparo_cfg: SparoCfg) -> TowerSizes:
    """The SPARO read-out sizes of the ViT tower ``vision`` (checked)."""
    check_vision_cfg(vision)
    return sparo_cfg.tower("vision_cfg", vision.width, vision.head_width, vision.layers)
