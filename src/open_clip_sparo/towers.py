"""Which OpenCLIP model configs SPARO can read: the one decision, :func:`sparo_support`.

SPARO replaces a tower's pooling with attention over its output tokens, so it needs towers that
produce a token sequence it can reach. Today these are OpenCLIP's own ``VisionTransformer`` and
``TextTransformer`` (every pool type, with or without the causal mask, QuickGELU, any image or
patch size); docs/model.md has the table of supported and refused tower kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def sparo_support(model_cfg: Mapping[str, Any]) -> str | None:
    """``None`` when SPARO can read both towers of the OpenCLIP model config ``model_cfg``, else
    the reason it cannot (one phrase, e.g. "its vision tower is a ResNet")."""
    if "multimodal_cfg" in model_cfg:
        return "it is a CoCa model (a generative text decoder reads its tokens)"
    return vision_support(model_cfg.get("vision_cfg", {})) or text_support(
        model_cfg.get("text_cfg", {})
    )


def vision_support(vision_cfg: Mapping[str, Any]) -> str | None:
    """``None`` for OpenCLIP's own ``VisionTransformer``, else why SPARO cannot read the tower."""
    if vision_cfg.get("timm_model_name"):
        return f"its vision tower is the timm model {vision_cfg['timm_model_name']!r}"
    if not isinstance(vision_cfg.get("layers", 12), int):
        return "its vision tower is a ResNet (no token sequence to read out)"
    if vision_cfg.get("attentional_pool"):
        return "its vision tower ends in an attentional pooler"
    return None


def text_support(text_cfg: Mapping[str, Any]) -> str | None:
    """``None`` for OpenCLIP's own ``TextTransformer``, else why SPARO cannot read the tower."""
    if text_cfg.get("hf_model_name"):
        return f"its text tower is the Hugging Face model {text_cfg['hf_model_name']!r}"
    if text_cfg.get("embed_cls"):
        return "its text tower appends a class token (CoCa's)"
    return None
