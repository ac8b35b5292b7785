"""Training data pipeline: this project's WebDataset training data against open_clip_train's.

Both are built from the same run's arguments: the project's by ``training.data`` (what
``training.main`` gives open_clip_train: broken data counted and skipped, the seeded sample
shuffle, passes repeated), upstream's by ``open_clip_train.data.get_wds_dataset``. Each reads one
epoch of the same synthetic shards (photo-sized JPEGs, OpenCLIP's 224 px training transform, the
same loader workers); the two alternate, and the ratio of samples/s (project / upstream) is the
median of the per-round ratios. An epoch of 2,048 samples takes several seconds, so that the
loader workers' start-up and the machine's noise weigh little in each round.

    python -m benchmarks.data_pipeline [--samples 2048] [--workers 2] [--rounds 11]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import open_clip
import open_clip_train.params
import torch
from open_clip_train.data import DataInfo, get_wds_dataset

from benchmarks.common import (
    RESULTS_DIR,
    format_ratios,
    paired_ratio,
    result_path,
    run_header,
    summarize,
    write_result,
)
from benchmarks.shards import PHOTO_SIZE, write_shards
from training.data import WebDatasetTraining


def project_wds_dataset(*args: Any, **kwargs: Any) -> DataInfo:
    """The WebDataset builder a ``training.main`` run gives open_clip_train."""
    return WebDatasetTraining().get_wds_dataset(*args, **kwargs)


# the builders, called as open_clip_train.data.get_data calls get_wds_dataset
PIPELINES: dict[str, Callable[..., DataInfo]] = {
    "project": project_wds_dataset,
    "open_clip_train": get_wds_dataset,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2048, help="samples in the shards")
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="loader workers")
    parser.add_argument("--rounds", type=int, default=11, help="epochs of each pipeline")
    parser.add_argument("--image-size", type=int, nargs=2, default=PHOTO_SIZE, metavar=("W", "H"))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_args(argv)


def train_args(shards: str, args: argparse.Namespace) -> argparse.Namespace:
    """open_clip_train's arguments of a one-process run reading ``shards``."""
    run = open_clip_train.params.parse_args(
        [
            *("--train-data", shards, "--train-num-samples", str(args.samples)),
            *("--dataset-type", "webdataset", "--batch-size", str(args.batch)),
            *("--workers", str(args.workers), "--seed", "0"),
        ]
    )
    run.rank, run.local_rank, run.world_size, run.distributed = 0, 0, 1, False
    return run


def read_epoch(
    pipeline: str, run: argparse.Namespace, transform: Any, tokenizer: Any
) -> tuple[float, int]:
    """Seconds to build the training data and read one epoch, and the samples read."""
    start = time.perf_counter()
    data = PIPELINES[pipeline](run, transform, is_train=True, epoch=0, tokenizer=tokenizer)
    data.set_epoch(0)
    count = 0
    for images, _texts in data.dataloader:
        count += len(images)
    return time.perf_counter() - start, count


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device("cpu")
    path = result_path(args.out, "data_pipeline", device, args.overwrite)
    transform = open_clip.image_transform(224, is_train=True)
    tokenizer = open_clip.get_tokenizer("ViT-B-16")
    seconds: dict[str, list[float]] = {name: [] for name in PIPELINES}
    counts: dict[str, list[int]] = {name: [] for name in PIPELINES}
    with tempfile.TemporaryDirectory(prefix="data-pipeline-") as work:
        per_shard = args.samples // args.shards
        shards = write_shards(Path(work), args.shards, per_shard, tuple(args.image_size))
        run = train_args(shards, args)
        names = list(PIPELINES)
        read_epoch(names[0], run, transform, tokenizer)  # warm the page cache
        for round_index in range(args.rounds):
            for name in names if round_index % 2 == 0 else reversed(names):
                elapsed, count = read_epoch(name, run, transform, tokenizer)
                seconds[name].append(elapsed)
                counts[name].append(count)
    rates = {
        name: [n / s for n, s in zip(counts[name], seconds[name], strict=True)]
        for name in PIPELINES
    }
    result = {
        "samples": args.samples,
        "batch": args.batch,
        "workers": args.workers,
        "image_size": list(args.image_size),
        "seconds": seconds,
        "samples_read": counts,
        "samples_per_second": {name: summarize(values) for name, values in rates.items()},
        "ratios": {"throughput": paired_ratio(rates["project"], rates["open_clip_train"])},
    }
    print(f"data pipeline project / open_clip_train: {format_ratios(result['ratios'])}")
    settings = {"repeats": args.rounds, "warmup": 1, "step": "build the data, read one epoch"}
    write_result(path, {**run_header("data_pipeline", argv, device, settings), "results": [result]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
