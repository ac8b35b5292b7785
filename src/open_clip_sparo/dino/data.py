"""Images for DINO: unlabelled training crops and labelled evaluation sets.

A data path is either an ImageFolder (a folder of class folders) or WebDataset shards: a brace
pattern such as ``train/{000000..000019}.tar``, or a folder holding ``.tar`` shards. Shards
carry an image under ``jpg``, ``jpeg``, ``png`` or ``webp``, and for evaluation the class index
under ``cls`` (CLIP_benchmark's ``wds`` layout).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset
from torchvision.datasets import ImageFolder

IMAGE_KEYS = "jpg;jpeg;png;webp"
SHUFFLE_BUFFER = 1000


def shard_urls(path: str) -> list[str] | None:
    """The shards ``path`` names (brace pattern or folder of ``.tar`` files), or None when it
    is not WebDataset data."""
    if ".tar" in path:
        return wds.shardlists.expand_urls(path)
    folder = Path(path)
    shards = sorted(folder.glob("*.tar")) if folder.is_dir() else []
    return [str(s) for s in shards] or None


def _check_image_folder(path: str) -> None:
    if not Path(path).is_dir():
        raise FileNotFoundError(
            f"{path} is neither a folder (ImageFolder or .tar shards) nor a shard pattern."
        )


def count_shard_samples(urls: list[str]) -> int | None:
    """Total samples from a ``sizes.json`` beside the shards (``sparo generate`` and
    open_clip_train's layout), or None without one."""
    sizes_file = Path(urls[0]).parent / "sizes.json"
    if not sizes_file.is_file():
        return None
    sizes = json.loads(sizes_file.read_text())
    missing = [u for u in urls if Path(u).name not in sizes]
    if missing:
        raise ValueError(f"{sizes_file} has no size for {missing[:3]}; pass --train-num-samples.")
    return sum(sizes[Path(u).name] for u in urls)


def _shard_seed(seed: int, epoch: int) -> int:
    rank, _, worker, _ = wds.utils.pytorch_worker_info()
    return wds.utils.make_seed(seed, epoch, rank, worker)


@dataclass
class TrainData:
    """Batches of crops for one process: ``steps_per_epoch`` batches in each epoch."""

    steps_per_epoch: int
    loader_for_epoch: Callable[[int], DataLoader]

    def batches(self, epoch: int) -> Iterator[list[torch.Tensor]]:
        """The crops of each batch of ``epoch``, a list of ``(B, 3, H, W)`` tensors."""
        loader = iter(self.loader_for_epoch(epoch))
        for _ in range(self.steps_per_epoch):
            crops, *_ = next(loader)
            yield crops


def train_data(
    path: str,
    transform: Callable[[Any], list[torch.Tensor]],
    batch_size: int,
    workers: int,
    rank: int,
    world_size: int,
    seed: int,
    num_samples: int | None = None,
) -> TrainData:
    """Shuffled crops of ``path`` for process ``rank`` of ``world_size``.

    ImageFolder data is split between processes by a ``DistributedSampler`` (labels unused);
    shards are resampled with replacement by every process and worker from seeds that depend on
    (seed, epoch, rank, worker), so a resumed run sees the same stream.
    """
    urls = shard_urls(path)
    loader_args = {"batch_size": batch_size, "num_workers": workers, "drop_last": True}
    if urls is None:
        _check_image_folder(path)
        dataset = ImageFolder(path, transform=transform)
        sampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        loader = DataLoader(dataset, sampler=sampler, **loader_args)
        total = len(dataset)

        def loader_for_epoch(epoch: int) -> DataLoader:
            sampler.set_epoch(epoch)
            return loader

    else:
        total = num_samples or count_shard_samples(urls)
        if total is None:
            raise ValueError(
                f"cannot tell how many samples the shards of {path} hold: pass "
                "--train-num-samples or put a sizes.json beside them."
            )

        def loader_for_epoch(epoch: int) -> DataLoader:
            stream = wds.DataPipeline(
                wds.ResampledShards(
                    urls,
                    worker_seed=functools.partial(_shard_seed, seed, epoch),
                    deterministic=True,
                ),
                wds.tarfile_to_samples(),
                wds.detshuffle(SHUFFLE_BUFFER, seed=seed + epoch),
                wds.decode("pil"),
                wds.to_tuple(IMAGE_KEYS),
                wds.map_tuple(transform),
            )
            return DataLoader(stream, **loader_args)

    steps = total // (batch_size * world_size)
    if steps == 0:
        raise ValueError(
            f"{path} holds {total} images, fewer than one global batch of "
            f"{batch_size} x {world_size} processes; lower --batch-size."
        )
    return TrainData(steps, loader_for_epoch)


def labelled_dataset(
    path: str, transform: Callable[[Any], torch.Tensor]
) -> Dataset | IterableDataset:
    """``(image tensor, class index)`` pairs of an ImageFolder or of shards with ``cls``."""
    urls = shard_urls(path)
    if urls is None:
        _check_image_folder(path)
        return ImageFolder(path, transform=transform)
    return (
        wds.WebDataset(urls, shardshuffle=False)
        .decode("pil")
        .to_tuple(IMAGE_KEYS, "cls")
        .map_tuple(transform, int)
    )
