"""Running open_clip_train through ``training.main`` in tests: arguments, processes, logs."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import open_clip
import torch
from open_clip.factory import load_state_dict

from training.data import WebDatasetTraining
from training.main import main

MODEL = "sparo-ViT-Ti-8-64"
TESTS = Path(__file__).parent


def subprocess_command(module: str, function: str, *args: str) -> list[str]:
    """Run ``function(list_of_args)`` of the test module ``module`` of tests/training in a fresh
    Python process."""
    code = (
        f"import sys; sys.path[:0] = [{str(TESTS / 'training')!r}, {str(TESTS)!r}]; "
        f"import {module} as t; "
        f"sys.exit(t.{function}(sys.argv[1:]))"
    )
    return [sys.executable, "-c", code, *args]


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


def data_args(shards: str, **overrides: object) -> Namespace:
    """The arguments open_clip_train's ``get_wds_dataset`` reads for training data."""
    args = dict(
        train_data=shards, train_num_samples=32, dataset_resampled=False, seed=0, rank=0,
        world_size=1, workers=0, batch_size=1, train_data_upsampling_factors=None,
    )  # fmt: skip
    return Namespace(**{**args, **overrides})


def one_pass(shards: str, epoch: int = 0) -> tuple[list[float], dict[str, int]]:
    """One pass over ``shards`` through the training pipeline (without augmentation): the image
    sums of the samples in order, and the skips counted."""
    _, _, preprocess = open_clip.create_model_and_transforms(MODEL)
    training = WebDatasetTraining()
    data = training.get_wds_dataset(
        data_args(shards), preprocess, is_train=True, tokenizer=open_clip.get_tokenizer(MODEL)
    )
    data.set_epoch(epoch)
    dataset = data.dataloader.pipeline[0].dataset
    order = [image.sum().item() for image, _ in dataset.iterator1()]  # batches of one
    return order, training.skipped.take_counts()
