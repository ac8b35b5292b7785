"""Where the weights a ``--pretrained`` value names are: a file, a pretrained tag of the model, or
an ``hf-hub:org/repo`` id, checked before any model is built.

A tag resolves as OpenCLIP resolves it (``open_clip.get_pretrained_cfg`` and
``download_pretrained``: the Hugging Face Hub cache, downloading when online). Offline
(``HF_HUB_OFFLINE=1``, which every ``sparo`` command sets unless told otherwise) a tag whose
weights are not in the cache is one line naming the tag, the hub id, ``HF_HUB_OFFLINE`` and the
cache folder, instead of OpenCLIP's traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import open_clip
from huggingface_hub import constants as hub_constants
from open_clip.pretrained import download_pretrained, download_pretrained_from_hf

from ..openclip_internals import HF_HUB_PREFIX


class PretrainedNotFoundError(FileNotFoundError):
    """A pretrained tag or hub id whose weights are neither in the cache nor downloadable."""


def is_pretrained_tag(model_name: str, tag: str) -> bool:
    """Whether ``tag`` is one of OpenCLIP's pretrained tags of ``model_name``."""
    return bool(open_clip.get_pretrained_cfg(model_name, tag))


def resolve_pretrained(model_name: str, tag_or_path: str, cache_dir: str | None = None) -> Path:
    """The weights file ``tag_or_path`` names for ``model_name``: an existing path as is, a
    pretrained tag of the model or an ``hf-hub:org/repo`` id through the hub cache
    (``cache_dir``, default the Hugging Face cache; downloaded when online). Raises
    :class:`PretrainedNotFoundError`, one line, when it cannot be found."""
    if tag_or_path.startswith(HF_HUB_PREFIX):
        hub_id = tag_or_path[len(HF_HUB_PREFIX) :]
        return _fetched(
            f"the hub model {tag_or_path!r}",
            hub_id,
            cache_dir,
            lambda: download_pretrained_from_hf(hub_id, cache_dir=cache_dir),
        )
    if is_pretrained_tag(model_name, tag_or_path):
        cfg = open_clip.get_pretrained_cfg(model_name, tag_or_path)
        hub_id = cfg.get("hf_hub") or cfg.get("url", "")
        return _fetched(
            f"the pretrained tag {tag_or_path!r} of {model_name!r}",
            hub_id,
            cache_dir,
            lambda: download_pretrained(cfg, cache_dir=cache_dir),
        )
    path = Path(tag_or_path)
    if path.exists():
        return path
    raise PretrainedNotFoundError(
        f"{tag_or_path!r} is neither a file nor a pretrained tag of {model_name!r} "
        f"{open_clip.list_pretrained_tags_by_model(model_name)} nor an hf-hub:org/repo id."
    )


def _fetched(what: str, hub_id: str, cache_dir: str | None, fetch: Callable[[], str]) -> Path:
    cache = cache_dir or hub_constants.HF_HUB_CACHE
    try:
        found = fetch()
    except Exception as error:  # OpenCLIP wraps every hub and download failure alike
        if hub_constants.is_offline_mode():
            fix = (
                f"HF_HUB_OFFLINE=1 is set and its weights are not in the cache {cache}: run once "
                "with HF_HUB_OFFLINE=0 to download them, or give --pretrained FILE"
            )
        else:
            fix = (
                f"its weights could not be downloaded into {cache} ({type(error).__name__}): "
                "check the network, or give --pretrained FILE"
            )
        raise PretrainedNotFoundError(f"{what} (hub id {hub_id}) was not found: {fix}.") from None
    if not found:
        raise PretrainedNotFoundError(f"{what} (hub id {hub_id}) names no weights file.")
    return Path(found)
