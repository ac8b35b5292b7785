"""``sparo eval``: CLIP_benchmark's ``eval`` for SPARO models, optionally on a subset of slots.

Every argument of ``clip_benchmark eval`` works unchanged; in addition:

- models load through :func:`open_clip_sparo.loading.load_model` (CLIP_benchmark model type
  ``sparo``, the default here), so registered names with ``--pretrained FILE``, ``local-dir:``
  folders and training run folders all work; ``--pretrained`` defaults to none;
- ``--slots FILE`` (the ``slots.json`` of ``sparo select``, or a JSON list) restricts every model
  to those slots through :func:`open_clip_sparo.select_slots`; each result JSON records the
  slots used;
- results are never overwritten (``--skip_existing`` skips them, as in CLIP_benchmark);
- datasets are never downloaded: missing files of ``wds/*``, ``sugar_crepe/*``,
  ``mscoco_captions``, ``flickr8k``/``flickr30k`` and ``imagenet1k`` fail first, listed; any
  other dataset fails first when its root is missing or empty.

Fixes for the pinned stack live here, not upstream: NumPy 2 rejects the ``float(array)`` in
CLIP_benchmark's top-k accuracy, and its linear probe asserts CUDA; on a machine without CUDA the
linear probe runs on the CPU (without autocast).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import torch
from clip_benchmark import cli
from clip_benchmark import models as benchmark_models
from clip_benchmark.datasets import builder
from clip_benchmark.metrics import linear_probe, zeroshot_classification

from .loading import load_model
from .selection import select_slots

MODEL_TYPE = "sparo"
SUGAR_CREPE_TASKS = (
    "add_att",
    "add_obj",
    "replace_att",
    "replace_obj",
    "replace_rel",
    "swap_att",
    "swap_obj",
)


def read_slots(path: str | Path) -> list[int]:
    """Slot indices from ``path``: the ``slots.json`` of ``sparo select`` or a JSON list."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"slots file {path} does not exist.")
    content = json.loads(path.read_text())
    slots = content.get("slots") if isinstance(content, dict) else content
    if not isinstance(slots, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in slots
    ):
        raise ValueError(
            f"{path} must hold a JSON list of slot indices or an object with a 'slots' list "
            "(as `sparo select` writes)."
        )
    return slots


def topk_accuracy(
    logits: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)
) -> list[float]:
    """Top-k accuracies of ``(N, C)`` logits, as CLIP_benchmark's ``accuracy`` (NumPy 2 safe)."""
    top = logits.topk(max(topk), dim=1).indices  # (N, max k)
    hits = top == target.view(-1, 1)
    return [hits[:, :k].sum().item() / len(target) for k in topk]


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
        _require(
            [base / "val2017", base / f"{name}.json"],
            f"SugarCrepe {name} (COCO val2017 images and "
            f"https://raw.githubusercontent.com/RAIVNLab/sugar-crepe/main/data/{name}.json)",
        )
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


def build_parser() -> argparse.ArgumentParser:
    """CLIP_benchmark's ``eval`` parser with every argument, plus ``--slots``.

    Call within :func:`registered_model_type`, so that ``sparo`` is a ``--model_type`` choice.
    """
    with mock.patch.object(sys, "argv", ["sparo", "eval"]):
        parser, _ = cli.get_parser_args()
    # argparse has no public way to reach a subcommand's parser
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    eval_parser = subcommands.choices["eval"]
    eval_parser.prog = "sparo eval"
    eval_parser.add_argument(
        "--slots",
        default=None,
        help="evaluate SPARO models on these slots only: the slots.json of `sparo select` or a "
        "JSON list of slot indices",
    )
    eval_parser.set_defaults(model_type=MODEL_TYPE, pretrained=[""])
    return eval_parser


@contextmanager
def registered_model_type(load: Callable[..., tuple[Any, Any, Any]]) -> Iterator[None]:
    """Make ``load`` CLIP_benchmark's model type ``sparo`` (a ``--model_type`` choice)."""
    with mock.patch.dict(benchmark_models.TYPE2FUNC, {MODEL_TYPE: load}):
        benchmark_models.MODEL_TYPES.append(MODEL_TYPE)
        try:
            yield
        finally:
            benchmark_models.MODEL_TYPES.remove(MODEL_TYPE)


