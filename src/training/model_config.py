"""``--model-kwargs``: a JSON object deep-merged into the model config OpenCLIP's factory reads."""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from open_clip import factory

from .patching import patched


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in: nested objects merge key by key, other values
    replace. Neither input is modified."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_model_kwargs(text: str) -> dict[str, Any]:
    """argparse type of ``--model-kwargs``: a JSON object of model config keys."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"--model-kwargs is not valid JSON ({error}); quote it for the shell, e.g. "
            """--model-kwargs '{"sparo_cfg": {"num_slots": 32, "slot_dim": 128}}'."""
        ) from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"--model-kwargs must be a JSON object of model config keys, got {text!r}."
        )
    return value


@contextmanager
def merged_model_config(model_name: str, overrides: Mapping[str, Any]) -> Iterator[None]:
    """Inside the block, OpenCLIP sees ``model_name``'s registered config deep-merged with
    ``overrides``.

    ``create_model`` and ``get_tokenizer`` both read registered configs through the module global
    ``open_clip.factory.get_model_config``, so replacing it makes the model, its ``--force-*``
    options and its tokenizer agree on the merged config. (``create_model``'s own
    ``**model_kwargs`` replace top-level keys whole and bypass ``--force-*`` and the tokenizer.)
    """
    if factory.parse_model_name(model_name)[0] is not None:
        raise ValueError(
            f"--model-kwargs needs a registered model name, got {model_name!r}; edit that "
            "model's open_clip_config.json instead, or use a registered name such as "
            "sparo-ViT-B-16."
        )
    read_config = factory.get_model_config
    if read_config(model_name) is None:
        raise ValueError(
            f"--model-kwargs: no registered model config {model_name!r}; choose one of "
            "open_clip.list_models()."
        )
    target = model_name.replace("/", "-")

    def get_model_config(name: str) -> dict[str, Any] | None:
        config = read_config(name)
        if config is None or name.replace("/", "-") != target:
            return config
        return deep_merge(config, overrides)

    with patched(factory, "get_model_config", get_model_config):
        yield
