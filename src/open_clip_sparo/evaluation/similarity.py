"""Per-slot image-text similarity of a CLIP_benchmark dataset and task, encoded once and cached.

A SPARO embedding is the concatenation of weighted slot vectors ``x_l``. CLIP_benchmark normalises
embeddings, and :func:`open_clip_sparo.select_slots` renormalises the weights over the chosen
slots, so the similarity of image ``x`` and text ``y`` on a slot subset ``S`` is exactly::

    sum_{l in S} <x_l, y_l> / sqrt(sum_{l in S} |x_l|^2 * sum_{l in S} |y_l|^2)

Per-slot similarities ``<x_l, y_l>`` and norms therefore give the task metric of every subset.
They are kept as the slot vectors they come from (``(items, L, V)``, far smaller than the
``(images, texts, L)`` similarities of ImageNet or COCO) and cached on disk under a key made of
the model, its weight files and the dataset.

Zero-shot classification compares images with class prototypes, CLIP_benchmark's mean of the
normalised template embeddings, taken here per slot. With the default ``const`` slot weighting
this is exactly what CLIP_benchmark computes on any subset; with input-dependent weightings
(``norm``, ``softmax``) it is exact on all slots and approximate on subsets."""

from __future__ import annotations

import functools
import hashlib
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..concepts import SubsetSums
from ..io.loading import LoadedModel
from ..util.files import load_torch_file
from .checks import check_finite, described, finite_encodings, require_slots
from .datasets import build_dataset, dataloader, default_task, fill_root
from .metrics import caption_selection_metrics, classification_metrics, retrieval_metrics

TASKS = ("zeroshot_classification", "zeroshot_retrieval", "image_caption_selection")


@dataclass
class SlotSimilarities:
    """Slot vectors of one dataset and task, from which any subset's scores follow exactly.

    Layout by task:

    - ``zeroshot_classification``: ``images`` ``(I, L, V)``, ``texts`` ``(C, L, V)`` class
      prototypes, ``targets`` ``(I,)`` class of each image; scores ``(I, C)``.
    - ``zeroshot_retrieval``: ``images`` ``(I, L, V)``, ``texts`` ``(T, L, V)`` captions,
      ``targets`` ``(T,)`` image of each caption; scores ``(T, I)`` as CLIP_benchmark's.
    - ``image_caption_selection``: ``images`` ``(N, nim, L, V)``, ``texts`` ``(N, nt, L, V)``
      for N instances whose image ``i`` matches caption ``i``; scores ``(N, nim, nt)``.
    """

    task: str
    images: torch.Tensor
    texts: torch.Tensor
    targets: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} has no per-slot similarity; use one of {TASKS}.")

    @property
    def num_slots(self) -> int:
        return self.images.shape[-2]

    @property
    def num_items(self) -> int:
        """Number of units a dataset split divides: images, or instances for caption selection."""
        return self.images.shape[0]

    def slot_sums(self, slot: int, dtype: torch.dtype = torch.float64) -> SubsetSums:
        """Similarities and squared norms of one slot, shaped for :class:`SubsetSums`."""
        x = self.images[..., slot, :].to(dtype)
        y = self.texts[..., slot, :].to(dtype)
        x_sq, y_sq = x.square().sum(-1), y.square().sum(-1)
        if self.task == "zeroshot_classification":
            return SubsetSums(x @ y.T, x_sq[:, None], y_sq[None, :])  # (I, C)
        if self.task == "zeroshot_retrieval":
            return SubsetSums(y @ x.T, x_sq[None, :], y_sq[:, None])  # (T, I)
        return SubsetSums(x @ y.transpose(1, 2), x_sq[:, :, None], y_sq[:, None, :])  # (N, nim, nt)

    def sums(self, slots: Sequence[int] | None = None) -> SubsetSums:
        """:class:`SubsetSums` of ``slots`` (all slots by default)."""
        slots = range(self.num_slots) if slots is None else slots
        if not slots:
            raise ValueError("the slot subset is empty.")
        return functools.reduce(operator.add, map(self.slot_sums, slots))

    def metrics(
        self, slots: Sequence[int] | None = None, recall_k: Sequence[int] = (5,)
    ) -> dict[str, float]:
        """CLIP_benchmark's metrics of the model restricted to ``slots`` (all by default)."""
        return self.metrics_of(self.sums(slots).scores(), recall_k)

    def metrics_of(self, scores: torch.Tensor, recall_k: Sequence[int] = (5,)) -> dict[str, float]:
        """CLIP_benchmark's metrics of this task from the subset ``scores``."""
        if self.task == "zeroshot_classification":
            return classification_metrics(scores, self.targets)
        if self.task == "zeroshot_retrieval":
            return retrieval_metrics(scores, self.targets, recall_k)
        return caption_selection_metrics(scores)

    def subset(self, items: torch.Tensor) -> SlotSimilarities:
        """The same task on some images (instances for caption selection), with the captions
        of those images for retrieval."""
        items = torch.as_tensor(items, dtype=torch.long)
        if self.task == "zeroshot_classification":
            return SlotSimilarities(self.task, self.images[items], self.texts, self.targets[items])
        if self.task == "zeroshot_retrieval":
            new_index = torch.full((self.num_items,), -1, dtype=torch.long)
            new_index[items] = torch.arange(len(items))
            captions = torch.isin(self.targets, items).nonzero().squeeze(1)
            return SlotSimilarities(
                self.task,
                self.images[items],
                self.texts[captions],
                new_index[self.targets[captions]],
            )
        return SlotSimilarities(self.task, self.images[items], self.texts[items])


