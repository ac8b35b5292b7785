"""Tiny datasets in CLIP_benchmark's offline layouts, written from synthetic images, and tiny
models saved as the ``sparo`` commands read them.

- ``write_wds_classification`` / ``write_wds_retrieval``: ``wds/<name>`` with ``--dataset_root``
  (``<split>/{0..n-1}.tar``, ``<split>/nshards.txt``, and ``classnames.txt`` +
  ``zeroshot_classification_templates.txt`` or ``dataset_type.txt`` = ``retrieval``);
- ``write_sugar_crepe``: ``sugar_crepe/<task>`` with ``val2017/`` images and ``<task>.json``.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

import open_clip_sparo  # noqa: F401  (registers the sparo-* configs)

TINY_MODEL = "sparo-ViT-Ti-8-64"
TEMPLATES = ("a photo of a {c}.", "a picture of the {c}.")


def synthetic_image(seed: int, size: int = 72) -> Image.Image:
    """A smooth random colour field with a bright square: something for attention to find."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR)).copy()
    x, y = rng.integers(0, size - size // 4, size=2)
    image[y : y + size // 4, x : x + size // 4] = 255
    return Image.fromarray(image)


def write_wds_classification(
    root: Path,
    classnames: Sequence[str],
    per_class: int,
    split: str = "test",
    num_shards: int = 1,
    seed: int = 0,
) -> Path:
    """``per_class`` images of each class; the templates are :data:`TEMPLATES`."""
    samples = [
        {"png": _png(synthetic_image(seed + 1000 * c + i)), "cls": str(c).encode()}
        for i in range(per_class)
        for c in range(len(classnames))
    ]
    _write_shards(root / split, samples, num_shards)
    (root / "classnames.txt").write_text("\n".join(classnames) + "\n")
    (root / "zeroshot_classification_templates.txt").write_text("\n".join(TEMPLATES) + "\n")
    return root


def write_wds_retrieval(
    root: Path,
    captions: Sequence[Sequence[str]],
    split: str = "test",
    num_shards: int = 1,
    seed: int = 0,
) -> Path:
    """One image per entry of ``captions``, described by that entry's captions."""
    samples = [
        {"png": _png(synthetic_image(seed + i)), "txt": "\n".join(texts).encode()}
        for i, texts in enumerate(captions)
    ]
    _write_shards(root / split, samples, num_shards)
    (root / "dataset_type.txt").write_text("retrieval\n")
    return root


def write_sugar_crepe(
    root: Path, task: str, pairs: Sequence[tuple[str, str]], seed: int = 0
) -> Path:
    """One image per (caption, negative caption) pair, in SugarCrepe's layout."""
    (root / "val2017").mkdir(parents=True, exist_ok=True)
    annotations = {}
    for i, (caption, negative) in enumerate(pairs):
        filename = f"{i:012d}.jpg"
        synthetic_image(seed + i).save(root / "val2017" / filename)
        annotations[str(i)] = {
            "filename": filename,
            "caption": caption,
            "negative_caption": negative,
        }
    (root / f"{task}.json").write_text(json.dumps(annotations))
    return root


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _write_shards(split_dir: Path, samples: list[dict[str, bytes]], num_shards: int) -> None:
    split_dir.mkdir(parents=True, exist_ok=True)
    for shard in range(num_shards):
        with tarfile.open(split_dir / f"{shard}.tar", "w") as tar:
            for index in range(shard, len(samples), num_shards):
                for extension, data in samples[index].items():
                    info = tarfile.TarInfo(f"{index:06d}.{extension}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    (split_dir / "nshards.txt").write_text(f"{num_shards}\n")


def save_tiny_model(path: Path, seed: int = 0) -> tuple[torch.nn.Module, Path]:
    """A randomly initialised ``sparo-ViT-Ti-8-64`` saved as a ``{"state_dict": ...}`` file."""
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_MODEL).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict()}, path)
    return model, path


def write_run_folder(
    run_dir: Path, model: torch.nn.Module, epochs: Sequence[int], model_name: str = TINY_MODEL
) -> Path:
    """A training run folder as open_clip_train writes it (``module.``-prefixed checkpoints,
    one per epoch); the weights of epoch ``e`` are ``model``'s plus ``e``."""
    (run_dir / "checkpoints").mkdir(parents=True)
    config = {
        "model_name": model_name,
        "model_cfg": model.model_cfg,
        "preprocess_cfg": open_clip.get_model_preprocess_cfg(model),
    }
    (run_dir / "open_clip_config.json").write_text(json.dumps(config))
    for epoch in epochs:
        state = {f"module.{k}": v + epoch for k, v in model.state_dict().items()}
        torch.save(
            {"epoch": epoch, "state_dict": state}, run_dir / "checkpoints" / f"epoch_{epoch}.pt"
        )
    return run_dir


def save_nan_model(path: Path) -> Path:
    """A ``sparo-ViT-Ti-8-64`` checkpoint whose floating-point tensors are all NaN."""
    model = open_clip.create_model(TINY_MODEL)
    state = {
        k: v.fill_(float("nan")) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state}, path)
    return path
