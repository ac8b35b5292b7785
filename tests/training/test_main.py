"""training.main: SPARO runs through open_clip_train on tiny WebDataset shards, on CPU."""

from __future__ import annotations

import errno
import json
import math
import re
import sys
import types
from pathlib import Path

import numpy as np
import open_clip
import open_clip_train.zero_shot
import pytest
import torch
from data_utils import (
    add_code_running_files,
    shard_paths,
    write_caption_shards,
    write_image_folder,
)
from training_utils import (
    MODEL,
    checkpoint_state,
    epoch_losses,
    run_in_process,
    run_torchrun,
    train_args,
)

from open_clip_sparo.cli.init_from_clip import save_state_dict
from open_clip_sparo.util.run_folder import FAILURE_NAME
from training.main import split_args
from training.run_config import run_config
from training.slot_stats import SlotStatsLogger

BASELINE = "ViT-Ti-8-64"
ZERO_SHOT_CLASSES = {
    "0_red": "red",
    "1_green": "green",
    "2_blue": "blue",
    "3_yellow": "yellow",
    "4_purple": "purple",
    "5_cyan": "cyan",
}
VISION_TOWER = ("visual.",)
TEXT_TOWER = (
    "transformer.",
    "token_embedding.",
    "positional_embedding",
    "ln_final.",
    "text_sparo.",
)
READOUTS = ("visual.sparo.", "text_sparo.")


