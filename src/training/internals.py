"""open_clip_train's (and OpenCLIP's factory's) names this package replaces or calls, checked once.

open_clip_train has no extension points: ``hooks`` and ``compat`` replace module globals that
its code looks up when it runs, and call the originals; ``data``, ``data_faults`` and
``checkpoints`` build on its functions, classes and constants. Every such name is listed here;
``training/__init__.py`` imports this module first, so a release that lacks one fails with one
``ImportError`` naming the supported ``open_clip_torch`` range instead of an ``AttributeError``
deep inside a run.
"""

from __future__ import annotations

import open_clip

from open_clip_sparo.openclip_internals import missing_attributes, supported_range

# module -> the names this package replaces (r) or calls (c) there: every name it patches
# (a test checks each ``patched(...)`` of the package against this list)
REQUIRED: dict[str, tuple[str, ...]] = {
    "open_clip_train.main": (
        "main",  # c: training.main
        "parse_args",  # r: hooks
        "create_model_and_transforms",  # r: hooks
        "create_loss",  # r: hooks (loss_check)
        "train_one_epoch",  # r: hooks, compat (data)
        "setup_logging",  # r: compat
        "get_latest_checkpoint",  # r: compat; c: checkpoints
        "pt_load",  # r: compat (checkpoints)
        "natural_key",  # c: checkpoints
    ),
    "open_clip_train.params": ("parse_args",),  # c: hooks
    "open_clip_train.train": ("train_one_epoch",),  # c: hooks, data
    "open_clip_train.zero_shot": ("accuracy",),  # r: compat
    "open_clip_train.logger": ("setup_logging",),  # c: compat
    "open_clip_train.data": (
        "get_wds_dataset",  # r: compat (data); c: data (evaluation data)
        "expand_urls",  # c: data
        "get_dataset_size",  # c: data
        "detshuffle2",  # c: data
        "ResampledShards2",  # c: data
        "group_by_keys_nothrow",  # c: data
        "filter_no_caption_or_no_image",  # c: data_faults
        "DataInfo",  # c: data
        "SharedEpoch",  # c: data
        "_SHARD_SHUFFLE_SIZE",  # c: data
        "_SHARD_SHUFFLE_INITIAL",  # c: data
        "_SAMPLE_SHUFFLE_SIZE",  # c: data
        "_SAMPLE_SHUFFLE_INITIAL",  # c: data
    ),
    "open_clip_train.distributed": ("all_gather_object", "broadcast_object", "is_master"),
    "open_clip.factory": (
        "get_model_config",  # r, c: model_config, hooks
        "parse_model_name",  # c: hooks
        "load_state_dict",  # r: compat (checkpoints)
    ),
    "torch": ("save",),  # r: compat (atomic writes)
    "torch.nn.parallel": ("DistributedDataParallel",),  # r: compat
}


def missing_names() -> list[str]:
    """The names in :data:`REQUIRED` the installed packages lack."""
    return missing_attributes(REQUIRED)


def unsupported_message(what: str) -> str:
    """``what`` went wrong because the installed release differs; the message says what to do."""
    return (
        f"{what}: the installed open_clip_torch {open_clip.__version__} (open_clip_train) is "
        f"not one this package supports; install {supported_range()} (docs/compatibility.md)."
    )


def check() -> None:
    """Raise ``ImportError`` naming the supported range when a name is missing."""
    missing = missing_names()
    if missing:
        raise ImportError(unsupported_message(f"missing {', '.join(missing)}"))


check()
