"""SPARO for DINO: self-distillation with a SPARO read-out, and k-NN / linear evaluation.

The authors published no DINO code; every design choice here is this project's own and is
documented in docs/dino.md. Command-line jobs::

    python -m open_clip_sparo.dino.train ...          # DINO training (torchrun for DDP)
    python -m open_clip_sparo.dino.knn ...            # weighted k-NN on frozen features
    python -m open_clip_sparo.dino.linear_probe ...   # linear probe on frozen features
    python -m open_clip_sparo.dino.select ...         # slots chosen by k-NN accuracy
"""

from .backbone import ClassTokenViT, SparoViT, build_backbone
from .configs import BackboneCfg, get_backbone_cfg, list_backbones
from .head import DinoHead
from .loss import DinoLoss
from .model import DinoModel, update_teacher

__all__ = [
    "BackboneCfg",
    "ClassTokenViT",
    "DinoHead",
    "DinoLoss",
    "DinoModel",
    "SparoViT",
    "build_backbone",
    "get_backbone_cfg",
    "list_backbones",
    "update_teacher",
]
