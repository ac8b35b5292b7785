"""The paper's controls, as OpenCLIP CLIPs built from a ``control_cfg`` (docs/model.md).

- :class:`GapCLIP`: the image embedding pools the mean of all output tokens, class included;
- :class:`BottleneckCLIP`: plain CLIP at ``bottleneck_dim``, then ``Linear(-> embed_dim)``
  per tower (SPARO's embedding size without its slots);
- :class:`CodebookCLIP`: both towers read out a sparse mixture of shared codes (FDT-style).

State-dict names follow the authors' fork (``vision_bottleproj``, ``space_dict``,
``img_query_model``, ...), so its checkpoints need no renaming of these parts.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.transformer import VisionTransformer
from torch import nn

from ..eos import after_eos, check_eos_pool_type
from ..model import TextTokens, add_logits
from ..vision import specialise_vit
from .codebook import CodebookQuery
from .config import ControlCfg


class GapVisionTransformer(VisionTransformer):
    """OpenCLIP's ViT pooled by the mean over all output tokens, class token included (the
    fork's ``global_average_pool``; OpenCLIP's ``pool_type='avg'`` leaves the class token out).
    ``ln_post`` comes before or after the mean as ``final_ln_after_pool`` says."""

    @classmethod
    def from_vit(cls, vit: nn.Module) -> GapVisionTransformer:
        """Specialise a ViT built by OpenCLIP's tower builder, in place."""
        vit = specialise_vit(vit, cls, "the gap control")
        if vit.pool_type != "tok":
            raise ValueError(
                f"the GAP control replaces the pooling; remove vision_cfg.pool_type="
                f"{vit.pool_type!r}."
            )
        return vit

    def _global_pool(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.mean(dim=1), x[:, 1:]  # (B, width) over 1 + HW tokens, patch tokens


class GapCLIP(CLIP):
    """CLIP whose vision tower is a :class:`GapVisionTransformer`; the text tower is OpenCLIP's
    (EOS pooling: the fork's text ``global_average_pool`` is not implemented for it)."""

    def __init__(
        self,
        embed_dim: int,
        vision_cfg: Any,
        text_cfg: Any,
        control_cfg: ControlCfg | dict[str, Any],
        **kwargs: Any,
    ) -> None:
        cfg = ControlCfg.from_dict(control_cfg, "gap")
        super().__init__(embed_dim, vision_cfg, text_cfg, **kwargs)
        self.control_cfg = cfg
        self.visual = GapVisionTransformer.from_vit(self.visual)


class _FeaturesFromEncoders:
    """``forward_intermediates`` for models whose features are not OpenCLIP's pooled output:
    the intermediates are OpenCLIP's, the features (and logits) those of ``encode_*``, at the
    cost of a second forward pass."""

    def forward_intermediates(
        self,
        image: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        *,
        normalize: bool = True,
        intermediates_only: bool = False,
        output_logits: bool = False,
        output_logit_scale_bias: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        output = super().forward_intermediates(  # type: ignore[misc]
            image, text, intermediates_only=True, **kwargs
        )
        if intermediates_only:
            return output
        if image is not None:
            output["image_features"] = self.encode_image(image, normalize=normalize)
        if text is not None:
            output["text_features"] = self.encode_text(text, normalize=normalize)
        return add_logits(self, output, output_logits, output_logit_scale_bias)


def _renamed(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``function`` itself (its code, globals, defaults) under the name ``name``."""
    renamed = types.FunctionType(
        function.__code__, function.__globals__, name, function.__defaults__, function.__closure__
    )
    renamed.__kwdefaults__ = function.__kwdefaults__
    return renamed


class BottleneckCLIP(_FeaturesFromEncoders, CLIP):
    """CLIP whose towers project to ``bottleneck_dim``, each followed by
    ``Linear(bottleneck_dim -> embed_dim)`` (``vision_bottleproj``, ``text_bottleproj``)."""

    def __init__(
        self,
        embed_dim: int,
        vision_cfg: Any,
        text_cfg: Any,
        control_cfg: ControlCfg | dict[str, Any],
        **kwargs: Any,
    ) -> None:
        cfg = ControlCfg.from_dict(control_cfg, "bottleneck")
        super().__init__(cfg.bottleneck_dim, vision_cfg, text_cfg, **kwargs)
        self.control_cfg = cfg
        self.embed_dim = embed_dim
        self.vision_bottleproj = nn.Linear(cfg.bottleneck_dim, embed_dim)
        self.text_bottleproj = nn.Linear(cfg.bottleneck_dim, embed_dim)

    # OpenCLIP's encoders under names of their own, which the overrides call: TorchScript
    # compiles a method by its name and cannot compile super() calls
    _clip_encode_image = _renamed(CLIP.encode_image, "_clip_encode_image")
    _clip_encode_text = _renamed(CLIP.encode_text, "_clip_encode_text")

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.vision_bottleproj(self._clip_encode_image(image))  # (B, embed_dim)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.text_bottleproj(self._clip_encode_text(text))  # (B, embed_dim)
        return F.normalize(features, dim=-1) if normalize else features

    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """As OpenCLIP's; the bottleneck projection follows the tower's projection."""
        super().lock_image_tower(unlocked_groups, freeze_bn_stats)
        self.vision_bottleproj.requires_grad_(self.visual.proj.requires_grad)

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        """As OpenCLIP's; the bottleneck projection follows ``text_projection``."""
        super().lock_text_tower(unlocked_layers, freeze_layer_norm)
        self.text_bottleproj.requires_grad_(self.text_projection.requires_grad)


class CodebookCLIP(TextTokens, _FeaturesFromEncoders, CLIP):
    """CLIP whose towers end in a :class:`CodebookQuery` over shared codes ``space_dict``
    ``(num_codes, embed_dim)``, N(0, 1) init: the image read-out sees the patch tokens, the text
    read-out positions 0..EOS, both straight from the last block (no ``ln_post`` /
    ``ln_final``, no projections), as in the authors' code."""

    def __init__(
        self,
        embed_dim: int,
        vision_cfg: Any,
        text_cfg: Any,
        control_cfg: ControlCfg | dict[str, Any],
        **kwargs: Any,
    ) -> None:
        cfg = ControlCfg.from_dict(control_cfg, "codebook")
        super().__init__(embed_dim, vision_cfg, text_cfg, **kwargs)
        specialise_vit(self.visual, VisionTransformer, "the codebook control")  # checked only
        check_eos_pool_type(self.text_pool_type)
        self.control_cfg = cfg
        self.visual.proj = None
        self.visual.ln_post = nn.Identity()
        self.text_projection = None
        self.ln_final = nn.Identity()
        self.space_dict = nn.Parameter(torch.randn(cfg.num_codes, embed_dim))
        self.img_query_model = CodebookQuery(
            self.visual.transformer.width, embed_dim, cfg.temperature
        )
        self.txt_query_model = CodebookQuery(self.transformer.width, embed_dim, cfg.temperature)

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        tokens = self.visual.transformer(self.visual._embeds(image))  # (B, 1 + HW, width)
        features = self.img_query_model(tokens[:, 1:], self.space_dict)  # (B, embed_dim)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = self.transformer(self._text_tokens(text), attn_mask=self.attn_mask)  # (B, N, width)
        padding = after_eos(text, self.text_pool_type, self.text_eos_id)  # (B, N)
        features = self.txt_query_model(x, self.space_dict, padding)  # (B, embed_dim)
        return F.normalize(features, dim=-1) if normalize else features

    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        raise ValueError(
            "the codebook control's codes belong to both towers, so it cannot lock one tower; "
            "drop --lock-image / --lock-text."
        )

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        self.lock_image_tower()


CONTROL_CLASSES: dict[str, type[CLIP]] = {
    "gap": GapCLIP,
    "bottleneck": BottleneckCLIP,
    "codebook": CodebookCLIP,
}


def build_control(*args: Any, control_cfg: ControlCfg | dict[str, Any], **kwargs: Any) -> CLIP:
    """The control model ``control_cfg.kind`` names, from a model config's keys."""
    cfg = ControlCfg.from_dict(control_cfg)
    return CONTROL_CLASSES[cfg.kind](*args, control_cfg=cfg, **kwargs)
