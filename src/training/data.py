"""The WebDataset training data of an open_clip_train run, built here from webdataset's stages.

open_clip_train's ``get_data`` finds its WebDataset builder by the name ``get_wds_dataset``;
:class:`WebDatasetTraining` stands in for it. Evaluation data (``is_train=False``) is
open_clip_train's own. Training data (:func:`training_data`) is open_clip_train's pipeline
rebuilt from the same public stages and building blocks (its shard shuffle, resampling and
upsampling, filter, shuffle sizes and batch counts), with four differences:

- broken data is skipped, counted per reason and reported after each epoch (``data_faults``);
- the sample shuffle is seeded from ``--seed``, the rank, the loader worker, the epoch and the
  pass within it (:class:`SeededShuffle`): open_clip_train's ``wds.shuffle(bufsize, initial)``
  lets webdataset seed it from the process id and the clock, so two runs with the same seed
  differ;
- shards are read by :func:`read_samples`, which drops webdataset 1.x's end-of-shard markers
  before open_clip_train's grouping (written for 0.2.x, it raises ``KeyError: 'fname'`` on them);
- passes repeat also after an empty one (:class:`RepeatedPipeline`), as under webdataset 0.2.x.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import open_clip_train.data
import open_clip_train.train
import webdataset as wds
from open_clip_train.data import (
    DataInfo,
    ResampledShards2,
    SharedEpoch,
    detshuffle2,
    expand_urls,
    get_dataset_size,
    get_wds_dataset,
    group_by_keys_nothrow,
)
from torch.utils.data import get_worker_info
from webdataset.tariterators import tar_file_expander, url_opener

from open_clip_sparo.util.wds_decode import decode_only

from .data_faults import SkippedSamples
from .patching import upstream_call

IMAGE_KEYS = "jpg;png;jpeg;webp"  # the image of a sample, as open_clip_train renames it


class SeededShuffle(wds.PipelineStage):
    """``wds.shuffle(bufsize, initial)`` with a generator seeded per (seed, rank, loader worker,
    epoch, pass), read when the stage starts, as open_clip_train's shard shuffle reads the epoch.
    The pass counts the passes over the data within the epoch (an epoch longer than the data
    repeats them), so that each is shuffled anew, as upstream's unseeded shuffle is."""

    def __init__(
        self, bufsize: int, initial: int, seed: int, rank: int, epoch: SharedEpoch
    ) -> None:
        self.bufsize, self.initial = bufsize, initial
        self.seed, self.rank, self.epoch = seed, rank, epoch
        self._epoch_pass = (-1, 0)  # the epoch and the pass of the last pass started here

    def run(self, src: Iterable[Any]) -> Iterator[Any]:
        worker = get_worker_info()
        worker_id = 0 if worker is None else worker.id
        epoch, last_pass = self.epoch.get_value(), self._epoch_pass
        self._epoch_pass = (epoch, last_pass[1] + 1 if last_pass[0] == epoch else 0)
        # a str seed is hashed with SHA-512: the same in every process, whatever PYTHONHASHSEED
        rng = random.Random(f"{self.seed}/{self.rank}/{worker_id}/{epoch}/{self._epoch_pass[1]}")
        return wds.shuffle(bufsize=self.bufsize, initial=self.initial, rng=rng)(src)


class RepeatedPipeline(wds.DataPipeline):
    """A ``wds.DataPipeline`` that repeats its passes as webdataset 0.2.x does, also after a pass
    that yields nothing.

    The training data repeats passes until the epoch has its batches (``with_epoch``).
    webdataset 1.x stops repeating after an empty pass, so a loader worker whose share of the
    shards is unreadable would end its epoch with no batch while the other ranks wait for it in
    DDP: the run would hang. Repeated, the pass after an empty one reads all the run's shards
    (``data_faults.SkippedSamples.pass_shards``), which stops the run with a message if they too
    yield nothing. Under webdataset 0.2.x this is its own ``DataPipeline.iterator``.
    """

    def iterator(self) -> Iterator[Any]:
        for _ in range(self.repetitions):
            yield from self.iterator1()


