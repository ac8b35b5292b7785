"""Running open_clip_train through ``training.main`` in tests: arguments, processes, logs."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from open_clip.factory import load_state_dict

from training.main import main

MODEL = "sparo-ViT-Ti-8-64"


def train_args(shards: str, logs: Path, name: str, epochs: int = 1, samples: int = 32) -> list[str]:
    """open_clip_train arguments of a tiny CPU run: batch 8 per process, fp32, 1 loader worker."""
    return [
        "--train-data", shards, "--train-num-samples", str(samples),
        "--dataset-type", "webdataset", "--model", MODEL, "--batch-size", "8",
        "--epochs", str(epochs), "--lr", "5e-4", "--warmup", "2", "--wd", "0.1",
        "--precision", "fp32", "--device", "cpu", "--workers", "1",
        "--logs", str(logs), "--name", name, "--log-every-n-steps", "1", "--seed", "0",
    ]  # fmt: skip


@contextmanager
def restored_logging() -> Iterator[None]:
    """Undo open_clip_train's ``setup_logging``: new root handlers, every logger's level."""
    names = list(logging.root.manager.loggerDict)
    levels = {name: logging.getLogger(name).level for name in names}
    root_level, handlers = logging.root.level, list(logging.root.handlers)
    try:
        yield
    finally:
        for handler in set(logging.root.handlers) - set(handlers):
            logging.root.removeHandler(handler)
            handler.close()
        logging.root.setLevel(root_level)
        for name in list(logging.root.manager.loggerDict):
            logging.getLogger(name).setLevel(levels.get(name, logging.NOTSET))


def run_in_process(argv: list[str]) -> int:
    """``training.main.main(argv)`` in this process, with one thread and logging restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with restored_logging():
            return main(argv)
    finally:
        torch.set_num_threads(threads)


def run_torchrun(argv: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    return subprocess.run(
        [*command, "2", "-m", "training.main", "--", *argv],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def epoch_losses(log: Path) -> dict[int, list[float]]:
    """Logged training losses per epoch, from open_clip_train's ``out.log``."""
    losses: dict[int, list[float]] = {}
    for epoch, loss in re.findall(r"Train Epoch: (\d+) .* Loss: ([\d.]+)", log.read_text()):
        losses.setdefault(int(epoch), []).append(float(loss))
    return losses


def checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    return load_state_dict(str(path))  # OpenCLIP's reader: ["state_dict"], "module." stripped