@pytest.fixture(scope="module")
def trained_run(shards: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process, 2 epochs, zero-shot on a tiny ImageFolder after each, slot stats every 2
    steps to the log and TensorBoard."""
    root = tmp_path_factory.mktemp("run")
    val = write_image_folder(root / "val", dict(ZERO_SHOT_CLASSES))
    argv = [
        *train_args(shards, root / "logs", "one", epochs=2, samples=64),
        "--imagenet-val", str(val), "--zeroshot-frequency", "1",
        "--report-to", "tensorboard", "--log-slot-stats", "2",
    ]  # fmt: skip
    # zero-shot over our colours instead of ImageNet's 1000 classes x 80 templates
    with pytest.MonkeyPatch.context() as mp:
        classnames = tuple(f"{colour} shape" for colour in ZERO_SHOT_CLASSES.values())
        mp.setattr(open_clip_train.zero_shot, "IMAGENET_CLASSNAMES", classnames)
        mp.setattr(open_clip_train.zero_shot, "OPENAI_IMAGENET_TEMPLATES", ("a {}",))
        assert run_in_process(argv) == 0
    return root / "logs" / "one"


@pytest.mark.slow  # reads a two-epoch training run (trained_run)
def test_one_process_loss_falls_over_two_epochs(trained_run: Path) -> None:
    losses = epoch_losses(trained_run / "out.log")
    assert sorted(losses) == [0, 1] and len(losses[0]) == len(losses[1]) == 8
    assert np.mean(losses[1]) < np.mean(losses[0]) - 0.05
    assert losses[1][-1] < losses[0][0]
    checkpoints = sorted(p.name for p in (trained_run / "checkpoints").glob("*.pt"))
    assert checkpoints == ["epoch_1.pt", "epoch_2.pt"]


@pytest.mark.slow  # reads a two-epoch training run (trained_run)
def test_checkpoint_loads_through_open_clip(trained_run: Path) -> None:
    checkpoint = trained_run / "checkpoints" / "epoch_2.pt"
    model = open_clip.create_model(MODEL, pretrained=str(checkpoint))
    saved = checkpoint_state(checkpoint)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    image = torch.rand(2, 3, 64, 64)
    assert model.encode_image(image).shape == (2, 16 * 16)


@pytest.mark.slow  # reads a two-epoch training run (trained_run)
def test_run_folder_records_the_built_model(trained_run: Path) -> None:
    config = json.loads((trained_run / "open_clip_config.json").read_text())
    model = open_clip.create_model(MODEL)
    assert config == run_config(MODEL, model, model.model_cfg)


@pytest.mark.slow  # reads a two-epoch training run (trained_run)
def test_zero_shot_evaluation_inside_training(trained_run: Path) -> None:
    results = [
        json.loads(line)
        for line in (trained_run / "checkpoints" / "results.jsonl").read_text().splitlines()
    ]
    assert len(results) == 2  # after each epoch
    for result in results:
        top1, top5 = result["imagenet-zeroshot-val-top1"], result["imagenet-zeroshot-val-top5"]
        assert 0.0 <= top1 <= top5 <= 1.0
        # 24 images: accuracies are multiples of 1/24
        assert round(top1 * 24, 6).is_integer() and round(top5 * 24, 6).is_integer()


@pytest.mark.slow  # reads a two-epoch training run (trained_run)
def test_slot_stats_reach_log_jsonl_and_tensorboard(trained_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records = [
        json.loads(line) for line in (trained_run / "slot_stats.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records] == list(range(0, 16, 2))
    num_patches = (64 // 8) ** 2 + 1
    for record in records:
        assert len(record["image_attn_entropy"]) == len(record["slot_agreement"]) == 16
        assert all(0 < h <= math.log(num_patches) + 1e-5 for h in record["image_attn_entropy"])
        assert all(0 <= h <= math.log(32) + 1e-5 for h in record["text_attn_entropy"])
        assert all(-1 - 1e-6 <= a <= 1 + 1e-6 for a in record["slot_agreement"])
    log = (trained_run / "out.log").read_text()
    assert "Slot stats step 14: slot_agreement per slot:" in log
    events = EventAccumulator(str(trained_run / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "slots/image_attn_entropy_mean" in tags and "slots/slot_agreement/015" in tags
    steps = [e.step for e in events.Scalars("slots/text_attn_entropy_mean")]
    assert steps == list(range(0, 16, 2))


def test_slot_stats_reach_wandb_at_the_logged_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[dict[str, float], int]] = []
    wandb = types.ModuleType("wandb")
    wandb.log = lambda data, step: calls.append((data, step))
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    torch.manual_seed(0)
    model = open_clip.create_model(MODEL)
    images = torch.randn(2, 3, 64, 64)
    text = open_clip.get_tokenizer(MODEL)(["a red square", "a blue circle"])
    stats = SlotStatsLogger(model, every=2, run_dir=tmp_path, use_wandb=True)
    stats.start_epoch(epoch=1, steps_per_epoch=3)  # steps 3, 4, 5, 6
    for _ in range(4):
        model(images, text)
    assert [step for _, step in calls] == [4, 6]
    names = ("image_attn_entropy", "text_attn_entropy", "slot_agreement")
    expected = {f"slots/{name}_mean" for name in names}
    expected |= {f"slots/{name}/{slot:03d}" for name in names for slot in range(16)}
    records = [
        json.loads(line) for line in (tmp_path / "slot_stats.jsonl").read_text().splitlines()
    ]
    for (scalars, step), record in zip(calls, records, strict=True):
        assert set(scalars) == expected and record["step"] == step
        for name in names:
            assert scalars[f"slots/{name}/015"] == record[name][15]
            assert scalars[f"slots/{name}_mean"] == pytest.approx(np.mean(record[name]))


@pytest.mark.slow  # reads a two-epoch training run (trained_run)
def test_existing_run_is_refused_before_anything_is_written(
    trained_run: Path, shards: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (trained_run / "out.log").read_text()
    argv = ["--", *train_args(shards, trained_run.parent, trained_run.name)]
    assert run_in_process(argv) == 1  # open_clip_train: -1, "Experiment already exists"
    assert "already holds a run (its out.log); add --resume latest" in capsys.readouterr().err
    assert (trained_run / "out.log").read_text() == before


def test_validation_shards_are_read_without_unpickling_their_files(
    shards: str, tmp_path: Path
) -> None:
    """open_clip_train's validation loader decodes every file of a sample: WebDataset's default
    decoder would unpickle a ``pyd`` file, running code from the data."""
    val = write_caption_shards(tmp_path / "val", num_shards=1, samples_per_shard=8)
    add_code_running_files(shard_paths(tmp_path / "val")[0], tmp_path / "code-ran")
    argv = [*train_args(shards, tmp_path, "run"), "--val-data", val, "--val-num-samples", "8"]
    assert run_in_process(argv) == 0
    assert "Eval Epoch: 1" in (tmp_path / "run" / "out.log").read_text()
    assert not (tmp_path / "code-ran").exists()


@pytest.mark.slow  # torchrun, two processes
def test_two_processes_train_then_resume_latest(shards: str, tmp_path: Path) -> None:
    argv = train_args(shards, tmp_path, "ddp", epochs=2, samples=64)
    first = run_torchrun(argv)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "ddp"
    losses = epoch_losses(run / "out.log")
    assert sorted(losses) == [0, 1] and len(losses[0]) == 4  # 64 samples / (2 x 8)
    assert np.mean(losses[1]) < np.mean(losses[0])
    assert "TorchDynamo" not in first.stderr  # compat.setup_logging keeps torch quiet
    epoch_2 = checkpoint_state(run / "checkpoints" / "epoch_2.pt")

    argv[argv.index("--epochs") + 1] = "3"
    second = run_torchrun([*argv, "--resume", "latest"])
    assert second.returncode == 0, second.stderr[-3000:]
    log = (run / "out.log").read_text()
    assert re.search(r"resuming checkpoint '.*epoch_2\.pt' \(epoch 2\)", log)
    assert sorted(epoch_losses(run / "out.log")) == [0, 1, 2]
    assert log.count("Start epoch 2") == 1 and log.count("Start epoch 0") == 1
    epoch_3 = checkpoint_state(run / "checkpoints" / "epoch_3.pt")
    assert epoch_3.keys() == epoch_2.keys()
    assert not torch.equal(epoch_3["visual.sparo.queries"], epoch_2["visual.sparo.queries"])
    model = open_clip.create_model(MODEL, pretrained=str(run / "checkpoints" / "epoch_3.pt"))
    assert torch.equal(model.logit_scale, epoch_3["logit_scale"])


def test_max_params_aborts_with_count_and_limit(
    shards: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    count = sum(p.numel() for p in open_clip.create_model(MODEL).parameters())
    argv = [*train_args(shards, tmp_path, "big"), "--max-params", str(count - 1)]
    assert run_in_process(argv) == 1
    error = capsys.readouterr().err
    assert f"{MODEL} has {count:,} parameters, more than --max-params {count - 1:,}" in error
    assert not (tmp_path / "big").exists()  # the failed start's run folder is removed


def test_a_place_that_becomes_unwritable_during_training_is_named_in_one_line_everywhere(
    shards: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The console, ``out.log`` and the run's failure record all give the path and what to do,
    never the raw ``[Errno 13]``."""
    open_path = Path.open

    def refused(self: Path, *args: object, **kwargs: object) -> object:
        if self.name == "slot_stats.jsonl":  # as the kernel refuses it (tests run as root)
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return open_path(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refused)
    argv = [*train_args(shards, tmp_path, "denied", samples=8), "--log-slot-stats", "1"]
    assert run_in_process(argv) == 1
    run = tmp_path / "denied"
    line = (
        f"no permission for {run / 'slot_stats.jsonl'} (Permission denied); make {run} writable "
        "for you (it may be owned by someone else, read-only, or immutable: chattr -i), or "
        "choose another path"
    )
    console = capsys.readouterr().err  # open_clip_train logs to stderr too
    assert console.endswith(f"\ntraining.main: error: {line}\n") and "Errno" not in console
    log = (run / "out.log").read_text()
    assert log.endswith(f" | ERROR | training.main: error: {line}\n") and "Errno" not in log
    assert (run / FAILURE_NAME).read_text() == f"PermissionError: {line}\n"


@pytest.mark.slow  # a training run
def test_model_kwargs_change_the_model_and_the_run_folder_rebuilds_it(
    shards: str, tmp_path: Path
) -> None:
    kwargs = {"sparo_cfg": {"num_slots": 8, "slot_dim": 32}, "vision_cfg": {"patch_dropout": 0.5}}
    argv = [*train_args(shards, tmp_path, "kw"), "--model-kwargs", json.dumps(kwargs)]
    assert run_in_process(argv) == 0
    config = json.loads((tmp_path / "kw" / "open_clip_config.json").read_text())
    assert config["model_name"] == MODEL
    assert config["model_cfg"]["sparo_cfg"]["num_slots"] == 8
    assert config["model_cfg"]["sparo_cfg"]["slot_repr"] == "cont"  # merged, not replaced
    assert config["model_cfg"]["vision_cfg"]["patch_size"] == 8
    assert config["model_cfg"]["vision_cfg"]["patch_dropout"] == 0.5

    checkpoint = tmp_path / "kw" / "checkpoints" / "epoch_1.pt"
    model = open_clip.create_model(
        config["model_name"], pretrained=str(checkpoint), **config["model_cfg"]
    )
    assert model.num_slots == 8 and model.visual.sparo.queries.shape == (8, 32)
    assert model.encode_text(torch.zeros(1, 32, dtype=torch.long)).shape == (1, 8 * 32)
    saved = checkpoint_state(checkpoint)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="trained with other sizes"):
        open_clip.create_model(MODEL, pretrained=str(checkpoint))

    # resuming the run with another model is refused before anything is loaded or written
    written = (tmp_path / "kw" / "open_clip_config.json").read_text()
    default_slots = json.dumps({"sparo_cfg": {"num_slots": 16, "slot_dim": 16}})
    resume = [*train_args(shards, tmp_path, "kw"), "--resume", "latest"]
    assert run_in_process([*resume, "--model-kwargs", default_slots]) == 1
    log = (tmp_path / "kw" / "out.log").read_text()
    assert "records other settings than this run's (model_cfg)" in log
    assert (tmp_path / "kw" / "open_clip_config.json").read_text() == written


