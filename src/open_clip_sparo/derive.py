"""``sparo-<name>``: the SPARO twin of every OpenCLIP model config SPARO can read.

Which configs: :func:`sparo_support`, the one decision. SPARO replaces a tower's pooling with
attention over its output tokens, so it needs towers that produce a token sequence it can reach:
OpenCLIP's own ``VisionTransformer`` and ``TextTransformer`` (every pool type, with or without the
causal mask, QuickGELU, any image or patch size) and timm's ViT-family trunks behind OpenCLIP's
``TimmModel``; docs/model.md has the table of supported and refused tower kinds.

The twin: a derived config is its base config with a ``sparo_cfg`` block (the paper's defaults,
:class:`~open_clip_sparo.SparoCfg`: 64 slots of 64 dims, one block fewer per tower) and
``embed_dim = num_slots * slot_dim``; a base whose own text transformer OpenCLIP builds through
``custom_text`` (SigLIP, ...) loses that flag, since SPARO models are ``CLIP`` subclasses.
Everything else (towers, image size, tokenizer, ``quick_gelu``, ...) is the base config's, so
OpenCLIP's tokenizer and preprocessing for ``sparo-X`` are ``X``'s. A config file shipped under
the same name wins over the derived one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import timm
from open_clip.model import CLIPVisionCfg

from .config import SparoCfg

DERIVED_PREFIX = "sparo-"
# model config blocks that make a config one of this project's own (SPARO or a control)
_OWN_BLOCKS = ("sparo_cfg", "control_cfg")
# the timm model modules whose trunks are ViTs: patch (or conv-stem) tokens, prefix tokens,
# `blocks`, a final norm, and a pooling `forward_head` that passes the tokens through when
# the pool is ''
TIMM_VIT_MODULES = (
    "timm.models.eva",
    "timm.models.vision_transformer",
    "timm.models.vision_transformer_hybrid",
    "timm.models.vision_transformer_relpos",
    "timm.models.vitamin",
)
# the timm_pool values that pool a ViT's tokens (the custom attention pools are for 2D maps)
TIMM_VIT_POOLS = ("", "avg", "token", "map")


def timm_support(vision_cfg: dict[str, Any]) -> str | None:
    """``None`` when SPARO can read the timm tower of ``vision_cfg`` (a model config's
    ``vision_cfg``; one without ``timm_model_name`` is no timm tower: ``None``), else the
    reason it cannot."""
    name = vision_cfg.get("timm_model_name")
    if not name:
        return None
    if not timm.is_model(name):
        return f"timm has no model named {name!r}"
    module = timm.models.model_entrypoint(name).__module__
    if module not in TIMM_VIT_MODULES:
        return (
            f"its timm tower {name} ({module}) is not a ViT-family transformer; SPARO reads a "
            "sequence of transformer tokens"
        )
    pool = vision_cfg.get("timm_pool", CLIPVisionCfg.timm_pool)
    if pool not in TIMM_VIT_POOLS:
        return f"its timm_pool={pool!r} is a pool of 2D feature maps, not of ViT tokens"
    return None


def sparo_support(model_cfg: Mapping[str, Any]) -> str | None:
    """``None`` when SPARO can read both towers of the OpenCLIP model config ``model_cfg``, else
    the reason it cannot (one phrase, e.g. "its vision tower is a ResNet")."""
    if "multimodal_cfg" in model_cfg:
        return "it is a CoCa model (a generative text decoder reads its tokens)"
    return vision_support(model_cfg.get("vision_cfg", {})) or text_support(
        model_cfg.get("text_cfg", {})
    )


def vision_support(vision_cfg: Mapping[str, Any]) -> str | None:
    """``None`` for OpenCLIP's own ``VisionTransformer`` and timm ViT-family towers, else why SPARO
    cannot read the tower."""
    if vision_cfg.get("timm_model_name"):
        return timm_support(vision_cfg)
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


def derive_config(base_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``sparo-X`` config of ``X``'s model config ``base_cfg`` (``ValueError`` with the
    reason when SPARO cannot read its towers)."""
    reason = sparo_support(base_cfg)
    if reason is not None:
        raise ValueError(f"SPARO cannot read this model: {reason}.")
    sparo = SparoCfg()
    derived = copy.deepcopy(dict(base_cfg))
    derived.pop("custom_text", None)  # SparoCLIP reads OpenCLIP's own text tower at top level
    return {**derived, "embed_dim": sparo.embed_dim, "sparo_cfg": sparo.to_dict()}


def derived_configs(configs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``sparo-<name>`` -> derived config, for every plain config in ``configs`` (name ->
    model config) whose towers SPARO can read."""
    return {
        DERIVED_PREFIX + name: derive_config(cfg)
        for name, cfg in configs.items()
        if not any(block in cfg for block in _OWN_BLOCKS) and sparo_support(cfg) is None
    }


def baseline_name(model_name: str) -> str:
    """The base model ``X`` of ``sparo-X`` (the name itself for any other name)."""
    return model_name.removeprefix(DERIVED_PREFIX)


def missing_model_error(model_name: str, configs: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why the ``sparo-*`` name ``model_name`` is not in ``configs`` (name -> model config), in
    one line; ``None`` for other names (OpenCLIP reports those)."""
    if not model_name.startswith(DERIVED_PREFIX):
        return None
    base = baseline_name(model_name)
    if base not in configs:
        return (
            f"unknown model {model_name!r}: OpenCLIP has no model config {base!r} to derive it "
            f"from; {DERIVED_PREFIX}<name> exists for every OpenCLIP transformer config "
            "(open_clip.list_models())."
        )
    reason = sparo_support(configs[base]) or "it is not a plain OpenCLIP model config"
    return (
        f"model {model_name!r} does not exist: SPARO cannot read {base} because {reason}; "
        f"see the supported tower kinds in docs/model.md."
    )
