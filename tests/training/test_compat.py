"""training.compat: fixes of open_clip_train on the pinned stack (CPU DDP, NumPy 2, logging)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from training_utils import restored_logging

from training import compat


def test_zero_shot_accuracy_counts_top_k_hits() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    target = torch.tensor([1, 2, 0, 2])
    assert compat.zero_shot_accuracy(logits, target, topk=(1, 2, 3)) == [1.0, 2.0, 4.0]


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "2.0.0", reason="NumPy 2 behaviour")
def test_upstream_zero_shot_accuracy_fails_on_numpy_2() -> None:
    from open_clip_train.zero_shot import accuracy  # the module attribute outside a run

    assert accuracy is not compat.zero_shot_accuracy
    with pytest.raises(TypeError, match="0-dimensional"):
        accuracy(torch.rand(4, 3), torch.tensor([0, 1, 2, 0]))


def test_cpu_ddp_accepts_device_ids() -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        module = torch.nn.Linear(3, 2)
        with pytest.raises(ValueError, match="device_ids"):
            torch.nn.parallel.DistributedDataParallel(module, device_ids=[torch.device("cpu")])
        ddp = compat.CpuDistributedDataParallel(module, device_ids=[torch.device("cpu")])
        ddp(torch.rand(4, 3)).sum().backward()
        assert ddp.device_ids is None and module.weight.grad is not None
    finally:
        dist.destroy_process_group()


def test_setup_logging_keeps_torch_loggers_quiet() -> None:
    dynamo, other = logging.getLogger("torch._dynamo.utils"), logging.getLogger("tests.other")
    with restored_logging():
        compat.setup_logging(None, logging.INFO)
        assert logging.root.level == other.level == logging.INFO
        assert dynamo.level == logging.WARNING
        compat.setup_logging(None, logging.DEBUG)
        assert dynamo.level == logging.DEBUG
