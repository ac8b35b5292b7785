"""training.hooks: a start that fails before training leaves no run folder behind."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from training_utils import run_in_process, train_args

from training.hooks import SparoOptions, SparoRun


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--model", "sparo-ViT-Ti-8-6"],
            "no model config 'ViT-Ti-8-6' to derive it from; sparo-<name> exists for every "
            "OpenCLIP transformer config (open_clip.list_models()). Did you mean "
            "'sparo-ViT-Ti-8-64'",
        ),
        (["--max-params", "100"], "more than --max-params 100"),
        (
            ["--model-kwargs", '{"sparo_cfg": {"num_slots": 7}}'],
            "cannot be built with these sizes: embed_dim=256 must equal",
        ),
        (
            ["--model-kwargs", '{"vision_cfg": {"width": 100}}'],
            "cannot be built with these sizes: embed_dim must be divisible by num_heads",
        ),
    ],
    ids=["model-typo", "max-params", "slot-sizes", "width"],
)
def test_a_failed_start_leaves_no_run_folder_and_the_fixed_rerun_runs(
    shards: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = train_args(shards, tmp_path, "run")
    argv[argv.index("--epochs") + 1] = "0"  # the rerun only starts
    assert run_in_process([*argv, *extra]) == 1
    assert message in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "run").exists()
    assert run_in_process(argv) == 0  # before: 255, "Experiment already exists"
    assert (tmp_path / "run" / "out.log").is_file()


def test_a_failed_start_in_an_existing_run_folder_keeps_it(shards: str, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    argv = [*train_args(shards, tmp_path, "run"), "--max-params", "100"]
    assert run_in_process(argv) == 1
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_train_one_epoch_passes_every_argument_through() -> None:
    run = SparoRun(SparoOptions())
    told = []
    run.loss_check = SimpleNamespace(
        start_epoch=lambda *epoch_and_steps: told.append(epoch_and_steps),
        end_epoch=lambda: told.append("end"),
    )
    calls = []
    run._next_train_one_epoch = lambda *args, **kwargs: calls.append((args, kwargs)) or "done"
    loader = SimpleNamespace(dataloader=SimpleNamespace(num_batches=8))
    args = ("model", {"train": loader}, "loss", 3, "optimizer", "scaler", "scheduler", None)
    kwargs = {"args": SimpleNamespace(accum_freq=2), "tb_writer": "writer"}
    assert run._train_one_epoch(*args, **kwargs) == "done"
    assert calls == [(args, kwargs)] and run.started
    assert told == [(3, 4), "end"]  # the epoch, its 8 batches / accum_freq 2 steps; its check
