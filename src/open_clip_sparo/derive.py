"""``sparo-<name>``: the SPARO twin of every OpenCLIP model config SPARO can read.

A derived config is its base config with two changes: a ``sparo_cfg`` block (the paper's
defaults, :class:`~open_clip_sparo.SparoCfg`: 64 slots of 64 dims, one block fewer per tower)
and ``embed_dim = num_slots * slot_dim``. Everything else (towers, image size, tokenizer,
``quick_gelu``, ...) is the base config's, so OpenCLIP's tokenizer and preprocessing for
``sparo-X`` are ``X``'s. A config file shipped under the same name wins over the derived one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .config import SparoCfg
from .towers import sparo_support

DERIVED_PREFIX = "sparo-"
# model config blocks that make a config one of this project's own (SPARO or a control)
_OWN_BLOCKS = ("sparo_cfg", "control_cfg")


def derive_config(base_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``sparo-X`` config of ``X``'s model config ``base_cfg`` (``ValueError`` with the
    reason when SPARO cannot read its towers)."""
    reason = sparo_support(base_cfg)
    if reason is not None:
        raise ValueError(f"SPARO cannot read this model: {reason}.")
    sparo = SparoCfg()
    return {
        **copy.deepcopy(dict(base_cfg)),
        "embed_dim": sparo.embed_dim,
        "sparo_cfg": sparo.to_dict(),
    }


def derived_configs(configs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``sparo-<name>`` -> derived config, for every plain config in ``configs`` (name ->
    model config) whose towers SPARO can read."""
    return {
        DERIVED_PREFIX + name: derive_config(cfg)
        for name, cfg in configs.items()
        if not any(block in cfg for block in _OWN_BLOCKS) and sparo_support(cfg) is None
    }


def baseline_name(model_name: str) -> str:
    """The base model ``X`` of ``sparo-X`` (the name itself for any other name)."""
    return model_name.removeprefix(DERIVED_PREFIX)


def missing_model_error(model_name: str, configs: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why the ``sparo-*`` name ``model_name`` is not in ``configs`` (name -> model config), in
    one line; ``None`` for other names (OpenCLIP reports those)."""
    if not model_name.startswith(DERIVED_PREFIX):
        return None
    base = baseline_name(model_name)
    if base not in configs:
        return (
            f"unknown model {model_name!r}: OpenCLIP has no model config {base!r} to derive it "
            f"from; {DERIVED_PREFIX}<name> exists for every OpenCLIP transformer config "
            "(open_clip.list_models())."
        )
    reason = sparo_support(configs[base]) or "it is not a plain OpenCLIP model config"
    return (
        f"model {model_name!r} does not exist: SPARO cannot read {base} because {reason}; "
        f"see the supported tower kinds in docs/model.md."
    )
