"""The paper's controls (tiny size) train through training.main and evaluate with sparo eval."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from benchmark_data import write_wds_classification
from training_utils import checkpoint_state, epoch_losses, run_in_process, train_args

from open_clip_sparo import cli as sparo_cli
from open_clip_sparo.controls.models import CONTROL_CLASSES
from training.model_config import check_model_kwargs

CONTROLS = [f"{kind}-ViT-Ti-8-64" for kind in CONTROL_CLASSES]


@pytest.fixture(scope="module")
def classification(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cls")
    return write_wds_classification(
        root, ["cat", "dog", "car", "tree", "boat", "bird"], per_class=1
    )


def with_model(argv: list[str], model: str) -> list[str]:
    index = argv.index("--model")
    return [*argv[: index + 1], model, *argv[index + 2 :]]


@pytest.mark.parametrize("model", CONTROLS)
def test_control_trains_then_evaluates(
    model: str, shards: str, classification: Path, tmp_path: Path
) -> None:
    argv = with_model(train_args(shards, tmp_path, "run", samples=32), model)
    assert run_in_process(argv) == 0
    run = tmp_path / "run"
    assert len(epoch_losses(run / "out.log")[0]) == 4
    checkpoint = run / "checkpoints" / "epoch_1.pt"
    built = open_clip.create_model(model, pretrained=str(checkpoint))
    assert type(built) is CONTROL_CLASSES[model.split("-")[0]]
    saved = checkpoint_state(checkpoint)
    assert all(torch.equal(v, saved[k]) for k, v in built.state_dict().items())

    out = tmp_path / "eval.json"
    argv = ["eval", "--model", str(run), "--dataset", "wds/tiny"]
    argv += ["--dataset_root", str(classification), "--no_amp", "--num_workers", "0"]
    argv += ["--batch_size", "4", "--quiet", "--output", str(out)]
    assert sparo_cli.main(argv) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert 0.0 <= metrics["acc1"] <= metrics["acc5"] <= 1.0


def test_model_kwargs_reach_control_cfg(shards: str, tmp_path: Path) -> None:
    model = "codebook-ViT-Ti-8-64"
    kwargs = {"control_cfg": {"num_codes": 64}}
    argv = with_model(train_args(shards, tmp_path, "kw", samples=16), model)
    assert run_in_process([*argv, "--model-kwargs", json.dumps(kwargs)]) == 0
    config = json.loads((tmp_path / "kw" / "open_clip_config.json").read_text())
    assert config["model_cfg"]["control_cfg"] == {
        "kind": "codebook",
        "num_codes": 64,
        "temperature": 1000.0,
    }
    state = checkpoint_state(tmp_path / "kw" / "checkpoints" / "epoch_1.pt")
    assert state["space_dict"].shape == (64, 128)


def test_model_kwargs_name_unknown_control_keys() -> None:
    config = open_clip.get_model_config("bottleneck-ViT-Ti-8-64")
    check_model_kwargs(config, {"control_cfg": {"bottleneck_dim": 64}})
    with pytest.raises(ValueError, match=r"unknown key 'control_cfg\.num_code'"):
        check_model_kwargs(config, {"control_cfg": {"num_code": 64}})
