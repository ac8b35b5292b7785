"""Backbone configs for DINO: ViT-S/16 and ViT-B/16 (DINO's sizes) and a tiny CPU pair.

Each SPARO backbone has a class-token twin of the same vision tower: ``sparo-X`` is ``X`` with
``reduce_depth`` blocks removed and the SPARO read-out in place of the class-token output. The
vision towers are OpenCLIP's own configs (``ViT-S-16``, ``ViT-B-16``) and this project's tiny
``ViT-Ti-8-64``, read through OpenCLIP's config registry so that they stay in step with it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
from open_clip.model import CLIPVisionCfg

from ..config import SparoCfg
from ..util.files import read_json
from ..vision import vision_tower_sizes

# the SPARO read-out of the DINO backbones: the CLIP side's defaults (64 slots of 64 dims)
_SPARO_BASE = {"num_slots": 64, "slot_dim": 64, "reduce_depth": 1}
# the tiny pair's read-out, as in the tiny CLIP config sparo-ViT-Ti-8-64
_SPARO_TINY = {"num_slots": 16, "slot_dim": 16, "reduce_depth": 1}

# backbone name -> (OpenCLIP model config whose vision_cfg is the tower, sparo_cfg or None)
_BACKBONES: dict[str, tuple[str, dict[str, Any] | None]] = {
    "ViT-S-16": ("ViT-S-16", None),
    "sparo-ViT-S-16": ("ViT-S-16", _SPARO_BASE),
    "ViT-B-16": ("ViT-B-16", None),
    "sparo-ViT-B-16": ("ViT-B-16", _SPARO_BASE),
    "ViT-Ti-8-64": ("ViT-Ti-8-64", None),
    "sparo-ViT-Ti-8-64": ("ViT-Ti-8-64", _SPARO_TINY),
}


@dataclass(frozen=True)
class BackboneCfg:
    """A DINO backbone: an OpenCLIP vision tower config, plus ``sparo_cfg`` for SPARO.

    ``vision_cfg`` holds the tower's full depth; a SPARO backbone drops
    ``sparo_cfg["reduce_depth"]`` of its blocks. Without ``sparo_cfg`` the backbone is the
    class-token baseline.
    """

    vision_cfg: dict[str, Any]
    sparo_cfg: dict[str, Any] | None = None
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if self.sparo_cfg is not None:
            vision_tower_sizes(CLIPVisionCfg(**self.vision_cfg), SparoCfg.from_dict(self.sparo_cfg))

    def to_dict(self) -> dict[str, Any]:
        return {"vision_cfg": self.vision_cfg, "sparo_cfg": self.sparo_cfg}


def list_backbones() -> list[str]:
    return list(_BACKBONES)


def get_backbone_cfg(name_or_path: str | Path) -> BackboneCfg:
    """A registered backbone by name, or a JSON file ``{"vision_cfg": ..., "sparo_cfg": ...}``."""
    name = str(name_or_path)
    if name in _BACKBONES:
        clip_name, sparo_cfg = _BACKBONES[name]
        vision_cfg = copy.deepcopy(open_clip.get_model_config(clip_name)["vision_cfg"])
        return BackboneCfg(vision_cfg, copy.deepcopy(sparo_cfg), name=name)
    path = Path(name)
    if path.suffix != ".json":
        raise ValueError(
            f"unknown DINO backbone {name!r}; use one of {list_backbones()} or a JSON file "
            '{"vision_cfg": {...}, "sparo_cfg": {...} or null}.'
        )
    cfg = read_json(path, "backbone config")
    if not isinstance(cfg, dict):
        raise ValueError(f"backbone config {path} must hold a JSON object, got {cfg!r}.")
    return backbone_cfg_from_dict(cfg, name=path.stem)


def backbone_cfg_from_dict(cfg: dict[str, Any], name: str = "custom") -> BackboneCfg:
    """Inverse of :meth:`BackboneCfg.to_dict`, with the unknown keys named."""
    unknown = sorted(set(cfg) - {"vision_cfg", "sparo_cfg"})
    if unknown or "vision_cfg" not in cfg:
        raise ValueError(
            "a backbone config needs 'vision_cfg' and may have 'sparo_cfg'; "
            f"got keys {sorted(cfg)}."
        )
    return BackboneCfg(cfg["vision_cfg"], cfg.get("sparo_cfg"), name=name)
