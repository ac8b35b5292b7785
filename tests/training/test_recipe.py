"""The fine-tuning recipe (docs/training.md), CPU-sized on the synthetic world: a baseline
ViT-Ti-8-64 trained briefly, then init-from-clip into sparo-ViT-Ti-8-64 and a read-out-only
stage with the lock flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_utils import checkpoint_state, epoch_losses, run_in_process, train_args

from open_clip_sparo import cli

READOUTS = ("visual.sparo.", "text_sparo.")
STAGE_1_LOCKS = [
    "--lock-image", "--lock-image-unlocked-groups", "1",
    "--lock-text", "--lock-text-freeze-layer-norm", "--lock-text-unlocked-layers", "1",
]  # fmt: skip


def run_args(shards: str, logs: Path, name: str, model: str, lr: float) -> list[str]:
    """2 epochs of 256 samples, batch 32, on the synthetic world's training shards."""
    argv = train_args(shards, logs, name, epochs=2, samples=256)
    for flag, value in (("--model", model), ("--batch-size", "32"), ("--lr", str(lr))):
        argv[argv.index(flag) + 1] = value
    return argv


@pytest.mark.slow
def test_stage_1_trains_the_read_outs_and_leaves_the_backbone_bit_exact(tmp_path: Path) -> None:
    world = tmp_path / "world"
    argv = ["generate", "--out", str(world), "--train-samples", "256", "--eval-samples", "8"]
    assert cli.main([*argv, "--shard-size", "128"]) == 0
    shards = json.loads((world / "manifest.json").read_text())["train"]["shards"]
    assert run_in_process(run_args(shards, tmp_path, "baseline", "ViT-Ti-8-64", 1e-3)) == 0
    baseline = tmp_path / "baseline" / "checkpoints" / "epoch_2.pt"

    stage_1 = run_args(shards, tmp_path, "stage1", "sparo-ViT-Ti-8-64", 5e-3)
    assert run_in_process([*stage_1, "--init-from-clip", str(baseline), *STAGE_1_LOCKS]) == 0

    losses = epoch_losses(tmp_path / "stage1" / "out.log")
    assert sum(losses[1]) / len(losses[1]) < sum(losses[0]) / len(losses[0])  # loss falls
    clip_state = checkpoint_state(baseline)
    trained = checkpoint_state(tmp_path / "stage1" / "checkpoints" / "epoch_2.pt")
    backbone = [k for k in trained if not k.startswith(READOUTS) and k != "logit_scale"]
    assert len(backbone) > 40
    assert all(trained[k].equal(clip_state[k]) for k in backbone)
