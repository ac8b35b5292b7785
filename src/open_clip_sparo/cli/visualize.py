"""``sparo visualize``: per-slot attention pictures for image-caption pairs."""

from __future__ import annotations

from ..evaluation import visualize


def main(argv: list[str]) -> int:
    return visualize(argv)
