"""Checks every evaluation command makes on its inputs and on what the model computes.

- :func:`finite_encodings`: a model whose embeddings are NaN or infinite is refused as soon as
  one batch shows it, in every evaluation path (CLIP_benchmark's, the per-slot similarities,
  the slot pictures). Without it a NaN model scores 100% on SugarCrepe: the argmax over NaN
  scores is index 0, the true caption.
- :func:`require_slots`: the commands that work on slots refuse a plain CLIP model up front.
- :func:`positive_int`: the argparse type of counts that must be at least 1;
  :func:`add_model_args`: the model reference options the slot commands share.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

ENCODERS = ("encode_image", "encode_text", "encode_image_slots", "encode_text_slots")


class NonFiniteEmbeddingError(ValueError):
    """A model computed NaN or infinite embeddings: its scores would mean nothing."""


def check_finite(embedding: torch.Tensor, what: str, model: torch.nn.Module, name: str) -> None:
    """Raise :class:`NonFiniteEmbeddingError` unless every value of ``embedding`` is finite."""
    finite = torch.isfinite(embedding)
    if bool(finite.all()):
        return
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    weights = (
        f"{len(bad)} of its weight tensors hold NaN or inf (e.g. {bad[0]}): the checkpoint is "
        "broken, e.g. a diverged run; evaluate an earlier checkpoint"
        if bad
        else "its weights are finite, so the computation overflows (half precision?): "
        "evaluate in float32"
    )
    raise NonFiniteEmbeddingError(
        f"{name} computes non-finite {what} embeddings ({int((~finite).sum())} of "
        f"{finite.numel()} values NaN or inf), so no score would mean anything; {weights}."
    )


@contextmanager
def finite_encodings(model: torch.nn.Module, name: str) -> Iterator[torch.nn.Module]:
    """Within the block, every ``encode_*`` call of ``model`` checks its output is finite."""
    wrapped = [attr for attr in ENCODERS if hasattr(model, attr)]
    for attr in wrapped:
        model.__dict__[attr] = _checked(getattr(model, attr), attr, model, name)
    try:
        yield model
    finally:
        for attr in wrapped:
            model.__dict__.pop(attr, None)


def _checked(
    encode: Callable[..., Any], attr: str, model: torch.nn.Module, name: str
) -> Callable[..., Any]:
    what = "image" if "image" in attr else "text"

    @functools.wraps(encode)
    def checked(*args: Any, **kwargs: Any) -> Any:
        out = encode(*args, **kwargs)
        check_finite(out if isinstance(out, torch.Tensor) else out.slots, what, model, name)
        return out

    return checked


def described(loaded: Any) -> str:
    """A :class:`~open_clip_sparo.io.loading.LoadedModel` for messages: reference and weights."""
    return loaded.reference + (f" ({loaded.weights[-1]})" if loaded.weights else "")


def require_slots(model: torch.nn.Module, name: str, command: str) -> None:
    """Refuse a model without SPARO slots for ``command``, which works on slots."""
    if not hasattr(model, "encode_image_slots"):
        raise ValueError(
            f"{name} is not a SPARO model (a plain {type(model).__name__}, without slots); "
            f"{command} works on slots: give a SPARO model (sparo-*, its checkpoint or run)."
        )


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--pretrained``: the model reference ``open_clip_sparo.load_model``
    takes."""
    parser.add_argument("--model", required=True, help="name, local-dir:DIR or run folder")
    parser.add_argument("--pretrained", default="", help="checkpoint file (for names, runs)")
