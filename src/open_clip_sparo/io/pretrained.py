"""A CLIP checkpoint named as OpenCLIP's ``pretrained=`` names it: a path, a pretrained tag or
an ``hf-hub:`` id, resolved to a local file through OpenCLIP's own download code (its
Hugging Face hub cache; ``HF_HUB_OFFLINE=1`` keeps it to the cache)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from open_clip.pretrained import (
    download_pretrained,
    download_pretrained_from_hf,
    get_pretrained_cfg,
    list_pretrained_tags_by_model,
)

from ..openclip_internals import HF_HUB_PREFIX


def resolve_pretrained(model_name: str, tag_or_path: str) -> Path:
    """The local file of ``tag_or_path``: an existing file, a pretrained tag of ``model_name``
    (``open_clip.list_pretrained_tags_by_model``) or ``hf-hub:ORG/NAME``.

    Raises ``FileNotFoundError`` with one line naming the tag and the hub cache when it is
    neither a file nor a known tag, or not cached while offline (or unreachable online)."""
    if Path(tag_or_path).is_file():
        return Path(tag_or_path)
    if tag_or_path.startswith(HF_HUB_PREFIX):
        what = f"the hub model {tag_or_path}"
        fetch = partial(download_pretrained_from_hf, tag_or_path[len(HF_HUB_PREFIX) :])
    else:
        cfg = get_pretrained_cfg(model_name, tag_or_path)
        if not cfg:
            raise FileNotFoundError(
                f"{tag_or_path!r} is neither a file nor a pretrained tag of {model_name} (its "
                f"tags: {list_pretrained_tags_by_model(model_name) or 'none'}); give a "
                "checkpoint's path, a tag or hf-hub:ORG/NAME."
            )
        what = f"the pretrained tag {tag_or_path!r} of {model_name}"
        fetch = partial(download_pretrained, cfg)
    try:
        return Path(fetch())
    except (OSError, RuntimeError) as error:  # OpenCLIP's wrapping of hub and URL errors
        from huggingface_hub import constants  # imported by OpenCLIP's download code

        raise FileNotFoundError(
            f"{what} is not in the Hugging Face hub cache {constants.HF_HUB_CACHE} and could "
            f"not be downloaded (HF_HUB_OFFLINE={int(constants.HF_HUB_OFFLINE)}); download it "
            "once online, or give the checkpoint's path."
        ) from error