def slot_similarities(
    loaded: LoadedModel,
    dataset: str,
    root: str,
    split: str = "test",
    task: str = "auto",
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    **dataset_kwargs: Any,
) -> SlotSimilarities:
    """Encode ``dataset`` once with ``loaded`` (or read the cache) into :class:`SlotSimilarities`.

    ``dataset_kwargs`` go to CLIP_benchmark's ``build_dataset`` (``language``,
    ``annotation_file``, ``custom_template_file``, ...) and are part of the cache key.
    """
    task = default_task(dataset) if task == "auto" else task
    if task not in TASKS:
        raise ValueError(f"task {task!r} has no per-slot similarity; use one of {TASKS}.")
    require_slots(loaded.model, described(loaded), "concept selection")
    built = build_dataset(dataset, root, loaded.preprocess, split, task, **dataset_kwargs)
    key = _cache_key(loaded, dataset, root, split, task, dataset_kwargs)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{dataset.replace('/', '_')}-{split}-{task}-{_digest(key)}.pt"
        if path.is_file():
            cached = load_torch_file(path, "the similarity cache", "delete it to encode again.")
            if cached["key"] == json.dumps(key, sort_keys=True):
                for side in ("images", "texts"):
                    check_finite(cached[side], side[:-1], loaded.model, described(loaded))
                return SlotSimilarities(task, cached["images"], cached["texts"], cached["targets"])
    batches = tqdm(dataloader(dataset, built, batch_size, num_workers), desc=f"encoding {dataset}")
    with torch.no_grad(), finite_encodings(loaded.model, described(loaded)):
        if task == "zeroshot_classification":
            similarities = _encode_classification(loaded, built, batches, device)
        elif task == "zeroshot_retrieval":
            similarities = _encode_retrieval(loaded, batches, device)
        else:
            similarities = _encode_caption_selection(loaded, batches, device)
    if path is not None:
        _save(path, key, similarities)
    return similarities


def _encode_classification(
    loaded: LoadedModel, dataset: Any, batches: Any, device: str | torch.device
) -> SlotSimilarities:
    images, targets = [], []
    for image, target in batches:
        if target.ndim > 1:
            raise ValueError("multi-label classification datasets are not supported.")
        images.append(loaded.model.encode_image_slots(image.to(device)).slots.float().cpu())
        targets.append(target)
    prototypes = []
    for classname in tqdm(dataset.classes, desc="class prototypes"):
        templates = dataset.templates
        texts = (
            templates[classname]
            if isinstance(templates, dict)
            else [t.format(c=classname) for t in templates]
        )
        slots = loaded.model.encode_text_slots(loaded.tokenizer(texts).to(device)).slots.float()
        # CLIP_benchmark: mean of the normalised template embeddings, taken per slot
        normalised = F.normalize(slots.flatten(1), dim=-1).view_as(slots)  # (T, L, V)
        prototypes.append(normalised.mean(dim=0).cpu())
    return SlotSimilarities(
        "zeroshot_classification", torch.cat(images), torch.stack(prototypes), torch.cat(targets)
    )


def _encode_retrieval(
    loaded: LoadedModel, batches: Any, device: str | torch.device
) -> SlotSimilarities:
    images, texts, text_image = [], [], []
    for image, captions in batches:
        start = sum(len(x) for x in images)
        images.append(loaded.model.encode_image_slots(image.to(device)).slots.float().cpu())
        flat = [caption for group in captions for caption in group]
        tokens = loaded.tokenizer(flat).to(device)
        texts.append(loaded.model.encode_text_slots(tokens).slots.float().cpu())
        text_image += [start + i for i, group in enumerate(captions) for _ in group]
    return SlotSimilarities(
        "zeroshot_retrieval", torch.cat(images), torch.cat(texts), torch.tensor(text_image)
    )


def _encode_caption_selection(
    loaded: LoadedModel, batches: Any, device: str | torch.device
) -> SlotSimilarities:
    images, texts = [], []
    for image, captions in batches:
        if image.ndim == 4:
            image = image[:, None]  # (B, nim, C, H, W)
        batch, per_image = image.shape[:2]
        slots = loaded.model.encode_image_slots(image.flatten(0, 1).to(device)).slots
        images.append(slots.float().cpu().unflatten(0, (batch, per_image)))
        tokens = loaded.tokenizer([caption for group in captions for caption in group])
        text_slots = loaded.model.encode_text_slots(tokens.to(device)).slots.float().cpu()
        texts.append(text_slots.unflatten(0, (batch, len(captions[0]))))
    return SlotSimilarities("image_caption_selection", torch.cat(images), torch.cat(texts))


def _cache_key(
    loaded: LoadedModel,
    dataset: str,
    root: str,
    split: str,
    task: str,
    dataset_kwargs: dict[str, Any],
) -> dict[str, Any]:
    root_path = Path(fill_root(dataset, root)).resolve()  # the folder build_dataset reads
    listed = [root_path, root_path / split] if root_path.is_dir() else []
    files = [
        [str(p), p.stat().st_size, p.stat().st_mtime_ns]
        for folder in listed
        if folder.is_dir()
        for p in sorted(folder.iterdir())
    ]
    return {
        "model": loaded.fingerprint(),
        "dataset": dataset,
        "root": str(root_path),
        "dataset_files": files,
        "split": split,
        "task": task,
        "dataset_kwargs": {k: str(v) for k, v in sorted(dataset_kwargs.items())},
    }


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _save(path: Path, key: dict[str, Any], similarities: SlotSimilarities) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "key": json.dumps(key, sort_keys=True),
            "images": similarities.images,
            "texts": similarities.texts,
            "targets": similarities.targets,
        },
        tmp,
    )
    tmp.replace(path)
