"""Converting a model trained with the authors' own code (``ankitkv/sparo-clip``) once: its
model config and checkpoint -> OpenCLIP's ``local-dir:`` layout (docs/fork.md)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from open_clip.model import set_model_preprocess_cfg
from open_clip.transform import PreprocessCfg

from ..io.checkpoint import save_pretrained
from ..model import SparoCLIP
from ..util.files import check_new_files, read_state_dict
from .config import ForkConfig, from_fork_config


def read_fork_config(path: str | Path) -> ForkConfig:
    """The fork's model config file ``path``, translated (:func:`from_fork_config`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"fork config {str(path)!r} does not exist; give the fork's model config the "
            "checkpoint was trained with (e.g. its model_configs/ViT-B-32-SPARO.json)."
        )
    try:
        fork_cfg = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); give the fork's model config."
        ) from error
    return from_fork_config(fork_cfg)


def convert_fork(config: str | Path, checkpoint: str | Path, out: str | Path) -> ForkConfig:
    """Build the model the fork's ``config`` describes, load the fork's ``checkpoint`` into it
    (a weights file as OpenCLIP's ``pretrained=`` takes, training checkpoints with ``module.``
    keys included, read by the package's checkpoint reader) and write it to the new folder
    ``out`` (:func:`save_pretrained`)."""
    out = Path(out)
    check_new_files([out], "choose a new --out folder (nothing was written).")
    fork = read_fork_config(config)
    state_dict = read_state_dict(
        checkpoint, "--checkpoint", "give the checkpoint the fork's training wrote."
    )
    model = SparoCLIP(**fork.model_cfg)
    # the fork's evaluation transform is OpenCLIP's default one at the model's image size
    set_model_preprocess_cfg(model, asdict(PreprocessCfg(size=model.visual.image_size)))
    model.load_state_dict(state_dict)
    save_pretrained(model, out)
    return fork
