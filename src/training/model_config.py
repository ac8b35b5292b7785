"""``--model-kwargs``: a JSON object deep-merged into the model config OpenCLIP's factory reads."""

from __future__ import annotations

import argparse
import copy
import difflib
import inspect
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

from open_clip import CLIP, CLIPTextCfg, CLIPVisionCfg, CoCa, factory
from open_clip.coca_model import MultimodalCfg

from open_clip_sparo import SparoCfg, SparoCLIP
from open_clip_sparo.controls.config import ControlCfg
from open_clip_sparo.controls.models import CONTROL_CLASSES

from .patching import patched

# the nested objects of a model config, and the dataclass each one becomes
CONFIG_BLOCKS = {
    "vision_cfg": CLIPVisionCfg,
    "text_cfg": CLIPTextCfg,
    "sparo_cfg": SparoCfg,
    "control_cfg": ControlCfg,
    "multimodal_cfg": MultimodalCfg,
}


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


def model_config_keys(config: Mapping[str, Any]) -> list[str]:
    """Top-level keys a model config may hold: the constructor arguments of the class OpenCLIP's
    factory builds from it (``CoCa`` with ``multimodal_cfg``, else ``CLIP`` or, once
    ``open_clip_sparo`` is imported and with ``sparo_cfg``, ``SparoCLIP``), and ``custom_text``."""
    classes = (
        (CoCa,) if "multimodal_cfg" in config else (CLIP, SparoCLIP, *CONTROL_CLASSES.values())
    )
    keys = {"custom_text"}  # read by the factory itself
    for cls in classes:
        keys.update(
            name
            for name, parameter in inspect.signature(cls).parameters.items()
            if parameter.kind is not parameter.VAR_KEYWORD
        )
    return sorted(keys - {"cast_dtype", "output_dict"})  # the factory's own arguments


def check_model_kwargs(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    """Raise a ``ValueError`` naming any key of ``overrides`` (top-level, or inside
    ``vision_cfg``, ``text_cfg``, ``sparo_cfg``, ``multimodal_cfg``) that the model config
    ``config`` merged with ``overrides`` cannot take, with the keys it can take."""
    merged = deep_merge(config, overrides)
    _check_keys("", overrides, model_config_keys(merged))
    for block, cfg_class in CONFIG_BLOCKS.items():
        if block not in overrides:
            continue
        if not isinstance(overrides[block], Mapping):
            raise ValueError(
                f"--model-kwargs: {block} must be a JSON object of {block} keys, got "
                f'{overrides[block]!r}; e.g. {{"{block}": {{...}}}}.'
            )
        _check_keys(f"{block}.", overrides[block], sorted(f.name for f in fields(cfg_class)))


def _check_keys(prefix: str, overrides: Mapping[str, Any], allowed: list[str]) -> None:
    for key in overrides:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = f"in {prefix[:-1]}" if prefix else "at the top level"
            raise ValueError(
                f"--model-kwargs: unknown key {prefix + key!r}{hint}; the keys allowed {where} "
                f"are {allowed}."
            )


@contextmanager
def merged_model_config(model_name: str, overrides: Mapping[str, Any]) -> Iterator[None]:
    """Inside the block, OpenCLIP sees ``model_name``'s registered config deep-merged with
    ``overrides`` (checked by :func:`check_model_kwargs`).

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
    registered = read_config(model_name)
    if registered is None:
        raise ValueError(
            f"--model-kwargs: no registered model config {model_name!r}; choose one of "
            "open_clip.list_models()."
        )
    check_model_kwargs(registered, overrides)
    target = model_name.replace("/", "-")

    def get_model_config(name: str) -> dict[str, Any] | None:
        config = read_config(name)
        if config is None or name.replace("/", "-") != target:
            return config
        return deep_merge(config, overrides)

    with patched(factory, "get_model_config", get_model_config):
        yield
