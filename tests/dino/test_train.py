import json
import math
import subprocess
import sys

import pytest
import torch
from data_utils import write_image_folder
from dino_utils import CLASSES, HEAD_ARGS, fails_with, one_thread

from open_clip_sparo.dino.checkpoint import load_checkpoint
from open_clip_sparo.dino.train import build_student, main


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("dino") / "train", CLASSES, per_class=8)


def _argv(images, out, backbone="sparo-ViT-Ti-8-64", epochs=1, batch=4):
    return [
        "--data", str(images),
        "--backbone", backbone,
        "--output-dir", str(out),
        "--epochs", str(epochs),
        "--batch-size", str(batch),
        "--workers", "0",
        "--local-crops-number", "2",
        "--warmup-epochs", "0",
        "--lr", "2e-3",
        "--freeze-last-layer", "0",
        "--log-every", "1",
        "--save-frequency", "1",
        *HEAD_ARGS,
    ]  # fmt: skip


def _distance(a: dict, b: dict) -> float:
    return sum((a[k].float() - b[k].float()).norm().item() for k in a)


@pytest.mark.slow  # two-process DINO training
@pytest.mark.parametrize(
    ("backbone", "head_args"), [("ViT-Ti-8-64", []), ("sparo-ViT-Ti-8-64", ["--head-use-bn"])]
)
def test_two_process_training_moves_student_and_teacher(images, tmp_path, backbone, head_args):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    command += ["2", "-m", "open_clip_sparo.dino.train", *_argv(images, out, backbone), *head_args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]

    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2, 3]  # 32 images / (2 processes x 4)
    assert len({round(r["loss"], 6) for r in records}) == 4  # the loss changes every step
    assert records[0]["momentum"] == 0.996

    checkpoint = load_checkpoint(out)
    assert checkpoint["epoch"] == 1
    assert json.loads((out / "dino_config.json").read_text()) == checkpoint["config"]
    initial = build_student(checkpoint["config"], seed=0).state_dict()
    student, teacher = checkpoint["student"], checkpoint["teacher"]
    assert _distance(student, initial) > 0
    # the teacher left the initial weights towards the student, but lags behind it
    assert 0 < _distance(teacher, initial) < _distance(student, initial)
    assert _distance(teacher, student) < _distance(initial, student)
    assert checkpoint["loss"]["center"].abs().sum() > 0
    if head_args:  # the teacher's head BatchNorm ran on batch statistics, updating its own
        running = [k for k in teacher if k.endswith("running_mean")]
        assert running and all(teacher[k].abs().sum() > 0 for k in running)


@pytest.mark.slow  # DINO training runs
def test_resume_continues_the_run_exactly(images, tmp_path):
    with one_thread():
        assert main(_argv(images, tmp_path / "straight", epochs=2)) == 0
        interrupted = tmp_path / "straight" / "checkpoints" / "epoch_1.pt"
        resumed = [*_argv(images, tmp_path / "resumed", epochs=2), "--resume", str(interrupted)]
        assert main(resumed) == 0
    straight, again = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed")
    assert straight["epoch"] == again["epoch"] == 2
    for network in ("student", "teacher", "loss"):
        for key, value in straight[network].items():
            torch.testing.assert_close(again[network][key], value)


def test_existing_runs_are_never_overwritten(images, tmp_path, capsys):
    out = tmp_path / "run"
    with one_thread():
        assert main(_argv(images, out, backbone="ViT-Ti-8-64", batch=16)) == 0
        before = (out / "checkpoints" / "epoch_latest.pt").stat().st_mtime_ns
        fails_with(capsys, main, _argv(images, out, backbone="ViT-Ti-8-64", batch=16), "--resume")
        fails_with(capsys, main, [*_argv(images, out, batch=16), "--resume", "latest"], "another")
        # a finished run resumed with the same epochs has nothing to do
        assert (
            main([*_argv(images, out, backbone="ViT-Ti-8-64", batch=16), "--resume", "latest"]) == 0
        )
    assert (out / "checkpoints" / "epoch_latest.pt").stat().st_mtime_ns == before


def test_bad_arguments_are_named(images, tmp_path, capsys):
    argv = [*_argv(images, tmp_path / "a"), "--local-crop-size", "20"]
    fails_with(capsys, main, argv, "multiple of the patch size")
    argv = [*_argv(images, tmp_path / "b"), "--precision", "amp", "--device", "cpu"]
    fails_with(capsys, main, argv, "needs a GPU")


def test_bf16_autocast_trains_with_a_finite_loss(images, tmp_path):
    out = tmp_path / "run"
    with one_thread():
        argv = _argv(images, out, backbone="sparo-ViT-Ti-8-64", batch=16)
        assert main([*argv, "--local-crops-number", "0", "--precision", "amp_bf16"]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(math.isfinite(r["loss"]) for r in records)
    assert (
        load_checkpoint(out)["student"]["head.last_layer.parametrizations.weight.original1"].dtype
        == torch.float32
    )


@pytest.mark.slow  # DINO training runs
def test_resume_from_an_older_checkpoint_never_replaces_a_later_latest(images, tmp_path, capsys):
    out = tmp_path / "run"
    with one_thread():
        assert main(_argv(images, out, backbone="ViT-Ti-8-64", epochs=2, batch=16)) == 0
        before = (out / "checkpoints" / "epoch_latest.pt").read_bytes()
        older = out / "checkpoints" / "epoch_1.pt"
        argv = _argv(images, out, backbone="ViT-Ti-8-64", epochs=2, batch=16)
        fails_with(capsys, main, [*argv, "--resume", str(older)], r"epoch_latest\.pt")
    assert (out / "checkpoints" / "epoch_latest.pt").read_bytes() == before


def test_a_non_finite_loss_stops_naming_the_step_and_the_causes(images, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*_argv(images, out, batch=16), "--teacher-temp", "0", "--warmup-teacher-temp", "0"]
    with one_thread():
        line = fails_with(capsys, main, argv, r"the training loss is nan at step 0 \(epoch 0")
    assert "no checkpoint was written yet" in line and "--teacher-temp" in line and "--lr" in line
    assert not (out / "checkpoints").exists()
    assert "the training loss is nan" in (out / "failed.txt").read_text()
    with one_thread():  # the corrected command reuses the folder of the failed run
        assert main(_argv(images, out, batch=16)) == 0
    assert (out / "checkpoints" / "epoch_latest.pt").is_file() and not (out / "failed.txt").exists()


def test_bad_run_config_and_resume_files_are_named(images, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "dino_config.json").write_text("{not json")
    argv = [*_argv(images, out), "--resume", "latest"]
    fails_with(capsys, main, argv, r"settings .*dino_config.json is not valid JSON")
    argv = [*_argv(images, tmp_path / "other"), "--resume", str(tmp_path)]
    fails_with(capsys, main, argv, r"--resume .* is a folder, not a file")
    (tmp_path / "backbone.json").write_text("[1, 2")
    argv = [*_argv(images, tmp_path / "b"), "--backbone", str(tmp_path / "backbone.json")]
    fails_with(capsys, main, argv, r"backbone config .*backbone.json is not valid JSON")
