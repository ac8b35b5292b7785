"""SPARO for DINO: self-distillation with a SPARO read-out, and k-NN / linear evaluation.

The authors published no DINO code; every design choice here is this project's own and is
documented in docs/dino.md. Command-line jobs::

    python -m open_clip_sparo.dino.train ...          # DINO training (torchrun for DDP)
    python -m open_clip_sparo.dino.evaluation.knn ...            # weighted k-NN, frozen features
    python -m open_clip_sparo.dino.evaluation.linear_probe ...   # linear probe, frozen features
    python -m open_clip_sparo.dino.evaluation.select ...         # slots chosen by k-NN accuracy

Training is this package; its evaluation is :mod:`open_clip_sparo.dino.evaluation`.
"""

from .backbone import ClassTokenViT, SparoViT, build_backbone
from .checkpoint import find_checkpoint, load_backbone, load_checkpoint
from .configs import BackboneCfg, get_backbone_cfg, list_backbones
from .head import DinoHead
from .loss import DinoLoss
from .model import DinoModel, update_teacher
from .train import build_student

__all__ = [
    "BackboneCfg",
    "ClassTokenViT",
    "DinoHead",
    "DinoLoss",
    "DinoModel",
    "SparoViT",
    "build_backbone",
    "build_student",
    "find_checkpoint",
    "get_backbone_cfg",
    "list_backbones",
    "load_backbone",
    "load_checkpoint",
    "update_teacher",
]
