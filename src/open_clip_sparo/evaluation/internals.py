"""CLIP_benchmark's names ``sparo eval`` replaces (r) or calls (c), checked once on import.

CLIP_benchmark has no extension points either: ``benchmark`` and ``datasets`` replace names its
modules look up when they run, and call a few of its functions. A release that lacks one fails
at import with one ``ImportError`` naming the supported ``clip-benchmark`` range instead of an
``AttributeError`` inside an evaluation.
"""

from __future__ import annotations

from ..openclip_internals import missing_attributes, supported_range

REQUIRED: dict[str, tuple[str, ...]] = {
    "clip_benchmark.cli": (
        "get_parser_args",  # c: benchmark
        "main_eval",  # c: benchmark
        "run",  # r: benchmark (the plan of runs)
        "json",  # r: benchmark (results written once, never over another)
        "build_dataset",  # r: benchmark (data set files checked first)
    ),
    "clip_benchmark.models": ("TYPE2FUNC", "MODEL_TYPES"),  # r: benchmark (--model_type sparo)
    "clip_benchmark.datasets.builder": (
        "build_dataset",  # c: benchmark, datasets
        "get_dataset_default_task",  # c: benchmark, datasets
        "get_dataset_collate_fn",  # c: datasets
    ),
    "clip_benchmark.metrics.zeroshot_classification": ("accuracy",),  # r: benchmark (NumPy 2)
    "clip_benchmark.metrics.linear_probe": (
        "accuracy",  # r: benchmark (NumPy 2)
        "evaluate",  # r, c: benchmark (feature folder, CPU)
    ),
}


def missing_names() -> list[str]:
    """The names in :data:`REQUIRED` the installed CLIP_benchmark lacks."""
    return missing_attributes(REQUIRED)


def check() -> None:
    """Raise ``ImportError`` naming the supported range when a name is missing."""
    missing = missing_names()
    if missing:
        raise ImportError(
            f"the installed CLIP_benchmark lacks {', '.join(missing)}, which sparo eval uses; "
            f"install {supported_range('clip-benchmark')} (docs/compatibility.md)."
        )


check()
