"""The DINO network: a backbone and a projection head applied to every crop, and the EMA."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from .backbone import ClassTokenViT, SparoViT
from .head import DinoHead


class DinoModel(nn.Module):
    """``g = head o backbone`` on a list of crops (DINO's multi-crop wrapper): consecutive crops
    of one size go through the backbone as one batch; the outputs are stacked crop-major."""

    def __init__(self, backbone: ClassTokenViT | SparoViT, head: DinoHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops: Sequence[torch.Tensor]) -> torch.Tensor:
        """``len(crops)`` tensors ``(B, 3, H_i, W_i)`` -> ``(len(crops) * B, K)``."""
        features = [
            self.backbone(torch.cat(list(group)))  # (n * B, D) for a run of n same-size crops
            for _, group in itertools.groupby(crops, key=lambda crop: crop.shape[-2:])
        ]
        return self.head(torch.cat(features))


@torch.no_grad()
def update_teacher(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``theta_t <- lambda theta_t + (1 - lambda) theta_s`` (DINO section 3.1), every parameter."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.lerp_(s.detach(), 1.0 - momentum)
