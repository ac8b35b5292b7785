"""CLIP_benchmark data sets, never downloaded: every expected file is checked before any work.

``root`` may hold CLIP_benchmark's placeholders ``{dataset}`` and ``{dataset_cleaned}``
(:func:`fill_root`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from clip_benchmark.datasets import builder

from ..util.files import read_json

SUGAR_CREPE_TASKS = (
    "add_att",
    "add_obj",
    "replace_att",
    "replace_obj",
    "replace_rel",
    "swap_att",
    "swap_obj",
)


def check_dataset_files(
    dataset: str, root: str, split: str, task: str, annotation_file: str | None = None
) -> None:
    """Fail before any work when a local dataset lacks files, listing what is expected.

    Lists the files of the offline ``wds/*`` layout and of the datasets CLIP_benchmark would
    otherwise fetch with wget or kaggle (``sugar_crepe/*``, ``mscoco_captions``,
    ``flickr8k``/``flickr30k``, ``imagenet1k``). Any other dataset needs ``root`` to be a
    non-empty folder: CLIP_benchmark downloads ``imagenetv2``, ``imagenet-a``, ``objectnet``,
    ... into a missing root whatever ``download`` says. Nothing is ever downloaded; ``root`` is
    already filled (:func:`fill_root`).
    """
    base = Path(root)
    if dataset.startswith("wds/") and "://" not in root:
        _require(_webdataset_files(dataset, base, split, task), f"WebDataset {dataset} ({split})")
    elif dataset.startswith("sugar_crepe/"):
        name = dataset.split("/", 1)[1]
        if name not in SUGAR_CREPE_TASKS:
            raise ValueError(f"unknown SugarCrepe task {name!r}; use one of {SUGAR_CREPE_TASKS}.")
        if split != "test":
            raise ValueError(
                f"SugarCrepe has only the split 'test', not {split!r}: use --split test; to "
                "select slots on it, drop --selection_split (--split is divided by --seed)."
            )
        _require(
            [base / "val2017", base / f"{name}.json"],
            f"SugarCrepe {name} (COCO val2017 images and "
            f"https://raw.githubusercontent.com/RAIVNLab/sugar-crepe/main/data/{name}.json)",
        )
        check_sugar_crepe_annotations(base / f"{name}.json", base / "val2017")
    elif dataset == "mscoco_captions":
        images = base / ("train2014" if split == "train" else "val2014")
        annotations = Path(annotation_file or base / f"coco_{split}_karpathy.json")
        _require([images, annotations], f"MS-COCO captions ({split}, Karpathy split)")
    elif dataset in ("flickr8k", "flickr30k"):
        annotations = Path(annotation_file or base / f"{dataset}_{split}_karpathy.txt")
        _require([base, annotations], f"{dataset} ({split}, Karpathy split)")
    elif dataset == "imagenet1k":
        _require([base], "ImageNet-1k (torchvision's ImageNet layout)")
    elif dataset != "dummy" and "://" not in root:
        _require_populated_folder(base, dataset)


SUGAR_CREPE_KEYS = ("filename", "caption", "negative_caption")


def check_sugar_crepe_annotations(path: Path, images: Path) -> None:
    """Fail unless ``path`` is a SugarCrepe annotation file (a non-empty JSON object of
    instances, each with a ``filename``, a ``caption`` and a ``negative_caption``) whose every
    image is in ``images``: every mistake is found before the first batch, not at it."""
    annotations = read_json(path, "the SugarCrepe annotation file")
    expected = (
        'expected {"<id>": {"filename": ..., "caption": ..., "negative_caption": ...}, ...} '
        "as in https://github.com/RAIVNLab/sugar-crepe/tree/main/data"
    )
    if not isinstance(annotations, dict) or not annotations:
        found = "an empty object" if annotations == {} else f"a JSON {type(annotations).__name__}"
        raise ValueError(f"the SugarCrepe annotation file {path} holds {found}; {expected}.")
    bad = [
        key
        for key, item in annotations.items()
        if not isinstance(item, dict)
        or not all(isinstance(item.get(k), str) and item.get(k) for k in SUGAR_CREPE_KEYS)
    ]
    if bad:
        raise ValueError(
            f"the SugarCrepe annotation file {path}: {len(bad)} of {len(annotations)} instances "
            f"(e.g. {bad[:3]}) lack a string {' / '.join(SUGAR_CREPE_KEYS)}; {expected}."
        )
    present = {p.name for p in images.iterdir()} if images.is_dir() else set()
    named = {item["filename"] for item in annotations.values()}
    missing = sorted(f for f in named - present if not (images / f).is_file())
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images that {path} names are not in {images} (e.g. {missing[:3]}); "
            "use the COCO 2017 validation images (val2017.zip)."
        )


def fill_root(dataset: str, root: str) -> str:
    """``root`` with CLIP_benchmark's placeholders ``{dataset}`` and ``{dataset_cleaned}`` filled
    in as ``clip_benchmark eval`` fills them (``wds/`` dropped, ``/`` as ``-``)."""
    name = dataset.removeprefix("wds/")
    return root.format(dataset=name, dataset_cleaned=name.replace("/", "-"))


def build_dataset(
    dataset: str,
    root: str,
    transform: Callable[[Any], torch.Tensor],
    split: str = "test",
    task: str = "auto",
    **kwargs: Any,
) -> torch.utils.data.Dataset:
    """CLIP_benchmark's ``build_dataset`` after :func:`check_dataset_files`; never downloads.

    ``root`` may hold CLIP_benchmark's placeholders ``{dataset}`` and ``{dataset_cleaned}``
    (see :func:`fill_root`).
    """
    root = fill_root(dataset, root)
    task = default_task(dataset) if task == "auto" else task
    check_dataset_files(dataset, root, split, task, kwargs.get("annotation_file"))
    return builder.build_dataset(
        dataset_name=dataset,
        root=root,
        transform=transform,
        split=split,
        download=False,
        task=task,
        **kwargs,
    )


def default_task(dataset: str) -> str:
    """The task CLIP_benchmark's ``--task auto`` picks for ``dataset``."""
    return builder.get_dataset_default_task(dataset.removeprefix("wds/"))


def dataloader(
    dataset_name: str, dataset: torch.utils.data.Dataset, batch_size: int, num_workers: int
) -> torch.utils.data.DataLoader:
    """Batches of a CLIP_benchmark dataset, built as ``clip_benchmark eval`` builds them."""
    if dataset_name.startswith("wds/"):
        return torch.utils.data.DataLoader(
            dataset.batched(batch_size), batch_size=None, num_workers=num_workers
        )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=builder.get_dataset_collate_fn(dataset_name),
    )


def _webdataset_files(dataset: str, base: Path, split: str, task: str) -> list[Path]:
    nshards = base / split / "nshards.txt"
    expected = [nshards]
    if nshards.is_file():
        expected += [base / split / f"{i}.tar" for i in range(int(nshards.read_text()))]
    type_file = base / "dataset_type.txt"
    is_retrieval = type_file.is_file() and type_file.read_text().strip().lower() == "retrieval"
    if task in ("zeroshot_classification", "linear_probe"):
        if is_retrieval:
            raise ValueError(
                f"{dataset} at {base} is a retrieval dataset (dataset_type.txt); pass "
                "--task zeroshot_retrieval."
            )
        expected += [base / "classnames.txt", base / "zeroshot_classification_templates.txt"]
    return expected


def _require(paths: Sequence[Path], what: str) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"{what} is incomplete; missing: {missing}. Expected: {[str(p) for p in paths]}."
        )


def _require_populated_folder(base: Path, dataset: str) -> None:
    if base.is_dir() and any(base.iterdir()):
        return
    state = "is empty" if base.is_dir() else "is not a folder" if base.exists() else "is missing"
    raise FileNotFoundError(
        f"{dataset} expects its data in the folder {base}, which {state}; nothing is "
        f"downloaded: pass --dataset_root to a prepared copy of {dataset}."
    )
