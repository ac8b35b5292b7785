"""DINO's projection head (Caron et al., 2021, section 3.1 and appendix)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class DinoHead(nn.Module):
    """``g``: a 3-layer MLP (GELU) to a ``bottleneck_dim`` bottleneck, L2 normalisation, and a
    weight-normalised linear layer without bias to ``out_dim`` (K) prototype scores.

    ``use_bn`` puts a BatchNorm after each hidden linear layer (DINO's ``use_bn`` option, off by
    default for ViTs): it takes out what all images of a batch share before the bottleneck.

    With ``norm_last_layer`` the weight norm's magnitude is fixed to 1, so the scores are cosines
    with the K prototypes (DINO's default, which it reports as stabilising training).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        norm_last_layer: bool = True,
        use_bn: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"the DINO head needs at least one layer, got {num_layers}.")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
            layers.append(nn.Linear(d_in, d_out))
            if i < num_layers - 1:
                layers += [nn.BatchNorm1d(d_out), nn.GELU()] if use_bn else [nn.GELU()]
        self.mlp = nn.Sequential(*layers)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0  # (out_dim, 1)
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim)`` -> ``(B, out_dim)``."""
        x = F.normalize(self.mlp(x), dim=-1)  # (B, bottleneck_dim)
        return self.last_layer(x)
