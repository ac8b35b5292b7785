"""Synthetic image-caption WebDataset shards at real JPEG sizes, for the benchmarks that read
training data (photo-sized noise over colour gradients: JPEG-encoded like real photos, so
decoding costs what it costs on CC3M-like data)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

PHOTO_SIZE = (500, 375)  # width, height: a typical CC3M / ImageNet photo


def jpeg(rng: np.random.Generator, size: tuple[int, int], quality: int = 90) -> bytes:
    """A ``size`` (width, height) JPEG: a random colour gradient with pixel noise."""
    width, height = size
    ramp = (
        np.linspace(0.0, 1.0, width)[None, :, None] * np.linspace(1.0, 0.5, height)[:, None, None]
    )
    colours = rng.uniform(0, 255, (2, 3))
    pixels = colours[0] + (colours[1] - colours[0]) * ramp + rng.normal(0, 12, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def write_shards(
    directory: Path,
    num_shards: int,
    samples_per_shard: int,
    size: tuple[int, int] = PHOTO_SIZE,
    seed: int = 0,
) -> str:
    """Write ``num_shards`` shards of ``jpg``/``txt`` samples; returns the brace pattern that
    ``--train-data`` takes."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with wds.ShardWriter(
        str(directory / "%06d.tar"), maxcount=samples_per_shard, verbose=0
    ) as sink:
        for index in range(num_shards * samples_per_shard):
            sink.write(
                {
                    "__key__": f"{index:08d}",
                    "jpg": jpeg(rng, size),
                    "txt": f"a photo of gradient number {index} with some noise",
                }
            )
    return str(directory / f"{{{0:06d}..{num_shards - 1:06d}}}.tar")
