"""``training.main`` as a torchrun entry that also records the run's peak memory.

    torchrun --nproc_per_node 1 -m benchmarks.training_run RECORD.json -- <training.main args>

Runs ``training.main.main`` unchanged, then writes its exit status and peak memory to
``RECORD.json``: on CUDA ``torch.cuda.max_memory_allocated`` (tensor memory), on CPU the
process's maximum resident set size (a coarser measure, only for the smoke run).
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import torch

from training.main import main as training_main


def peak_bytes() -> tuple[int, str]:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated(), "cuda max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu max RSS"


def main(argv: list[str]) -> int:
    record, train_argv = Path(argv[0]), argv[1:]
    status = training_main(train_argv)
    peak, measure = peak_bytes()
    record.write_text(json.dumps({"status": status, "peak_bytes": peak, "peak_measure": measure}))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
