"""Evaluation of SPARO models through CLIP_benchmark: ``sparo eval``, per-slot similarities,
concept selection on benchmark tasks and slot pictures."""

from ..util.metrics import topk_accuracy
from . import internals  # noqa: F401  (CLIP_benchmark's names, checked before any is used)
from .benchmark import evaluate
from .concept_selection import select
from .datasets import build_dataset, check_dataset_files, dataloader, default_task, fill_root
from .similarity import TASKS, SlotSimilarities, slot_similarities
from .slot_pictures import visualize

__all__ = [
    "TASKS",
    "SlotSimilarities",
    "build_dataset",
    "check_dataset_files",
    "dataloader",
    "default_task",
    "evaluate",
    "fill_root",
    "select",
    "slot_similarities",
    "topk_accuracy",
    "visualize",
]