def read_samples(
    shards: Iterable[dict[str, Any]], handler: Callable[[Exception], bool]
) -> Iterator[dict[str, Any]]:
    """The samples of ``shards`` as open_clip_train's ``tarfile_to_samples_nothrow`` reads them
    (webdataset's opener and expander, then open_clip_train's grouping, which starts a new sample
    at a repeated file name instead of raising), with webdataset 1.x's end-of-shard markers
    (empty dicts) dropped before the grouping; 0.2.x has none."""
    streams = url_opener(shards, handler=handler)
    files = (item for item in tar_file_expander(streams, handler=handler) if item)
    return group_by_keys_nothrow(files, handler=handler)


def epoch_batches(
    num_samples: int, batch_size: int, world_size: int, workers: int, floor: bool = False
) -> tuple[int, int, int]:
    """open_clip_train's epoch of ``num_samples`` training samples: batches per loader worker,
    batches per rank and samples (all ranks), rounded down with ``floor``, else up, so that every
    worker of every rank reads the same number of full batches."""
    round_to_int = math.floor if floor else math.ceil
    global_batch_size = batch_size * world_size
    num_workers = max(1, workers)
    worker_batches = round_to_int(round_to_int(num_samples / global_batch_size) / num_workers)
    num_batches = worker_batches * num_workers
    return worker_batches, num_batches, num_batches * global_batch_size


def _one_number_per_source(factors: str, shards: str) -> bool:
    """Whether the ``::``-joined ``factors`` are numbers, one per ``::``-joined source."""
    try:
        return len([float(factor) for factor in factors.split("::")]) == len(shards.split("::"))
    except ValueError:
        return False


