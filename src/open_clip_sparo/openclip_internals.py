"""OpenCLIP's private surface: every name open_clip_sparo uses that OpenCLIP does not promise.

OpenCLIP has no plugin mechanism, so SPARO relies on a few of its internals: the factory's module
globals (the model classes and the config reader ``create_model`` looks up when it runs, the
config search path and registry, the checkpoint reader and loader, the model-name prefixes), the
loader of OpenAI's weights files (``open_clip.openai.load_openai_model``), the
vision tower builder, the class-token helper, the text-tower lock, and the ``VisionTransformer``
methods SPARO overrides or calls (``_embeds``, ``_pool``, ``lock``; the GAP control overrides
``_global_pool``). The rest of the library reaches them only through this module, which checks
them all when it is imported and raises one ``ImportError`` naming the supported
``open_clip_torch`` range when a release lacks any of them.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import open_clip
from open_clip import factory
from open_clip import model as _model
from open_clip import openai as _openai
from open_clip import transformer as _transformer
from open_clip.transformer import VisionTransformer

# the model classes open_clip.factory.create_model looks up by name in its module when it runs
FACTORY_MODEL_CLASSES = ("CLIP", "CustomTextCLIP", "CoCa")
# the config reader create_model and get_tokenizer look up by name in the factory module
FACTORY_CONFIG_READER = "get_model_config"
# the loader of OpenAI's weights files (open_clip.load_openai_model), defined in open_clip.openai
OPENAI_LOADER = "load_openai_model"

_REQUIRED: dict[str, tuple[Any, tuple[str, ...]]] = {
    "open_clip.factory": (
        factory,
        (
            *FACTORY_MODEL_CLASSES,
            FACTORY_CONFIG_READER,
            "_MODEL_CONFIG_PATHS",
            "_MODEL_CONFIGS",
            "_natural_key",
            "HF_HUB_PREFIX",
            "LOCAL_DIR_PREFIX",
            "load_state_dict",
            "load_checkpoint",
        ),
    ),
    "open_clip.model": (_model, ("_build_vision_tower",)),
    # the OpenAI weights loader, replaced in open_clip.openai and where open_clip re-exports it
    "open_clip.openai": (_openai, (OPENAI_LOADER,)),
    "open_clip.transformer": (_transformer, ("_expand_token", "lock_text_tower")),
    "open_clip.transformer.VisionTransformer": (
        VisionTransformer,
        ("_embeds", "_pool", "_global_pool", "lock"),
    ),
}


def supported_range(distribution: str = "open_clip_torch") -> str:
    """The requirement on ``distribution`` this installation declares (pyproject.toml)."""
    try:
        requirements = importlib.metadata.requires("open_clip_sparo") or []
    except importlib.metadata.PackageNotFoundError:
        requirements = []
    name = "[-_.]".join(map(re.escape, re.split(r"[-_.]", distribution)))
    for requirement in requirements:
        match = re.match(rf"{name}\s*(\[[^\]]*\])?\s*([^;]*)", requirement, re.I)
        if match:
            return f"{distribution}{match.group(2).strip()}"
    return f"the {distribution} range in pyproject.toml"


def missing_attributes(required: dict[str, tuple[str, ...]]) -> list[str]:
    """The names of ``required`` (module -> names in it) that the installed modules lack: the
    check of every upstream package's private names this project uses."""
    missing = []
    for module_name, names in required.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            missing.append(module_name)
            continue
        missing += [f"{module_name}.{name}" for name in names if not hasattr(module, name)]
    return missing


def missing_names() -> list[str]:
    """The private OpenCLIP names open_clip_sparo needs that the installed release lacks."""
    missing = [
        f"{where}.{name}"
        for where, (owner, names) in _REQUIRED.items()
        for name in names
        if not hasattr(owner, name)
    ]
    lookups = {
        factory.create_model: (*FACTORY_MODEL_CLASSES, FACTORY_CONFIG_READER),
        factory.get_tokenizer: (FACTORY_CONFIG_READER,),
    }
    missing += [
        f"open_clip.factory.{function.__name__}'s lookup of {name}"
        for function, names in lookups.items()
        for name in names
        if name not in function.__code__.co_names
    ]
    return missing


def check() -> None:
    """Raise ``ImportError`` naming the supported range when a needed name is missing."""
    missing = missing_names()
    if missing:
        raise ImportError(
            f"open_clip_sparo does not support the installed open_clip_torch "
            f"{open_clip.__version__}: it lacks {', '.join(missing)}. Install "
            f"{supported_range()} (docs/compatibility.md)."
        )


check()


HF_HUB_PREFIX: str = factory.HF_HUB_PREFIX
LOCAL_DIR_PREFIX: str = factory.LOCAL_DIR_PREFIX
build_vision_tower = _model._build_vision_tower
expand_token = _transformer._expand_token
lock_text_tower = _transformer.lock_text_tower
# newer OpenCLIP (its main branch) enumerates a ViT's lock groups in a public layer_groups();
# where it does, SparoVisionTransformer.lock adds the read-out as a group instead of faking `proj`
VIT_HAS_LAYER_GROUPS: bool = hasattr(VisionTransformer, "layer_groups")


def install_openai_loader(wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace OpenCLIP's ``load_openai_model`` by ``wrap(it)``, in ``open_clip.openai`` and
    where ``open_clip`` re-exports it."""
    loader = wrap(getattr(_openai, OPENAI_LOADER))
    setattr(_openai, OPENAI_LOADER, loader)
    setattr(open_clip, OPENAI_LOADER, loader)


def openai_loader() -> Callable[..., Any]:
    """OpenCLIP's ``load_openai_model`` as ``open_clip.openai`` holds it now."""
    return getattr(_openai, OPENAI_LOADER)


def model_configs() -> dict[str, dict[str, Any]]:
    """OpenCLIP's registry of model configs by name (what ``list_models`` lists)."""
    return factory._MODEL_CONFIGS


def add_model_configs(configs: dict[str, dict[str, Any]]) -> None:
    """Register ``configs`` (name -> model config) with OpenCLIP's registry, in its name order;
    a config already registered under a name (from a file) wins. They stay registered when
    OpenCLIP rescans its config files (it updates the registry, never clears it)."""
    merged = {**configs, **factory._MODEL_CONFIGS}
    factory._MODEL_CONFIGS = dict(
        sorted(merged.items(), key=lambda item: factory._natural_key(item[0]))
    )


def model_config_paths() -> list[Path]:
    """The folders OpenCLIP's factory reads model configs from (``add_model_config`` appends)."""
    return factory._MODEL_CONFIG_PATHS
