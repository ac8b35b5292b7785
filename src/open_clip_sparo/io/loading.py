"""One way to turn a model reference into a model, its preprocessing and its tokenizer.

A reference is one of:

- a registered model name (``sparo-ViT-B-16``, ``ViT-B-32``, ...) with ``pretrained`` a weights
  file or an OpenCLIP pretrained tag;
- an OpenCLIP ``local-dir:DIR`` folder (``open_clip_config.json`` + weights), as written by
  ``sparo export`` or :func:`open_clip_sparo.save_pretrained`;
- a training run folder ``<logs>/<name>`` (``open_clip_config.json`` with ``model_name``,
  ``model_cfg`` and ``preprocess_cfg``, next to ``checkpoints/epoch_N.pt``), using the newest
  ``epoch_N.pt`` unless ``pretrained`` names a checkpoint;
- an OpenCLIP ``hf-hub:org/repo`` model (plain CLIP baselines, as CLIP_benchmark accepts them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2

from ..derive import missing_model_error
from ..openclip_internals import HF_HUB_PREFIX, LOCAL_DIR_PREFIX, model_configs
from ..util.files import check_checkpoint, epoch_checkpoints, newest_epoch_checkpoint, read_json
from .checkpoint import CONFIG_NAME
from .pretrained import is_pretrained_tag, resolve_pretrained
from .provenance import provenance

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")


@dataclass
class LoadedModel:
    """A model in eval mode with what is needed to feed it and to say where it came from."""

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[..., torch.Tensor]
    reference: str  # the model reference (a registered name as OpenCLIP spells it)
    weights: list[Path]  # the files the weights and config were read from
    pretrained_tag: str = ""  # the OpenCLIP pretrained tag, when weights came from one
    run_model_name: str = ""  # a training run's registered model name (its reference is a path)

    @property
    def model_name(self) -> str:
        """The registered model name (a run's ``model_name``), else the reference."""
        return self.run_model_name or self.reference

    def fingerprint(self) -> dict[str, Any]:
        """What identifies these weights: reference, tag, and the files' paths, sizes and
        modification times."""
        return {
            "reference": self.reference,
            "pretrained_tag": self.pretrained_tag,
            "files": [
                {"path": str(p.resolve()), "size": p.stat().st_size, "mtime": p.stat().st_mtime_ns}
                for p in self.weights
            ],
        }

    def provenance(self) -> dict[str, Any]:
        """The provenance record of a result computed with this model
        (:func:`open_clip_sparo.io.provenance.provenance`)."""
        sparo_cfg = getattr(self.model, "model_cfg", {}).get("sparo_cfg")
        return provenance(
            self.model_name, self.weights, sparo_cfg, self.pretrained_tag, self.reference
        )


def load_model(
    reference: str,
    pretrained: str | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | None = None,
) -> LoadedModel:
    """Build the model ``reference`` names (see the module docstring) and load its weights."""
    folder = Path(reference)
    if reference.startswith(LOCAL_DIR_PREFIX):
        loaded = _load_local_dir(Path(reference[len(LOCAL_DIR_PREFIX) :]), reference, pretrained)
    elif _names_folder(reference):
        loaded = _load_folder(folder, reference, pretrained)
    else:
        loaded = _load_registered(reference, pretrained, cache_dir)
    loaded.model.to(device).eval()
    return loaded


def _names_folder(reference: str) -> bool:
    """Whether ``reference`` means a folder: a registered name always means the registered
    model, a folder of the same name needs a path (``./NAME``) or ``local-dir:``."""
    folder = Path(reference)
    if reference not in open_clip.list_models():
        return (folder / CONFIG_NAME).is_file() or folder.is_dir()
    if "/" in reference or reference.startswith("."):  # written as a path
        return folder.is_dir()
    return False


def newest_checkpoint(run_dir: Path) -> Path:
    """The ``checkpoints/epoch_N.pt`` of ``run_dir`` with the largest ``N``."""
    checkpoint = newest_epoch_checkpoint(run_dir / "checkpoints")
    if checkpoint is None:
        raise FileNotFoundError(
            f"the training run {run_dir} has no checkpoint: expected "
            f"{run_dir / 'checkpoints' / 'epoch_N.pt'} (open_clip_train's layout); pass "
            "--pretrained FILE to use another checkpoint."
        )
    return checkpoint


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The ``open_clip_config.json`` a training run writes, checked for the keys it must have."""
    path = run_dir / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a training run folder must contain it.")
    config = read_json(path, "the run config")
    if not isinstance(config, dict):
        raise ValueError(f"the run config {path} must hold a JSON object.")
    missing = [k for k in ("model_name", "model_cfg", "preprocess_cfg") if k not in config]
    if missing:
        raise ValueError(
            f"{path} lacks {missing}: a training run writes model_name, model_cfg and "
            "preprocess_cfg there."
        )
    return config


def _load_registered(reference: str, pretrained: str | None, cache_dir: str | None) -> LoadedModel:
    if reference.startswith(HF_HUB_PREFIX):  # OpenCLIP's own hub models, for plain CLIP baselines
        resolve_pretrained(reference, reference, cache_dir)
        model, _, preprocess = open_clip.create_model_and_transforms(reference, cache_dir=cache_dir)
        return LoadedModel(model, preprocess, open_clip.get_tokenizer(reference), reference, [])
    name = reference.replace("/", "-")  # as OpenCLIP's factory looks names up
    if name not in open_clip.list_models() and Path(reference).is_file():
        raise ValueError(
            f"--model {reference} is a file: give a checkpoint as --pretrained {reference} with "
            "--model NAME (its registered model, e.g. sparo-ViT-B-16)."
        )
    if name not in open_clip.list_models():
        raise ValueError(
            missing_model_error(name, model_configs())
            or f"model {reference!r} is not a registered model name, a local-dir: folder or a "
            "training run folder; see open_clip.list_models() (sparo-<name> for SPARO models)."
        )
    if not pretrained and Path(reference).is_dir():
        raise ValueError(
            f"--model {reference} is ambiguous: a registered model name and a folder here. A "
            f"registered name means the registered model: pass --pretrained FILE for it, or "
            f"--model ./{reference} (or local-dir:{reference}) for the folder."
        )
    if not pretrained:
        raise ValueError(
            f"no weights given for {name!r}: pass --pretrained FILE (a checkpoint) or an "
            f"OpenCLIP pretrained tag {open_clip.list_pretrained_tags_by_model(name)}."
        )
    is_tag = is_pretrained_tag(name, pretrained)
    path = resolve_pretrained(name, pretrained, cache_dir)
    if not is_tag:
        check_checkpoint(path, f"Pass another --pretrained for {name!r}.")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, cache_dir=cache_dir
        )
    except RuntimeError as error:  # PyTorch's strict load_state_dict: the keys do not match
        if is_tag or not str(error).startswith("Error(s) in loading state_dict"):
            raise
        problems = [line.strip()[:160] for line in str(error).splitlines()[1:3]]
        raise ValueError(
            f"the checkpoint {path} does not fit {name!r} ({'; '.join(problems)}...): give the "
            "--model it was trained with (sparo-* for SPARO checkpoints)."
        ) from None
    tokenizer = open_clip.get_tokenizer(name)
    if is_tag:
        return LoadedModel(model, preprocess, tokenizer, name, [], pretrained_tag=pretrained)
    return LoadedModel(model, preprocess, tokenizer, name, [path])


def _load_folder(folder: Path, reference: str, pretrained: str | None) -> LoadedModel:
    if (folder / "checkpoints").is_dir():
        return _load_run(folder, reference, pretrained)
    if (folder / CONFIG_NAME).is_file():
        return _load_local_dir(folder, reference, pretrained)
    raise FileNotFoundError(
        f"{folder} is neither a training run folder ({CONFIG_NAME} and checkpoints/epoch_N.pt) "
        f"nor an OpenCLIP local-dir folder ({CONFIG_NAME} and open_clip_model.safetensors)."
    )


def _load_local_dir(folder: Path, reference: str, pretrained: str | None) -> LoadedModel:
    if pretrained:
        raise ValueError(
            f"{reference} carries its own weights; drop --pretrained {pretrained!r} (or give a "
            "training run folder to choose among its checkpoints)."
        )
    if not folder.is_dir():
        raise FileNotFoundError(f"{reference}: the folder {folder} does not exist.")
    weights = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    config = folder / CONFIG_NAME
    if config.is_file() and weights:
        read_json(config, "the model config")
        for path in weights:
            check_checkpoint(path, f"Export {folder} again (sparo export --overwrite).")
    else:
        raise FileNotFoundError(
            f"{folder} is not a complete OpenCLIP local-dir folder: expected {config} and a "
            f"weights file ({', '.join('*' + s for s in _WEIGHT_SUFFIXES)}); found "
            f"{sorted(p.name for p in folder.iterdir())}."
        )
    name = LOCAL_DIR_PREFIX + str(folder)
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    return LoadedModel(
        model, preprocess, open_clip.get_tokenizer(name), reference, [config, *weights]
    )


def _load_run(run_dir: Path, reference: str, pretrained: str | None) -> LoadedModel:
    config = read_run_config(run_dir)
    checkpoint = _run_checkpoint(run_dir, pretrained) if pretrained else newest_checkpoint(run_dir)
    others = sorted(p.name for p in epoch_checkpoints(run_dir / "checkpoints").values())
    others = [p for p in others if p != checkpoint.name]
    check_checkpoint(checkpoint, f"Pass --pretrained with another checkpoint of the run {others}.")
    name, model_cfg = config["model_name"], config["model_cfg"]
    if name not in open_clip.list_models():
        raise ValueError(
            f"{run_dir} was trained with --model {name!r}, which is not registered here; "
            "import the package that registers it."
        )
    # the run's config, as built after --model-kwargs, replaces the registered one key by key
    model = open_clip.create_model(
        name, pretrained=str(checkpoint), force_preprocess_cfg=config["preprocess_cfg"], **model_cfg
    )
    preprocess_cfg = PreprocessCfg(**open_clip.get_model_preprocess_cfg(model))
    preprocess = image_transform_v2(preprocess_cfg, is_train=False)
    tokenizer = open_clip.get_tokenizer(
        name, context_length=model_cfg.get("text_cfg", {}).get("context_length")
    )
    files = [run_dir / CONFIG_NAME, checkpoint]
    return LoadedModel(model, preprocess, tokenizer, reference, files, run_model_name=name)


def _run_checkpoint(run_dir: Path, pretrained: str) -> Path:
    for candidate in (Path(pretrained), run_dir / "checkpoints" / pretrained):
        if candidate.is_file():
            return candidate
    found = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))
    raise FileNotFoundError(
        f"checkpoint {pretrained!r} not found, neither as a path nor in "
        f"{run_dir / 'checkpoints'} (which holds {found})."
    )
