"""DINO run folders and checkpoints.

A training run writes::

    <logs>/<name>/dino_config.json           {"backbone", "backbone_cfg", "head", "image_size",
                                               "mean", "std"}: what evaluation needs
    <logs>/<name>/params.json                the training arguments
    <logs>/<name>/log.jsonl                  one line per logged step (after a resume a step
                                              may appear again: its last line counts)
    <logs>/<name>/checkpoints/epoch_N.pt     {"epoch", "config", "student", "teacher",
                                               "optimizer", "scaler", "loss", "args"}
    <logs>/<name>/checkpoints/epoch_latest.pt    the last epoch, replaced every epoch

Evaluation takes the run folder (its latest checkpoint) or one checkpoint file, and uses the
teacher's backbone, as DINO does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..util.files import load_torch_file, newest_epoch_checkpoint
from .backbone import ClassTokenViT, SparoViT, build_backbone
from .configs import backbone_cfg_from_dict

CONFIG_NAME = "dino_config.json"
LATEST = "epoch_latest.pt"
NETWORKS = ("teacher", "student")
CHECKPOINT_KEYS = ("epoch", "config", "student", "teacher")  # what training and evaluation read


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or a run folder's latest checkpoint."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; give a DINO run folder or a checkpoint file."
        )
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if (folder / LATEST).is_file():
        return folder / LATEST
    newest = newest_epoch_checkpoint(folder)
    if newest is None:
        raise FileNotFoundError(
            f"{path} is neither a DINO checkpoint nor a run folder with checkpoints/epoch_N.pt."
        )
    return newest


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A DINO checkpoint (tensors only, no code run), or a ``ValueError`` naming the file and
    what is wrong with it."""
    file = find_checkpoint(path)
    checkpoint = load_torch_file(file, "DINO checkpoint")
    missing = sorted(set(CHECKPOINT_KEYS) - set(checkpoint)) if isinstance(checkpoint, dict) else []
    if not isinstance(checkpoint, dict) or missing:
        raise ValueError(
            f"{file} is not a checkpoint of open_clip_sparo.dino.train (it lacks "
            f"{missing or list(CHECKPOINT_KEYS)}); give a DINO run folder or its "
            "checkpoints/epoch_N.pt."
        )
    return checkpoint


def load_backbone(
    path: str | Path, network: str = "teacher"
) -> tuple[ClassTokenViT | SparoViT, dict[str, Any]]:
    """The ``network`` ("teacher" or "student") backbone of a checkpoint or run folder, and the
    run config it was trained with."""
    if network not in NETWORKS:
        raise ValueError(f"network={network!r} is unknown; use one of {list(NETWORKS)}.")
    checkpoint = load_checkpoint(path)
    config = checkpoint["config"]
    backbone = build_backbone(backbone_cfg_from_dict(config["backbone_cfg"], config["backbone"]))
    prefix = "backbone."
    state = {k[len(prefix) :]: v for k, v in checkpoint[network].items() if k.startswith(prefix)}
    backbone.load_state_dict(state)
    return backbone, config
