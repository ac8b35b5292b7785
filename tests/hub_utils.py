"""A fake Hugging Face hub cache, laid out as ``huggingface_hub`` writes one, for offline tests of
pretrained-tag resolution."""

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

REVISION = "0123456789abcdef0123456789abcdef01234567"


def use_hub_cache(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """Point ``huggingface_hub`` at ``cache``, offline (it read its environment on import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def write_hub_file(
    cache: Path, repo_id: str, filename: str, write: Callable[[BinaryIO], None]
) -> Path:
    """``models--ORG--NAME/snapshots/REV/filename`` and ``refs/main`` under ``cache``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    path = repo / "snapshots" / REVISION / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        write(file)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return path
