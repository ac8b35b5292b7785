"""Temporarily replacing an attribute: how this package hooks into open_clip_train."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from .internals import unsupported_message


@contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``owner.name`` to ``value`` inside the block and restore the original on exit."""
    if not hasattr(owner, name):
        where = getattr(owner, "__name__", owner)
        raise RuntimeError(unsupported_message(f"{where!r} has no attribute {name!r} to hook"))
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def upstream_call(
    function: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The arguments of a call of the upstream ``function`` by parameter name, defaults filled
    in: a hook that passes ``*args, **kwargs`` through reads what it needs from here."""
    bound = inspect.signature(function).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)
