"""Saving a SPARO model in OpenCLIP's ``local-dir:`` layout (config JSON + safetensors)."""

from __future__ import annotations

from pathlib import Path

from open_clip.model import get_model_preprocess_cfg
from safetensors.torch import save

from ..model import SparoCLIP
from ..util.files import atomic_write, refuse_existing, write_json

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"


def built_depths(model: SparoCLIP) -> dict[str, int | str]:
    """What a saved config says beside ``model_cfg``: its ``layers`` are the baseline's depths
    (the config OpenCLIP's factory rebuilds from), while the model has ``reduce_depth`` blocks
    fewer per tower."""
    return {
        "vision_layers": len(model.visual.transformer.resblocks),
        "text_layers": len(model.transformer.resblocks),
        "note": "model_cfg's vision_cfg.layers and text_cfg.layers are the baseline's depths; "
        "the model has sparo_cfg.reduce_depth blocks fewer in each tower (these counts)",
    }


def save_pretrained(model: SparoCLIP, directory: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` in OpenCLIP's ``local-dir:`` layout (config JSON + safetensors).

    ``open_clip.create_model('local-dir:DIR')`` rebuilds it once ``open_clip_sparo`` is imported.
    Refuses to replace existing files unless ``overwrite`` is true.
    """
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if not overwrite:
        refuse_existing(
            [config_path, weights_path],
            "choose another directory, or overwrite=True "
            "(`--overwrite` on the command line) to replace them.",
        )
    config = {
        "model_cfg": model.model_cfg,
        "preprocess_cfg": get_model_preprocess_cfg(model),
        "built_depths": built_depths(model),
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(weights_path, lambda file: file.write(save(state)))
    write_json(config_path, config)
    return directory
