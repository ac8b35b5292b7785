"""Tiny training and evaluation data drawn from the package's synthetic world
(:mod:`open_clip_sparo.synthetic`): captioned scenes of coloured shapes, so a tiny CLIP can learn
the pairing within a few steps, and colour-labelled image folders."""

from __future__ import annotations

import io
import os
import pickle
import random
import tarfile
from collections.abc import Callable
from pathlib import Path

from open_clip_sparo.synthetic.datasets import write_training_shards
from open_clip_sparo.synthetic.world import POSITIONS, SHAPES, Scene, SceneObject, render

IMAGE = "png"  # the image member of each training sample


def write_caption_shards(
    directory: Path, num_shards: int = 2, samples_per_shard: int = 32, seed: int = 0
) -> str:
    """Write ``num_shards`` WebDataset shards ``{000000..}.tar`` of ``png``/``txt`` pairs of the
    synthetic world; returns the brace pattern open_clip_train's ``--train-data`` takes."""
    write_training_shards(directory, num_shards * samples_per_shard, samples_per_shard, seed)
    return str(directory / f"{{{0:06d}..{num_shards - 1:06d}}}.tar")


def shard_paths(directory: Path) -> list[Path]:
    """The shards :func:`write_caption_shards` wrote in ``directory``, in order."""
    return sorted(directory.glob("*.tar"))


def write_image_folder(
    directory: Path, classes: dict[str, str], per_class: int = 4, seed: int = 0
) -> Path:
    """An ImageFolder with one folder per ``classes`` key (in label order) holding scenes of one
    large object of the colour given as its value (a synthetic-world colour), any shape."""
    rng = random.Random(seed)
    for folder, colour in classes.items():
        (directory / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape, position = SHAPES[i % len(SHAPES)], rng.choice(POSITIONS)
            scene = Scene((SceneObject(colour, shape, "large", position),))
            render(scene, rng).save(directory / folder / f"{i}.png")
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


def spoil_all_but_the_first_sample(
    directory: Path, spoil: Callable[[str, bytes], tuple[str, bytes]]
) -> None:
    """Rewrite the shards of ``directory`` with ``spoil(name, content)`` applied to every member
    but those of the data's first sample (key ``00000000``)."""
    for shard in shard_paths(directory):
        rewrite_members(
            shard,
            lambda name, content: (
                (name, content) if name.startswith("00000000.") else spoil(name, content)
            ),
        )


class _MakesFolder:
    """Unpickled, this makes the folder ``path``: the mark of a loader that ran code from data."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return os.mkdir, (self.path,)


def add_code_running_files(shard: Path, marker: Path) -> None:
    """Give each sample of the tar file ``shard`` a ``pyd`` file (which WebDataset's default
    decoder unpickles) whose unpickling makes the folder ``marker``."""
    payload = pickle.dumps(_MakesFolder(marker))
    rewritten = shard.with_name(shard.name + ".rewritten")
    with tarfile.open(shard) as source, tarfile.open(rewritten, "w") as sink:
        members = source.getmembers()
        for index, member in enumerate(members):
            sink.addfile(member, source.extractfile(member))
            key = member.name.split(".", 1)[0]
            if index + 1 == len(members) or members[index + 1].name.split(".", 1)[0] != key:
                info = tarfile.TarInfo(f"{key}.pyd")
                info.size = len(payload)
                sink.addfile(info, io.BytesIO(payload))
    rewritten.replace(shard)


def write_broken_shards(directory: Path, samples_per_shard: int = 16, seed: int = 0) -> str:
    """Two shards as :func:`write_caption_shards` writes them, then damaged: in the first,
    sample 1 loses its caption, sample 2 its image and sample 3's image becomes bytes that are no
    image; the second is cut off in the middle of its sample 4's image. One pass reads
    ``samples_per_shard - 3 + 4`` usable samples. Returns the ``--train-data`` pattern."""
    pattern = write_caption_shards(directory, 2, samples_per_shard, seed)
    first, second = shard_paths(directory)

    def damage(name: str, content: bytes) -> tuple[str, bytes] | None:
        if name in (f"{1:08d}.txt", f"{2:08d}.{IMAGE}"):
            return None
        if name == f"{3:08d}.{IMAGE}":
            return name, b"these bytes are not an image"
        return name, content

    rewrite_members(first, damage)
    with tarfile.open(second) as source:
        image = source.getmember(f"{samples_per_shard + 4:08d}.{IMAGE}")
    with second.open("r+b") as file:
        file.truncate(image.offset_data + image.size // 2)
    return pattern
