"""``sparo select``: choose the slots (concepts) that serve a task best."""

from __future__ import annotations

from ..evaluation import select


def main(argv: list[str]) -> int:
    return select(argv)
