"""training.loss_check: a non-finite loss stops the run and keeps the last good checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training_utils import checkpoint_state, run_in_process, train_args


@pytest.mark.slow
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    shards: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the reported case: exp(100) overflows, the loss is NaN from the first step
    argv = [*train_args(shards, tmp_path, "nan"), "--model-kwargs", '{"init_logit_scale": 100}']
    assert run_in_process(argv) == 1  # before: 0, and an epoch_1.pt of NaN tensors
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("training.main: error: the training loss is nan at step 0 (epoch 0")
    assert "no checkpoint was written yet" in error and "init_logit_scale" in error
    assert "--lr" in error and "--precision" in error
    assert not list((tmp_path / "nan" / "checkpoints").iterdir())
    assert "the training loss is nan" in (tmp_path / "nan" / "out.log").read_text()

    # a good epoch, then a learning rate that breaks the weights in the next one
    argv = train_args(shards, tmp_path, "later", epochs=1)
    assert run_in_process(argv) == 0
    argv[argv.index("--epochs") + 1] = "2"
    argv[argv.index("--lr") + 1] = "1e30"
    assert run_in_process([*argv, "--resume", "latest"]) == 1
    error = capsys.readouterr().err.splitlines()[-1]
    kept = tmp_path / "later" / "checkpoints" / "epoch_1.pt"
    assert "(epoch 1, batch 2 of 4)" in error and f"the last good checkpoint is {kept}" in error
    assert not (kept.parent / "epoch_2.pt").exists()
    assert all(torch.isfinite(v).all() for v in checkpoint_state(kept).values())


@pytest.mark.slow  # two training runs
@pytest.mark.parametrize("resume", [[], ["--resume", "latest"]], ids=["rerun", "resume-latest"])
def test_a_run_stopped_at_step_0_does_not_block_its_corrected_rerun(
    shards: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], resume: list[str]
) -> None:
    argv = train_args(shards, tmp_path, "nan")
    assert run_in_process([*argv, "--model-kwargs", '{"init_logit_scale": 100}']) == 1
    assert "the training loss is nan at step 0" in capsys.readouterr().err
    # before: "already holds a run", and with --resume latest: "describes another model"
    assert run_in_process([*argv, *resume]) == 0
    run = tmp_path / "nan"
    assert (run / "checkpoints" / "epoch_1.pt").is_file()
    assert '"init_logit_scale": 100' not in (run / "open_clip_config.json").read_text()
    if not resume:  # open_clip_train wants a new out.log: the failed run's is kept beside it
        assert "the training loss is nan" in (run / "out.failed-1.log").read_text()
