import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_utils import write_caption_shards, write_image_folder
from dino_utils import CLASSES, HEAD_ARGS
from training_utils import train_args

from open_clip_sparo.util import stop_signal

LINE = "stopped by signal SIGTERM, resume with --resume latest"


def stopped_by_sigterm(command: list[str], started: Path, marker: str) -> str:
    """Run ``command``, send SIGTERM once ``started`` holds ``marker``; its stderr."""
    process = subprocess.Popen(
        command,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (started.is_file() and marker in started.read_text()):
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, f"{marker!r} never appeared in {started}"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGTERM  # a shell reports it as 143
    return stderr


def test_sigterm_is_logged_then_delivered_with_its_default_action(monkeypatch, caplog):
    delivered = []
    monkeypatch.setattr(stop_signal.os, "kill", lambda pid, signum: delivered.append(signum))
    with stop_signal.logged_stop("prog"):
        signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert delivered == [signal.SIGTERM]
    assert [r.getMessage() for r in caplog.records] == [f"prog: {LINE}"]


@pytest.mark.slow  # a Python process importing torch, stopped
def test_sigterm_ends_the_process_as_sigterm(tmp_path):
    started = tmp_path / "started"
    code = (
        "import logging, pathlib, time\n"
        "from open_clip_sparo.util.stop_signal import logged_stop\n"
        "logging.basicConfig()\n"
        "with logged_stop('prog'):\n"
        f"    pathlib.Path({str(started)!r}).write_text('in')\n"
        "    time.sleep(60)\n"
    )
    stderr = stopped_by_sigterm([sys.executable, "-c", code], started, "in")
    assert [line for line in stderr.splitlines() if LINE in line] == [f"WARNING:prog:prog: {LINE}"]


def test_handlers_are_restored_after_the_block():
    before = signal.getsignal(signal.SIGTERM)
    with stop_signal.logged_stop("prog"):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.slow  # a training run, stopped
def test_training_main_logs_the_stop(tmp_path):
    shards = write_caption_shards(tmp_path / "shards", num_shards=2, samples_per_shard=16)
    argv = train_args(shards, tmp_path / "logs", "stopped", epochs=50)
    command = [sys.executable, "-m", "training.main", "--", *argv]
    log = tmp_path / "logs" / "stopped" / "out.log"
    stderr = stopped_by_sigterm(command, log, "Start epoch 0")
    assert f"training.main: {LINE}" in log.read_text()
    assert f"training.main: {LINE}" in stderr


@pytest.mark.slow  # a DINO training run, stopped
def test_dino_training_logs_the_stop(tmp_path):
    images = write_image_folder(tmp_path / "train", CLASSES, per_class=8)
    out = tmp_path / "run"
    argv = ["--data", str(images), "--backbone", "sparo-ViT-Ti-8-64", "--output-dir", str(out)]
    argv += ["--epochs", "50", "--batch-size", "4", "--workers", "0", "--local-crops-number", "2"]
    argv += ["--log-every", "1", *HEAD_ARGS]
    command = [sys.executable, "-m", "open_clip_sparo.dino.train", *argv]
    stderr = stopped_by_sigterm(command, out / "log.jsonl", "loss")
    assert f"python -m open_clip_sparo.dino.train: {LINE}" in stderr
