"""DINO backbones: OpenCLIP's ViT with a SPARO read-out, and its class-token twin.

Both take crops of any size that is a multiple of the patch size (DINO's local crops are smaller
than its global crops): the learned positional embeddings are resampled to the crop's patch grid,
as DINO does.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from open_clip.model import CLIPVisionCfg
from open_clip.transformer import VisionTransformer
from timm.layers import resample_abs_pos_embed

from ..config import SparoCfg
from ..openclip_internals import build_vision_tower, expand_token
from ..vision import (
    SparoVisionTransformer,
    check_vision_cfg,
    specialise_vit,
    vision_tower_sizes,
)
from .configs import BackboneCfg


class AnyGridEmbeds:
    """Mixin for OpenCLIP's ``VisionTransformer``: patch and position embeddings for any crop
    size, the positional embeddings of the patches resampled (bicubic) to the crop's grid."""

    def _embeds(self, image: torch.Tensor) -> torch.Tensor:
        x = self.conv1(image)  # (B, width, gh, gw)
        grid = list(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)  # (B, gh * gw, width)
        x = torch.cat([expand_token(self.class_embedding, x.shape[0]).to(x.dtype), x], dim=1)
        positions = resample_abs_pos_embed(
            self.positional_embedding[None], new_size=grid, old_size=list(self.grid_size)
        )[0]  # (1 + gh * gw, width)
        x = x + positions.to(x.dtype)
        return self.ln_pre(self.patch_dropout(x))


class ClassTokenViT(AnyGridEmbeds, VisionTransformer):
    """The class-token baseline: the class token after ``ln_post``, ``(B, width)``, no ``proj``
    (DINO's representation)."""

    @classmethod
    def from_vit(cls, vit: VisionTransformer) -> ClassTokenViT:
        """Specialise a ViT built by OpenCLIP's tower builder, in place."""
        vit = specialise_vit(vit, cls, "the class-token backbone")
        if vit.pool_type != "tok" or vit.final_ln_after_pool:
            raise ValueError(
                "the class-token backbone reads the class token: remove vision_cfg.pool_type "
                "and vision_cfg.final_ln_after_pool."
            )
        vit.proj = None
        vit.output_dim = vit.transformer.width
        return vit


class SparoViT(AnyGridEmbeds, SparoVisionTransformer):
    """The SPARO backbone: ``SparoVisionTransformer`` on crops of any size; its output
    ``(B, L * V)`` is the concatenation of the normalised, weighted slots (unit norm with the
    default ``cont``/``const`` slot embedding)."""


def build_backbone(cfg: BackboneCfg) -> ClassTokenViT | SparoViT:
    """Build the backbone ``cfg`` describes with OpenCLIP's own vision tower builder."""
    vision = CLIPVisionCfg(**cfg.vision_cfg)
    if cfg.sparo_cfg is None:
        check_vision_cfg(vision, "the class-token backbone")
        return ClassTokenViT.from_vit(build_vision_tower(vision.width, vision))
    sparo = SparoCfg.from_dict(cfg.sparo_cfg)
    sizes = vision_tower_sizes(vision, sparo)
    vit = build_vision_tower(sparo.embed_dim, replace(vision, layers=sizes.layers))
    return SparoViT.from_vit(vit, sparo, sizes)
