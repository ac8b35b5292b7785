"""training.sample_order: the training samples' order follows --seed and the epoch."""

from __future__ import annotations

import json
import os
import subprocess
from argparse import Namespace
from pathlib import Path

import open_clip
import open_clip_train.data
import open_clip_train.main
import pytest
import torch
from training_utils import (
    MODEL,
    data_args,
    one_pass,
    run_in_process,
    subprocess_command,
    train_args,
)

from training.data_faults import SkippedSamples


def train_recording_losses(argv: list[str]) -> int:
    """``training.main.main(argv[1:])``, writing every training loss (exact floats) as JSON to
    the file ``argv[0]``."""
    losses: list[float] = []
    create_loss = open_clip_train.main.create_loss

    def recording_loss(args: Namespace) -> torch.nn.Module:
        loss = create_loss(args)
        loss.register_forward_hook(
            lambda module, inputs, output: losses.append(output["contrastive_loss"].item())
        )
        return loss

    open_clip_train.main.create_loss = recording_loss
    try:
        status = run_in_process(argv[1:])
    finally:
        open_clip_train.main.create_loss = create_loss
    Path(argv[0]).write_text(json.dumps(losses))
    return status


def test_sample_order_follows_the_seed_and_epoch(shards: str) -> None:
    first, counts = one_pass(shards)
    assert one_pass(shards)[0] == first and len(first) == 64 and not any(counts.values())
    assert one_pass(shards, epoch=1)[0] != first
    assert sorted(one_pass(shards, epoch=1)[0]) == sorted(first)


def test_upstream_sample_shuffle_is_not_seeded(shards: str) -> None:
    """The cause sample_order fixes: webdataset seeds the sample shuffle from pid and clock."""
    _, _, preprocess = open_clip.create_model_and_transforms(MODEL)
    tokenizer = open_clip.get_tokenizer(MODEL)
    orders = []
    for _ in range(2):
        # upstream's pipeline, read as data_faults reads it (webdataset 1.x's shard ends)
        with SkippedSamples().counting(rank=0):
            data = open_clip_train.data.get_wds_dataset(
                data_args(shards), preprocess, is_train=True, tokenizer=tokenizer
            )
        dataset = data.dataloader.pipeline[0].dataset
        orders.append([image.sum().item() for image, _ in dataset.iterator1()])
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])


@pytest.mark.slow  # a training run
def test_same_seed_gives_the_same_losses_for_20_steps(shards: str, tmp_path: Path) -> None:
    """One run in a fresh process, one in this one: other pid, clock and hash seed."""
    argv = train_args(shards, tmp_path, "first", epochs=1, samples=80)
    argv[argv.index("--batch-size") + 1] = "4"  # 20 steps
    first = subprocess.run(
        subprocess_command(
            "test_sample_order", "train_recording_losses", str(tmp_path / "first.json"), *argv
        ),
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    argv[argv.index("--name") + 1] = "second"
    assert train_recording_losses([str(tmp_path / "second.json"), *argv]) == 0
    losses = [json.loads((tmp_path / f"{run}.json").read_text()) for run in ("first", "second")]
    assert len(losses[0]) == 20 and len(set(losses[0])) > 1
    assert losses[0] == losses[1]
