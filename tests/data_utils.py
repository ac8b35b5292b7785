"""Tiny captioned-image data for training tests, written with webdataset's own writer.

Each image is a coloured square in one quadrant of a noisy grey canvas, and its caption names the
colour and the quadrant, so a tiny CLIP can learn the pairing within a few steps.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 210, 40),
    "purple": (150, 50, 190),
    "orange": (240, 140, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")


def square_image(colour: str, quadrant: int, rng: np.random.Generator, size: int = 64) -> Image:
    """A ``size`` x ``size`` RGB image: grey noise with a ``colour`` square in ``quadrant``."""
    pixels = rng.integers(90, 160, size=(size, size, 3), dtype=np.uint8)
    half = size // 2
    top, left = (quadrant // 2) * half, (quadrant % 2) * half
    margin = size // 16
    pixels[top + margin : top + half - margin, left + margin : left + half - margin] = COLOURS[
        colour
    ]
    return Image.fromarray(pixels)


def write_caption_shards(
    directory: Path, num_shards: int = 2, samples_per_shard: int = 32, seed: int = 0
) -> str:
    """Write ``num_shards`` WebDataset shards of ``jpg``/``txt`` pairs; returns the brace pattern
    open_clip_train's ``--train-data`` takes."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = list(COLOURS)
    pattern = str(directory / "shard-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=samples_per_shard, verbose=0) as sink:
        for index in range(num_shards * samples_per_shard):
            colour = colours[index % len(colours)]
            quadrant = (index // len(colours)) % len(QUADRANTS)
            sink.write(
                {
                    "__key__": f"{index:08d}",
                    "jpg": square_image(colour, quadrant, rng),
                    "txt": f"a {colour} square at the {QUADRANTS[quadrant]}",
                }
            )
    return str(directory / f"shard-{{{0:06d}..{num_shards - 1:06d}}}.tar")


def write_image_folder(
    directory: Path, classes: dict[str, str], per_class: int = 4, seed: int = 0
) -> Path:
    """An ImageFolder with one folder per ``classes`` key (in label order) holding squares of the
    colour given as its value."""
    rng = np.random.default_rng(seed)
    for folder, colour in classes.items():
        (directory / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            square_image(colour, i % len(QUADRANTS), rng).save(directory / folder / f"{i}.jpg")
    return directory


def rewrite_members(shard: Path, edit: Callable[[str, bytes], tuple[str, bytes] | None]) -> None:
    """Rewrite the tar file ``shard`` member by member: ``edit(name, content)`` gives the new name
    and content, or ``None`` to drop the member."""
    rewritten = shard.with_name(shard.name + ".rewritten")
    with tarfile.open(shard) as source, tarfile.open(rewritten, "w") as sink:
        for member in source.getmembers():
            edited = edit(member.name, source.extractfile(member).read())
            if edited is not None:
                member.name, content = edited
                member.size = len(content)
                sink.addfile(member, io.BytesIO(content))
    rewritten.replace(shard)


def write_broken_shards(directory: Path, samples_per_shard: int = 16, seed: int = 0) -> str:
    """Two shards as :func:`write_caption_shards` writes them, then damaged: in the first,
    sample 1 loses its caption, sample 2 its image and sample 3's image becomes bytes that are no
    image; the second is cut off in the middle of its sample 4's image. One pass reads
    ``samples_per_shard - 3 + 4`` usable samples. Returns the ``--train-data`` pattern."""
    pattern = write_caption_shards(directory, 2, samples_per_shard, seed)
    first, second = sorted(directory.glob("shard-*.tar"))

    def damage(name: str, content: bytes) -> tuple[str, bytes] | None:
        if name in (f"{1:08d}.txt", f"{2:08d}.jpg"):
            return None
        if name == f"{3:08d}.jpg":
            return name, b"these bytes are not an image"
        return name, content

    rewrite_members(first, damage)
    with tarfile.open(second) as source:
        image = source.getmember(f"{samples_per_shard + 4:08d}.jpg")
    with second.open("r+b") as file:
        file.truncate(image.offset_data + image.size // 2)
    return pattern