def test_init_from_clip_copies_the_backbone_exactly_then_trains(
    shards: str, tmp_path: Path
) -> None:
    torch.manual_seed(1)
    clip_state = open_clip.create_model(BASELINE).state_dict()
    save_state_dict(clip_state, tmp_path / "clip.pt")
    # train only the read-outs (and logit scale): the copied backbone must stay exactly the CLIP's
    argv = [
        *train_args(shards, tmp_path, "init"),
        "--init-from-clip", str(tmp_path / "clip.pt"),
        "--lock-image", "--lock-image-unlocked-groups", "1",
        "--lock-text", "--lock-text-freeze-layer-norm", "--lock-text-unlocked-layers", "1",
    ]  # fmt: skip
    assert run_in_process(argv) == 0
    log = (tmp_path / "init" / "out.log").read_text()
    assert re.search(r"copied\s+visual\.transformer\.resblocks\.2\.attn\.in_proj_weight", log)
    assert re.search(r"dropped\s+visual\.transformer\.resblocks\.3\.", log)
    assert re.search(r"dropped\s+text_projection", log)
    assert re.search(r"new\s+text_sparo\.queries", log)

    checkpoint = torch.load(tmp_path / "init" / "checkpoints" / "epoch_1.pt", weights_only=True)
    trained = checkpoint_state(tmp_path / "init" / "checkpoints" / "epoch_1.pt")
    backbone = [k for k in trained if not k.startswith(READOUTS) and k != "logit_scale"]
    assert backbone and all(torch.equal(trained[k], clip_state[k]) for k in backbone)
    readouts = [k for k in trained if k.startswith(READOUTS)]
    optimizer_state = checkpoint["optimizer"]["state"]
    assert len(optimizer_state) == len(readouts) + 1  # read-outs and logit_scale trained
    assert all(state["exp_avg"].abs().sum() > 0 for state in optimizer_state.values())
    assert len(epoch_losses(tmp_path / "init" / "out.log")[0]) == 4  # 32 samples / batch 8


