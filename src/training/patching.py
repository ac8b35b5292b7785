"""Temporarily replacing an attribute: how this package hooks into open_clip_train."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``owner.name`` to ``value`` inside the block and restore the original on exit."""
    if not hasattr(owner, name):
        raise RuntimeError(
            f"{getattr(owner, '__name__', owner)!r} has no attribute {name!r} to hook; install "
            "the open_clip_torch / open_clip_train versions pinned in requirements.txt (3.3.0)."
        )
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)