def training_data(
    args: Any,
    preprocess_img: Callable[[Any], Any],
    skipped: SkippedSamples,
    epoch: int = 0,
    floor: bool = False,
    tokenizer: Callable[[Any], Any] | None = None,
) -> DataInfo:
    """open_clip_train's WebDataset training data for the run's ``args``
    (``get_wds_dataset(args, preprocess_img, is_train=True, epoch, floor, tokenizer)``), its
    skips counted by ``skipped``; bad arguments raise a ``ValueError`` saying what to change."""
    shards = args.train_data
    resampled = getattr(args, "dataset_resampled", False)
    all_shards = expand_urls(shards)[0]
    num_samples = args.train_num_samples
    if num_samples is not None and num_samples < 1:
        raise ValueError(
            f"--train-num-samples {num_samples}: an epoch reads at least 1 sample; give the "
            "number of samples an epoch reads."
        )
    if num_samples is None:
        num_samples = get_dataset_size(shards)[0]  # from a sizes.json or __len__ file
        if not num_samples:
            raise ValueError(
                f"cannot tell how many samples the shards of --train-data {shards} hold: pass "
                "--train-num-samples or put a sizes.json beside them."
            )
    factors = args.train_data_upsampling_factors
    if factors is not None and not resampled:
        raise ValueError(
            "--train-data-upsampling-factors weights shards sampled with replacement: add "
            "--dataset-resampled."
        )
    if factors is not None and not _one_number_per_source(factors, shards):
        sources = len(shards.split("::"))
        raise ValueError(
            f"--train-data-upsampling-factors {factors} must give one number per source of "
            f"--train-data ({sources}, joined by '::'), e.g. {'::'.join(['1'] * sources)}."
        )
    total_workers = args.workers * args.world_size
    if not resampled and len(all_shards) < total_workers:
        raise ValueError(
            f"--train-data has {len(all_shards)} shard(s) for {args.workers} loader worker(s) "
            f"in each of {args.world_size} process(es), and each worker reads shards of its "
            f"own: lower --workers, or split the data into at least {total_workers} shards."
        )
    shared_epoch = SharedEpoch(epoch=epoch)  # read by the loader workers at each pass
    sample_shuffle_size = open_clip_train.data._SAMPLE_SHUFFLE_SIZE
    drawn_shards = all_shards  # upsampling factors of 0 leave a source's shards undrawn
    if factors is not None:
        urls, weights = expand_urls(shards, factors)
        drawn_shards = [url for url, weight in zip(urls, weights, strict=True) if weight > 0]
    skipped.start_run(
        args.rank, drawn_shards, args.batch_size, sample_shuffle_size if resampled else None
    )
    if resampled:
        shard_stages = [
            ResampledShards2(
                shards,
                weights=factors,
                deterministic=True,
                epoch=shared_epoch,
            )
        ]
    else:
        shard_stages = [
            wds.SimpleShardList(shards),
            detshuffle2(
                bufsize=open_clip_train.data._SHARD_SHUFFLE_SIZE,
                initial=open_clip_train.data._SHARD_SHUFFLE_INITIAL,
                seed=args.seed,
                epoch=shared_epoch,
            ),
            wds.split_by_node,
            wds.split_by_worker,
        ]
    worker_batches, num_batches, num_samples = epoch_batches(
        num_samples, args.batch_size, args.world_size, args.workers, floor
    )
    dataset = RepeatedPipeline(
        *shard_stages,
        skipped.pass_shards,
        functools.partial(read_samples, handler=skipped.shard_failed),
        skipped.samples_read,
        SeededShuffle(
            bufsize=sample_shuffle_size,
            initial=open_clip_train.data._SAMPLE_SHUFFLE_INITIAL,
            seed=args.seed,
            rank=args.rank,
            epoch=shared_epoch,
        ),
        wds.select(skipped.has_caption_and_image),
        decode_only("pilrgb", [*IMAGE_KEYS.split(";"), "txt"], skipped.decode_failed),
        skipped.samples_usable,
        wds.rename(image=IMAGE_KEYS, text="txt"),
        wds.map_dict(image=preprocess_img, text=lambda text: tokenizer(text)[0]),
        wds.to_tuple("image", "text"),
        wds.batched(args.batch_size, partial=False),
    ).with_epoch(worker_batches)  # each loader worker reads this many batches
    dataloader = wds.WebLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )
    dataloader.num_batches, dataloader.num_samples = num_batches, num_samples
    return DataInfo(dataloader=dataloader, shared_epoch=shared_epoch)


class WebDatasetTraining:
    """The WebDataset data of one open_clip_train run: :meth:`get_wds_dataset` stands in for
    open_clip_train's, :meth:`train_one_epoch` reports each epoch's skips."""

    def __init__(self) -> None:
        # before the loader workers start: its counts are shared with them
        self.skipped = SkippedSamples()

    def get_wds_dataset(
        self,
        args: Any,
        preprocess_img: Callable[[Any], Any],
        is_train: bool,
        epoch: int = 0,
        floor: bool = False,
        tokenizer: Callable[[Any], Any] | None = None,
    ) -> DataInfo:
        """open_clip_train's ``get_wds_dataset``: training data from :func:`training_data`,
        evaluation data from open_clip_train unchanged."""
        if not is_train:
            return get_wds_dataset(args, preprocess_img, is_train, epoch, floor, tokenizer)
        return training_data(args, preprocess_img, self.skipped, epoch, floor, tokenizer)

    def train_one_epoch(self, *args: Any, **kwargs: Any) -> Any:
        """open_clip_train's ``train_one_epoch``, then the epoch's skips reported."""
        result = open_clip_train.train.train_one_epoch(*args, **kwargs)
        call = upstream_call(open_clip_train.train.train_one_epoch, args, kwargs)
        self.skipped.report_epoch(call["epoch"], call["args"])
        return result
