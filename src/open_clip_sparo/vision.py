"""OpenCLIP's ViT with the SPARO read-out in place of class-token pooling and projection, and
the read-out half every SPARO vision tower shares."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, TypeVar

import torch
from open_clip.model import CLIPVisionCfg
from open_clip.transformer import VisionTransformer
from torch import nn

from .config import SparoCfg, TowerSizes
from .derive import vision_support
from .embedding import SlotEmbedding
from .openclip_internals import VIT_HAS_LAYER_GROUPS
from .readout import Sparo, SparoOutput

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


class SlotReadOut:
    """The read-out half every SPARO vision tower shares: ``sparo`` (a :class:`Sparo`) and
    ``slot_embedding``, attached to a tower OpenCLIP built.

    A tower class also says where its blocks are and what the read-out replaces, relative to
    the tower, so that converting a plain CLIP checkpoint needs no per-tower branches:
    ``block_prefix`` (the blocks' state-dict prefix) and ``readout_replaces`` (the prefixes of
    the pooling and projection tensors a plain CLIP checkpoint has and SPARO drops). No class
    annotations here: TorchScript would read them in place of the tower's own.
    """

    def attach_read_out(self, sparo_cfg: SparoCfg, sizes: TowerSizes) -> None:
        """Add the read-out ``sparo_cfg`` describes for a tower of resolved ``sizes``."""
        self.sparo = Sparo.from_cfg(sparo_cfg, sizes)
        self.slot_embedding = SlotEmbedding(sparo_cfg.slot_repr, sparo_cfg.slot_weight)

    def read_out(self, tokens: torch.Tensor) -> SparoOutput:
        """``(B, N, width)`` tokens after the tower's final norm -> weighted slots and
        attention."""
        slots, attn = self.sparo(tokens)
        return SparoOutput(self.slot_embedding(slots), attn)

    def read_out_no_weight_decay(self) -> set[str]:
        """The read-out's parameters without weight decay: its queries."""
        return set() if self.sparo.queries is None else {"sparo.queries"}


class SparoVisionTransformer(SlotReadOut, VisionTransformer):
    """A ``VisionTransformer`` whose pooled output is the SPARO embedding ``(B, L * V)``.

    ``ln_post`` normalises all tokens (class token included) and ``sparo`` attends over all of
    them; there is no ``proj``. Everything else (patch embedding, blocks, intermediates, grad
    checkpointing) is OpenCLIP's.

    It declares no class annotations of its own (``sparo: Sparo`` would be a string TorchScript
    cannot read, and would hide ``VisionTransformer``'s ``Final`` ones from it).
    """

    block_prefix = "transformer.resblocks."
    readout_replaces = ("proj",)

    @classmethod
    def build_cfg(cls, vision: CLIPVisionCfg, sparo_cfg: SparoCfg) -> CLIPVisionCfg:
        """The config OpenCLIP builds the tower from: ``reduce_depth`` blocks shorter."""
        return replace(vision, layers=vision_tower_sizes(vision, sparo_cfg).layers)

    @classmethod
    def from_tower(
        cls, vit: VisionTransformer, vision: CLIPVisionCfg, sparo_cfg: SparoCfg
    ) -> SparoVisionTransformer:
        """Specialise the tower OpenCLIP built from :meth:`build_cfg`, in place."""
        return cls.from_vit(vit, sparo_cfg, vision_tower_sizes(vision, sparo_cfg))

    @classmethod
    def from_vit(
        cls, vit: VisionTransformer, sparo_cfg: SparoCfg, sizes: TowerSizes
    ) -> SparoVisionTransformer:
        """:func:`specialise_vit` of a ViT of ``sizes.layers`` blocks, with the read-out added."""
        vit = specialise_vit(vit, cls, "the SPARO read-out")
        vit.proj = None
        vit.attach_read_out(sparo_cfg, sizes)
        return vit

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
        return {*super().no_weight_decay(), *self.read_out_no_weight_decay()}


def check_vision_cfg(vision: CLIPVisionCfg, what: str = "SPARO") -> None:
    """``what`` reads out of OpenCLIP's own ViT tower, one that
    :func:`~open_clip_sparo.derive.vision_support` accepts and no timm tower."""
    reason = vision_support(asdict(vision))
    if reason is None and vision.timm_model_name:
        reason = f"it is the timm tower {vision.timm_model_name!r}"
    if reason is not None:
        raise ValueError(
            f"{what} cannot read this vision tower: {reason}; use OpenCLIP's ViT (no "
            "timm_model_name, vision_cfg.layers as one integer, no attentional_pool)."
        )


def vision_tower_sizes(vision: CLIPVisionCfg, sparo_cfg: SparoCfg) -> TowerSizes:
    """The SPARO read-out sizes of the ViT tower ``vision`` (checked)."""
    check_vision_cfg(vision)
    return sparo_cfg.tower("vision_cfg", vision.width, vision.head_width, vision.layers)
