"""A training checkpoint of the authors' fork as the start of a run here: their shipped
ViT-B-32-SPARO loads through ``--pretrained``; a run starts from a tiny one (a ViT-B-32 run
writes a 1.7 GB checkpoint, and the conversion does not depend on the size)."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch
from data_utils import write_caption_shards
from fork_utils import (
    build,
    embeddings,
    fork_config,
    fork_embeddings,
    save_fork_training_checkpoint,
    shipped_fork_config,
    to_fork_layout,
)
from training_utils import MODEL, checkpoint_state, run_in_process, train_args

from open_clip_sparo.fork.state_dict import from_fork_layout

pytestmark = pytest.mark.slow
FORK_CFG = shipped_fork_config(32)
# the training runs' model (training_utils.MODEL, sparo-ViT-Ti-8-64) in the fork's terms
TINY_FORK_CFG = fork_config(
    embed_dim=256,
    L=16,
    V=16,
    vision_cfg={"image_size": 64, "layers": 4, "width": 128, "head_width": 32, "patch_size": 8},
    text_cfg={"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
)


@pytest.fixture(scope="module")
def fork_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor]:
    """A fork ``epoch_1.pt`` of ViT-B-32-SPARO (random weights) and the fork's embeddings."""
    model = build(FORK_CFG)
    fork = to_fork_layout(model)
    expected = fork_embeddings(model, fork, FORK_CFG)
    path = tmp_path_factory.mktemp("fork") / "epoch_1.pt"
    return save_fork_training_checkpoint(fork, path), expected


def test_fork_checkpoint_loads_through_pretrained(fork_run: tuple[Path, torch.Tensor]) -> None:
    checkpoint, expected = fork_run
    model = open_clip.create_model("sparo-ViT-B-32", pretrained=str(checkpoint)).eval()
    torch.testing.assert_close(embeddings(model, FORK_CFG), expected, rtol=0, atol=1e-5)


def test_fork_checkpoint_starts_a_training_run(tmp_path: Path) -> None:
    """One step at learning rate 0: the run starts from, and saves, the fork's weights."""
    (tmp_path / "fork").mkdir()
    checkpoint = save_fork_training_checkpoint(
        to_fork_layout(build(TINY_FORK_CFG)), tmp_path / "fork" / "epoch_1.pt"
    )
    shards = write_caption_shards(tmp_path / "shards", num_shards=1, samples_per_shard=8)
    argv = train_args(shards, tmp_path / "logs", "fork", samples=8)
    argv[argv.index("--lr") + 1] = "0"
    assert run_in_process([*argv, "--pretrained", str(checkpoint)]) == 0
    log = (tmp_path / "logs" / "fork" / "out.log").read_text()
    assert "Converted a checkpoint of the authors' fork" in log
    saved = checkpoint_state(tmp_path / "logs" / "fork" / "checkpoints" / "epoch_1.pt")
    model = open_clip.create_model(MODEL)
    converted = from_fork_layout(checkpoint_state(checkpoint), model.sparo_cfg)
    assert saved.keys() == converted.keys()
    for key, value in converted.items():
        assert torch.equal(saved[key], value), key