@pytest.mark.parametrize(
    ("flags", "frozen", "trained"),
    [
        (["--lock-image"], VISION_TOWER, TEXT_TOWER),
        (["--lock-text", "--lock-text-freeze-layer-norm"], TEXT_TOWER, VISION_TOWER),
    ],
    ids=["lock-image", "lock-text"],
)
def test_locked_tower_is_frozen_read_out_included(
    shards: str,
    tmp_path: Path,
    flags: list[str],
    frozen: tuple[str, ...],
    trained: tuple[str, ...],
) -> None:
    torch.manual_seed(2)
    start = open_clip.create_model(MODEL).state_dict()
    save_state_dict(start, tmp_path / "start.pt")
    argv = [*train_args(shards, tmp_path, "lock"), "--pretrained", str(tmp_path / "start.pt")]
    assert run_in_process([*argv, *flags]) == 0
    end = checkpoint_state(tmp_path / "lock" / "checkpoints" / "epoch_1.pt")

    frozen_keys = [k for k in end if k.startswith(frozen)]
    assert any(k.startswith(READOUTS) for k in frozen_keys)
    assert all(torch.equal(end[k], start[k]) for k in frozen_keys)
    changed = {k for k in end if k.startswith(trained) and not torch.equal(end[k], start[k])}
    assert any(k.startswith(READOUTS) for k in changed)
    assert any(".resblocks.0." in k for k in changed)


