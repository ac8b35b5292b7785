"""Images for DINO: unlabelled training crops and labelled evaluation sets.

A data path is either an ImageFolder (a folder of class folders) or WebDataset shards: a brace
pattern such as ``train/{000000..000019}.tar``, or a folder holding ``.tar`` shards. Shards
carry an image under ``jpg``, ``jpeg``, ``png`` or ``webp``, and for evaluation the class index
under ``cls`` (CLIP_benchmark's ``wds`` layout).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
)
from torchvision.datasets import ImageFolder

from ..util.endless_stream import EndlessStreamCheck
from ..util.files import read_json
from ..util.skipped import SkipCounter, describe_sample
from ..util.wds_decode import decode_only

log = logging.getLogger("open_clip_sparo.dino.data")

IMAGE_KEYS = "jpg;jpeg;png;webp"
SHUFFLE_BUFFER = 1000
# why training data is skipped (the CLIP side adds a missing caption)
SKIP_REASONS = ("no image", "does not decode", "unreadable shard")


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
    sizes = read_json(sizes_file, "shard sizes file")
    missing = [u for u in urls if Path(u).name not in sizes]
    if missing:
        raise ValueError(f"{sizes_file} has no size for {missing[:3]}; pass --train-num-samples.")
    return sum(sizes[Path(u).name] for u in urls)


def _shard_seed(seed: int, epoch: int) -> int:
    rank, _, worker, _ = wds.utils.pytorch_worker_info()
    return wds.utils.make_seed(seed, epoch, rank, worker)


class SkippedImages(SkipCounter):
    """Training images skipped per reason (:class:`~open_clip_sparo.util.skipped.SkipCounter`).

    A sample without an image (``jpg``, ``jpeg``, ``png``, ``webp``) or whose image does not
    decode is skipped, and so is the rest of a shard that cannot be opened or read to its end.
    Other files of a sample (captions) are dropped unread. Shards are resampled endlessly, so a
    stream that can never give a batch stops with an ``UnusableDataError`` instead of reading
    forever (:mod:`open_clip_sparo.util.endless_stream` says when).
    """

    def __init__(self, urls: list[str], rank: int) -> None:
        super().__init__(SKIP_REASONS, rank, log)
        self._endless = EndlessStreamCheck(
            urls,
            SHUFFLE_BUFFER,
            item="training image",
            drawn_by=f"by rank {rank}",
            sample_advice=(
                "the warnings above say why each was skipped. Images go under 'jpg', 'jpeg', "
                "'png' or 'webp' and must decode; check --data."
            ),
            data_option="--data",
        )

    def open_shards(self, shards: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pipeline stage over the shards: notes which one is read."""
        for shard in shards:
            self._endless.shard_opened(shard["url"])
            self.start_shard(shard["url"])
            yield shard

    def samples_read(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pipeline stage after the shard reader, before the shuffle buffer."""
        for sample in samples:
            self._endless.sample_read(sample)
            yield sample

    def images_only(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pipeline stage after the shuffle buffer: each sample's image files and keys, without
        the files training does not read; samples without an image are skipped. The decoder pulls
        one sample at a time, so the last one yielded is the one :meth:`decode_failed` names."""
        images = IMAGE_KEYS.split(";")
        for sample in samples:
            self._endless.sample_past_buffer(sample)
            kept = {k: v for k, v in sample.items() if k in images or k.startswith("__")}
            if len(kept) == sum(k.startswith("__") for k in kept):
                self.skip("no image", describe_sample(sample))
                continue
            self.note_sample(kept)
            yield kept

    def images_decoded(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pipeline stage after the decoder: the images the batches are made of."""
        for sample in samples:
            self._endless.sample_usable()
            yield sample


@dataclass
class TrainData:
    """Batches of crops for one process: ``steps_per_epoch`` batches in each epoch, and the
    images skipped (WebDataset shards only)."""

    steps_per_epoch: int
    loader_for_epoch: Callable[[int], DataLoader]
    skipped: SkippedImages | None = None

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
    skipped = None
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

        skipped = SkippedImages(urls, rank)

        def loader_for_epoch(epoch: int) -> DataLoader:
            stream = wds.DataPipeline(
                wds.ResampledShards(
                    urls,
                    worker_seed=functools.partial(_shard_seed, seed, epoch),
                    deterministic=True,
                ),
                skipped.open_shards,
                wds.tarfile_to_samples(handler=skipped.shard_failed),
                skipped.samples_read,
                wds.detshuffle(SHUFFLE_BUFFER, seed=seed + epoch),
                skipped.images_only,
                decode_only("pil", IMAGE_KEYS.split(";"), skipped.decode_failed),
                skipped.images_decoded,
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
    return TrainData(steps, loader_for_epoch, skipped)


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
        .compose(decode_only("pil", [*IMAGE_KEYS.split(";"), "cls"], wds.reraise_exception))
        .to_tuple(IMAGE_KEYS, "cls")
        .map_tuple(transform, int)
    )