class _Evaluation:
    """What the CLIP_benchmark hooks of one ``sparo eval`` share: the slot selection, the slots
    of the model being evaluated, and the contexts that keep the selection applied."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.slots: list[int] | None = None
        self.slots_used: list[int] | None = None

    def load(
        self, model_name: str, pretrained: str, cache_dir: str | None = None, device: str = "cpu"
    ) -> tuple[torch.nn.Module, Any, Any]:
        loaded = load_model(model_name, pretrained, device=device, cache_dir=cache_dir)
        model = loaded.model
        if self.slots is not None:
            self.stack.enter_context(select_slots(model, self.slots))
            self.slots_used = sorted(self.slots)
        elif hasattr(model, "num_slots"):
            self.slots_used = list(range(model.num_slots))
        else:
            self.slots_used = None
        return model, loaded.preprocess, loaded.tokenizer

    def dump(self, result: dict[str, Any], fp: Any, **kwargs: Any) -> None:
        if self.slots_used is not None:
            result = {**result, "slots": self.slots_used}
        json.dump(result, fp, **kwargs)


def main(argv: list[str]) -> int:
    with ExitStack() as stack:
        session = _Evaluation(stack)
        stack.enter_context(registered_model_type(session.load))
        args = build_parser().parse_args(argv)
        if args.slots is not None:
            session.slots = read_slots(args.slots)
            # linear probe caches features per model and dataset: keep slot subsets apart
            Path(args.feature_root).mkdir(parents=True, exist_ok=True)
            args.feature_root = str(Path(args.feature_root) / _slots_key(session.slots))
        stack.enter_context(_patched_clip_benchmark(session))
        cli.main_eval(args)
    return 0


@contextmanager
def _patched_clip_benchmark(session: _Evaluation) -> Iterator[None]:
    """CLIP_benchmark as ``sparo eval`` runs it, restored on exit.

    ``clip_benchmark.cli.run`` writes the result with the module-level names ``open`` and
    ``json``, builds data sets with ``build_dataset``, and the metrics modules look up
    ``accuracy`` and ``evaluate`` at call time; replacing those names is all it takes.
    """
    with ExitStack() as stack:
        patch = stack.enter_context
        patch(mock.patch.object(cli, "open", _open_new, create=True))
        patch(mock.patch.object(cli, "json", SimpleNamespace(dump=session.dump, load=json.load)))
        patch(mock.patch.object(cli, "build_dataset", _checked_build_dataset))
        patch(mock.patch.object(zeroshot_classification, "accuracy", topk_accuracy))
        patch(mock.patch.object(linear_probe, "accuracy", topk_accuracy))
        if not torch.cuda.is_available():
            on_cpu = functools.partial(_linear_probe_on_cpu, linear_probe.evaluate)
            patch(mock.patch.object(linear_probe, "evaluate", on_cpu))
        yield


def _checked_build_dataset(dataset_name: str, root: str, **kwargs: Any) -> Any:
    # CLIP_benchmark builds the linear probe's training split without a task, i.e. its default
    task = kwargs.get("task", "zeroshot_classification")
    split = kwargs.get("split", "test")
    check_dataset_files(dataset_name, root, split, task, kwargs.get("annotation_file"))
    return builder.build_dataset(dataset_name=dataset_name, root=root, **kwargs)


def _open_new(file: str, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    """``open`` for CLIP_benchmark's result file: creates its folder, refuses to replace it."""
    if "w" in mode and Path(file).exists():
        raise FileExistsError(
            f"{file} exists and would be overwritten; choose another --output, remove it, or pass "
            "--skip_existing to skip finished evaluations."
        )
    Path(file).parent.mkdir(parents=True, exist_ok=True)
    return open(file, mode.replace("w", "x"), *args, **kwargs)


class _CpuAsCuda(str):
    """The device ``'cpu'`` for torch, equal to ``'cuda'`` for the linear probe's CUDA assert."""

    def __eq__(self, other: object) -> bool:
        return other == "cuda" or str.__eq__(self, other)

    __hash__ = str.__hash__


def _linear_probe_on_cpu(
    evaluate: Callable[..., dict[str, Any]], *args: Any, device: str, amp: bool, **kwargs: Any
) -> dict[str, Any]:
    """CLIP_benchmark's linear probe on a machine without CUDA: its ``.cuda()`` calls stay on the
    CPU and autocast is off (CPU autocast would train the probe in bfloat16)."""
    with (
        mock.patch.object(torch.nn.Module, "cuda", lambda module, *_, **__: module),
        mock.patch.object(torch.Tensor, "cuda", lambda tensor, *_, **__: tensor),
    ):
        return evaluate(*args, device=_CpuAsCuda("cpu"), amp=False, **kwargs)


def _slots_key(slots: Sequence[int]) -> str:
    digest = hashlib.sha1(json.dumps(sorted(slots)).encode()).hexdigest()[:12]
    return f"slots-{len(slots)}-{digest}"


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