def test_init_from_clip_and_pretrained_conflict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "clip.pt").touch()
    argv = ["--model", MODEL, "--pretrained", "x.pt", "--logs", str(tmp_path)]
    assert run_in_process([*argv, "--init-from-clip", str(tmp_path / "clip.pt")]) == 1
    assert "--init-from-clip and --pretrained both give starting weights" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["clip.pt"]  # stopped before any run folder


@pytest.mark.parametrize(
    ("model", "checkpoint", "message"),
    [
        (MODEL, "no-such-tag", "'no-such-tag' is neither a file nor a pretrained tag of 'ViT-Ti"),
        ("sparo-ViT-B-32", "laion2b_s34b_b79k", "tag 'laion2b_s34b_b79k' of 'ViT-B-32' (hub id"),
        ("sparo-RN50", "x.pt", "--model: model 'sparo-RN50' does not exist: SPARO cannot read"),
    ],
)
def test_init_from_clip_that_cannot_be_resolved_stops_before_the_run_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    model: str,
    checkpoint: str,
    message: str,
) -> None:
    from hub_utils import use_hub_cache

    use_hub_cache(monkeypatch, tmp_path / "hub")
    argv = ["--model", model, "--logs", str(tmp_path / "logs"), "--init-from-clip", checkpoint]
    assert run_in_process(argv) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


def test_split_args_takes_only_sparo_flags() -> None:
    options, rest = split_args(
        ["--", "--model", MODEL, "--max-params", "1.5e8", "--log-slot-stats", "--epochs", "2",
         "--model-kwargs", '{"sparo_cfg": {"num_slots": 8}}', "--logs", "x"]
    )  # fmt: skip
    assert rest == ["--model", MODEL, "--epochs", "2", "--logs", "x"]
    assert options.max_params == 150_000_000 and options.log_slot_stats == 100
    assert options.model_kwargs == {"sparo_cfg": {"num_slots": 8}}
    assert options.init_from_clip is None
    assert split_args(["--log-slot-stats", "5"])[0].log_slot_stats == 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model-kwargs", "{num_slots: 8}"], "not valid JSON"),
        (["--model-kwargs", "[8]"], "must be a JSON object"),
        (["--max-params", "1.5"], "whole number"),
    ],
)
def test_bad_sparo_flags_are_rejected_with_the_fix(
    argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        split_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
