"""Frozen features of a DINO backbone on labelled images: what k-NN and the linear probe read.

The backbone is a training run's teacher (DINO evaluates the teacher) or student; its output is
the representation: the class token for the baseline, the SPARO embedding (concatenated,
normalised slots) for SPARO, optionally restricted to a slot subset with ``--slots``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ...io.provenance import provenance
from ...selection import read_slots, select_slots
from ...util.errors import run_entry_point
from ...util.files import refuse_existing, write_text
from ...util.metrics import split_doubts, topk_accuracy
from ..augment import eval_transform
from ..backbone import SparoViT
from ..checkpoint import NETWORKS, find_checkpoint, load_backbone
from ..data import labelled_dataset

log = logging.getLogger("open_clip_sparo.dino.evaluation")


@dataclass
class FrozenFeatures:
    """Train and validation features ``(N, D)`` with their labels ``(N,)``, and provenance."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    info: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return int(max(self.train_labels.max(), self.val_labels.max())) + 1

    def to(self, device: torch.device) -> FrozenFeatures:
        return FrozenFeatures(
            self.train.to(device),
            self.train_labels.to(device),
            self.val.to(device),
            self.val_labels.to(device),
            self.info,
        )


def feature_parser(module: str, description: str | None) -> argparse.ArgumentParser:
    """The command line of ``python -m <module>`` with the arguments shared by the evaluations
    on frozen features."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--checkpoint", required=True, help="a DINO run folder (latest checkpoint) or checkpoint")
    add("--network", choices=NETWORKS, default="teacher", help="which backbone to evaluate")
    add("--train-data", required=True, help="labelled ImageFolder or shards with 'cls'")
    add("--val-data", required=True, help="labelled ImageFolder or shards with 'cls'")
    add("--slots", help="SPARO only: a slots.json (of `sparo select`) or JSON list of slots")
    add("--batch-size", type=int, default=256)
    add("--workers", type=int, default=4)
    add("--device", choices=("cuda", "cpu"), help="default: cuda if available")
    add("--out", help="write the results here as JSON (never overwritten)")
    return parser


def run_feature_command(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    evaluate: Callable[[argparse.Namespace, FrozenFeatures], dict[str, Any]],
    check: Callable[[argparse.Namespace], None] | None = None,
) -> int:
    """What every frozen-feature command does: parse ``argv``, ``check`` the arguments, refuse
    an existing ``--out`` before any work, extract the features, ``evaluate`` them, and write
    the features' description with the results. Bad input ends as one line
    ``<prog>: error: ...`` and exit status 1 (:func:`run_entry_point`)."""

    def run(argv: Sequence[str] | None) -> int:
        return _run_feature_command(parser, argv, evaluate, check)

    return run_entry_point(parser.prog, run, argv)


def _run_feature_command(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    evaluate: Callable[[argparse.Namespace, FrozenFeatures], dict[str, Any]],
    check: Callable[[argparse.Namespace], None] | None,
) -> int:
    args = parser.parse_args(argv)
    if check is not None:
        check(args)
    check_out(args.out)
    features = frozen_features(args)
    write_results(args.out, {**features.info, **evaluate(args, features)})
    return 0


@torch.no_grad()
def extract(
    backbone: nn.Module,
    dataset: Any,
    batch_size: int,
    workers: int,
    device: torch.device,
    name: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone outputs ``(N, D)`` (float32, on CPU) and labels ``(N,)`` of a labelled set,
    with a progress bar named ``name`` on stderr."""
    backbone.eval().to(device)
    autocast = (
        torch.autocast("cuda", dtype=torch.float16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    features, labels = [], []
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    total = len(dataset) if hasattr(dataset, "__len__") else None
    bar = tqdm(desc=name, total=total, unit="img", file=sys.stderr, dynamic_ncols=True)
    for images, targets in loader:
        with autocast:
            features.append(backbone(images.to(device)).float().cpu())
        labels.append(torch.as_tensor(targets))
        bar.update(len(images))
    bar.close()
    if not features:
        raise ValueError("the evaluation set is empty.")
    return torch.cat(features), torch.cat(labels)


def resolve_device(args: argparse.Namespace) -> torch.device:
    return torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def extract_features(
    backbone: nn.Module,
    config: dict[str, Any],
    train_data: str,
    val_data: str,
    batch_size: int = 256,
    workers: int = 0,
    device: torch.device | None = None,
    slots: list[int] | None = None,
) -> FrozenFeatures:
    """Features of both labelled sets on ``device`` (default CPU), from ``backbone`` and the
    evaluation transform of its run ``config``; ``slots`` restricts a SPARO backbone. Sets that
    share images or are tiny get a warning (:func:`split_doubts`)."""
    device = device or torch.device("cpu")
    transform = eval_transform(config["image_size"], tuple(config["mean"]), tuple(config["std"]))
    selection = select_slots(backbone, slots) if slots else contextlib.nullcontext()
    with selection:
        train, train_labels = extract(
            backbone,
            labelled_dataset(train_data, transform),
            batch_size,
            workers,
            device,
            f"features of --train-data {train_data}",
        )
        val, val_labels = extract(
            backbone,
            labelled_dataset(val_data, transform),
            batch_size,
            workers,
            device,
            f"features of --val-data {val_data}",
        )
    for doubt in split_doubts(train, val, f"--train-data {train_data}", f"--val-data {val_data}"):
        log.warning(f"warning: {doubt}.")
    info = {
        "backbone": config["backbone"],
        "num_slots": backbone.sparo.num_slots if isinstance(backbone, SparoViT) else None,
        "slots": sorted(slots) if slots else None,
        "feature_dim": train.shape[1],
        "num_train": len(train),
        "num_val": len(val),
    }
    return FrozenFeatures(train, train_labels, val, val_labels, info).to(device)


def frozen_features(args: argparse.Namespace) -> FrozenFeatures:
    """The features of both labelled sets for the backbone and sets ``args`` name."""
    backbone, config = load_backbone(args.checkpoint, args.network)
    slots = None
    if args.slots:
        slots = read_slots(args.slots)
    features = extract_features(
        backbone,
        config,
        args.train_data,
        args.val_data,
        args.batch_size,
        args.workers,
        resolve_device(args),
        slots,
    )
    file = find_checkpoint(args.checkpoint)
    checkpoint = {
        "checkpoint": str(file),
        "network": args.network,
        "provenance": provenance(
            config["backbone"], [file], config["backbone_cfg"].get("sparo_cfg")
        ),
    }
    features.info = {**checkpoint, **features.info}
    return features


def check_out(path: str | None) -> None:
    """Refuse an existing results file before any work is done."""
    if path:
        refuse_existing([path], "choose another --out.")


def write_results(path: str | None, results: dict[str, Any]) -> None:
    text = json.dumps(results, indent=2)
    print(text)
    if path:
        write_text(path, text + "\n", overwrite=False)


def accuracies(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 and, with more than five classes, top-5 accuracy in percent."""
    ks = (1, 5) if scores.shape[1] > 5 else (1,)
    return {
        f"top{k}": 100.0 * acc for k, acc in zip(ks, topk_accuracy(scores, labels, ks), strict=True)
    }
