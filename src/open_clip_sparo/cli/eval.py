"""``sparo eval``: CLIP_benchmark's ``eval`` for SPARO models, optionally on a slot subset."""

from __future__ import annotations

from ..evaluation import evaluate


def main(argv: list[str]) -> int:
    return evaluate(argv)
