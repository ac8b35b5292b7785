"""timm ViT-family vision towers (OpenCLIP's ``TimmModel``) with the SPARO read-out in place of
the trunk's pooling (``map`` attention pool, class token or average), its head and OpenCLIP's
projection."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from open_clip.model import CLIPVisionCfg
from open_clip.timm_model import TimmModel
from torch import nn

from .config import SparoCfg
from .derive import timm_support
from .readout import SparoOutput
from .vision import SlotReadOut


class SparoTimmVision(SlotReadOut, TimmModel):
    """OpenCLIP's ``TimmModel`` whose output is the SPARO embedding ``(B, L * V)``.

    The trunk keeps its first ``layers - reduce_depth`` blocks and its final norm (``norm``,
    or ``fc_norm`` where the trunk normalises after pooling: it then normalises every token);
    its pool is ``''`` so that ``trunk(x)`` is the normalised tokens ``(B, prefix + HW, width)``,
    prefix tokens included, and ``sparo`` attends over all of them. The ``map`` attention pool,
    the trunk's head and OpenCLIP's ``head`` (its projection) are gone.
    """

    block_prefix = "trunk.blocks."
    readout_replaces = ("trunk.attn_pool.", "trunk.head.", "head.")

    @classmethod
    def build_cfg(cls, vision: CLIPVisionCfg, sparo_cfg: SparoCfg) -> CLIPVisionCfg:
        """The config OpenCLIP builds the tower from: the baseline's own, so the trunk's
        modules and names are the baseline's (checked here; blocks are dropped after)."""
        reason = timm_support(asdict(vision))
        if reason:
            raise ValueError(f"SPARO cannot read this vision tower: {reason}.")
        return vision

    @classmethod
    def from_tower(
        cls, tower: TimmModel, vision: CLIPVisionCfg, sparo_cfg: SparoCfg
    ) -> SparoTimmVision:
        """Specialise the ``TimmModel`` OpenCLIP built from :meth:`build_cfg`, in place."""
        trunk = tower.trunk
        sizes = sparo_cfg.tower(
            "vision_cfg", trunk.num_features, trunk.blocks[0].attn.head_dim, len(trunk.blocks)
        )
        # keep blocks 0..layers-1 (timm's own truncation), then drop attention pool and head
        trunk.prune_intermediate_layers([sizes.layers - 1], prune_norm=False, prune_head=False)
        trunk.reset_classifier(0, global_pool="")
        tower.head = nn.Identity()
        tower.__class__ = cls
        tower.attach_read_out(sparo_cfg, sizes)
        return tower

    def forward_slots(self, image: torch.Tensor) -> SparoOutput:
        """Images ``(B, 3, H, W)`` -> :class:`SparoOutput`."""
        return self.read_out(self.trunk(image))  # trunk: (B, prefix + HW, width), normalised

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_slots(image).slots.flatten(1)  # (B, L * V)

    def forward_intermediates(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """As ``TimmModel``'s, with ``image_features`` read out by SPARO."""
        output = super().forward_intermediates(x, *args, **kwargs)
        if "image_features" in output:  # the trunk's normalised tokens
            output["image_features"] = self.read_out(output["image_features"]).slots.flatten(1)
        return output

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the tower, read-out included; ``unlocked_groups`` counts the read-out as the
        last group (where OpenCLIP counts the projection)."""
        super().lock(max(unlocked_groups - 1, 0), freeze_bn_stats)
        self.sparo.requires_grad_(unlocked_groups > 0)

    def no_weight_decay(self) -> set[str]:
        return self.read_out_no_weight_decay()
