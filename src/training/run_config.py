"""The run folder's model config, written next to the checkpoints so that evaluation and export
can rebuild the model a run trained (the run-folder contract)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from open_clip import get_model_preprocess_cfg
from torch import nn

from open_clip_sparo import SparoCLIP
from open_clip_sparo.io.checkpoint import CONFIG_NAME, built_depths
from open_clip_sparo.util.run_folder import claim_run_folder

# what identifies the model of a run (a resume must build the same); the rest describes it
MODEL_KEYS = ("model_name", "model_cfg", "preprocess_cfg")


def run_config(model_name: str, model: nn.Module, model_cfg: dict[str, Any]) -> dict[str, Any]:
    """``{"model_name", "model_cfg", "preprocess_cfg"}`` of a built model, as JSON values, and
    for SPARO models the ``built_depths`` its ``model_cfg`` does not show."""
    config: dict[str, Any] = {
        "model_name": model_name,
        "model_cfg": model_cfg,
        "preprocess_cfg": get_model_preprocess_cfg(model),
    }
    if isinstance(model, SparoCLIP):
        config["built_depths"] = built_depths(model)
    return json.loads(json.dumps(config))  # tuples -> lists, as they read back


def write_run_config(run_dir: Path, config: dict[str, Any]) -> Path:
    """Claim ``run_dir`` with ``config`` as ``open_clip_config.json`` (the run-folder rule).

    A resumed run finds the same config there and leaves it; a different one is an error, since
    the checkpoints in the folder belong to the model it describes. The folder is
    open_clip_train's: its other files (``out.log``, ``params.txt``) are adopted.
    """
    claim_run_folder(
        run_dir,
        CONFIG_NAME,
        config,
        keys=MODEL_KEYS,
        adopt=True,
        what="run folder",
        fix="the run was started with another --model or --model-kwargs; resume with the run's "
        "own settings, or start a new run with another --name.",
    )
    return Path(run_dir) / CONFIG_NAME
