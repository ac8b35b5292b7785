"""Fixes for CLIP_benchmark 1.6.2 (the pinned stack), applied by ``sparo eval``, not upstream.

- NumPy 2 rejects the ``float(array)`` in CLIP_benchmark's top-k ``accuracy``: replaced by
  :func:`open_clip_sparo.util.metrics.topk_accuracy`.
- Its linear probe asserts CUDA: on a machine without CUDA it runs on the CPU, without autocast
  (CPU autocast would train the probe in bfloat16).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import torch


class CpuAsCuda(str):
    """The device ``'cpu'`` for torch, equal to ``'cuda'`` for the linear probe's CUDA assert."""

    def __eq__(self, other: object) -> bool:
        return other == "cuda" or str.__eq__(self, other)

    __hash__ = str.__hash__


def linear_probe_on_cpu(
    evaluate: Callable[..., dict[str, Any]], *args: Any, device: str, amp: bool, **kwargs: Any
) -> dict[str, Any]:
    """CLIP_benchmark's linear probe on a machine without CUDA: its ``.cuda()`` calls stay on the
    CPU and autocast is off (CPU autocast would train the probe in bfloat16)."""
    with (
        mock.patch.object(torch.nn.Module, "cuda", lambda module, *_, **__: module),
        mock.patch.object(torch.Tensor, "cuda", lambda tensor, *_, **__: tensor),
    ):
        return evaluate(*args, device=CpuAsCuda("cpu"), amp=False, **kwargs)
