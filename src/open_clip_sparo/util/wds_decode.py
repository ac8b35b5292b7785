"""WebDataset decoding that runs no code from the data.

WebDataset's default decoders turn a sample's ``pyd``, ``pickle`` and ``pkl`` files into objects
with :func:`pickle.loads` and its ``pth`` files with :func:`torch.load`, so a shard downloaded
from anywhere can run code on the machine that reads it, even when training never reads those
files. This package's pipelines decode only the files they read (:func:`decode_only`); while
``sparo`` commands and ``training.main`` run, WebDataset leaves those files undecoded
(:func:`pickles_undecoded`), for the loaders of CLIP_benchmark and of open_clip_train's
``--val-data``, which decode every file of a sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import webdataset as wds
from webdataset import autodecode

# the file extensions WebDataset decodes by running code from the file
CODE_RUNNING_EXTENSIONS = ("pyd", "pickle", "pkl", "pth")


def decode_only(
    image_spec: str, keys: Iterable[str], handler: Callable[[Exception], bool]
) -> Callable[[Iterable[dict[str, Any]]], Iterator[dict[str, Any]]]:
    """Pipeline stage: decodes a sample's files under ``keys`` (images as ``image_spec``, e.g.
    ``"pilrgb"``), and leaves its other files as bytes; ``handler`` gets each decoding error."""
    return wds.decode(image_spec, only=list(keys), handler=handler)


def _undecoded(data: bytes) -> bytes:
    return data


@contextmanager
def pickles_undecoded() -> Iterator[None]:
    """Within: WebDataset's default decoders leave files of :data:`CODE_RUNNING_EXTENSIONS` as
    bytes, in this process and in DataLoader workers it forks (Linux's default start method up
    to Python 3.13); workers started by spawn or forkserver import WebDataset afresh."""
    undecoded = dict.fromkeys(CODE_RUNNING_EXTENSIONS, _undecoded)
    with mock.patch.dict(autodecode.decoders, undecoded):
        yield
