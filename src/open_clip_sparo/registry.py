"""Registration with OpenCLIP's factory: the ``sparo-*`` configs (shipped and derived,
``derive.py``) and the model-class hook.

OpenCLIP has no plugin mechanism. ``create_model`` looks the names ``CLIP``, ``CustomTextCLIP``
and ``CoCa`` up in ``open_clip.factory`` when it runs, and passes every config key to the
constructor. Replacing ``open_clip.factory.CLIP`` with a dispatcher that builds ``SparoCLIP`` for
configs with a ``sparo_cfg`` reaches every entry point, including callers that imported the
factory functions earlier (``open_clip_train`` does). The factory's weights reader and loader
are replaced the same way: every ``pretrained=`` file is read by the package's checkpoint reader
(tensors only), and checked against the model (``state_dict.check_state_dict``) before OpenCLIP
resizes anything. The factory's config reader is wrapped too, so
that a ``sparo-*`` name without a config fails with one line saying why. OpenCLIP's loader of
OpenAI's weights files (``open_clip.load_openai_model``) reads a state-dict file with ``torch.load``
without ``weights_only``; it is replaced so that such a file goes through the package's reader
too, while tags and TorchScript archives go to OpenCLIP's loader (``torch.jit.load``).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import open_clip
import torch

from .controls.models import build_control
from .derive import derived_configs, missing_model_error
from .model import SparoCLIP
from .openclip_internals import (
    FACTORY_CONFIG_READER,
    FACTORY_MODEL_CLASSES,
    add_model_configs,
    factory,  # its model classes and config reader are replaced by the hooks
    install_openai_loader,
    model_config_paths,
    model_configs,
    openai_loader,
)
from .state_dict import (
    SCRIPTED_BUFFERS,
    check_state_dict,
    register_model_finder,
    without_scripted_buffers,
)
from .util.files import UnreadableFileError, is_torchscript_archive, read_state_dict

CONFIG_DIR = Path(__file__).parent / "model_configs"
_MARK = "__sparo_dispatch__"


def register() -> None:
    """Register the configs and install the factory hook; safe to call any number of times.

    ``openclip_internals`` has checked, on import, that the factory looks the hooked classes up
    by name."""
    _install_hooks()
    _register_configs()
    add_model_configs(derived_configs(model_configs()))


def read_weights(
    checkpoint_path: str,
    device: Any = "cpu",
    weights_only: bool = True,
    *,
    what: str = "the checkpoint",
) -> dict[str, Any]:
    """Replaces OpenCLIP's ``load_state_dict`` (same arguments): the package's checkpoint reader,
    tensors only whatever ``weights_only`` says (OpenCLIP retries some failures without it), with
    one-line errors naming the file as ``what``."""
    state_dict = read_state_dict(checkpoint_path, what, "give a model's weights.")
    state_dict = without_scripted_buffers(state_dict)  # --torchscript checkpoints, every family
    return {key: tensor.to(device) for key, tensor in state_dict.items()}


def _checked_load(original: Callable[..., Any]) -> Callable[..., Any]:
    """OpenCLIP's ``load_checkpoint``, after checking that the file's tensors fit the model:
    OpenCLIP resizes position embeddings first and asserts on another width
    (``text pos_embed width changed!``) before PyTorch would name a mismatch."""

    @functools.wraps(original)
    def load_checkpoint(
        model: torch.nn.Module, checkpoint_path: str, strict: bool = True, *args: Any, **kwargs: Any
    ) -> Any:
        if strict and Path(checkpoint_path).suffix not in (".npz", ".npy"):  # not big_vision's
            try:
                state_dict = read_state_dict(checkpoint_path, lazy=True)
            except (UnreadableFileError, OSError):
                state_dict = None  # reported, naming the file, by the reader OpenCLIP calls next
            if state_dict is not None:
                check_state_dict(model, state_dict)
        return original(model, checkpoint_path, strict, *args, **kwargs)

    setattr(load_checkpoint, _MARK, True)
    return load_checkpoint


def _openai_weights_read_safely(original: Callable[..., Any]) -> Callable[..., Any]:
    """OpenCLIP's ``load_openai_model``, a state-dict file (neither a tag nor a TorchScript
    archive) first read by the package's checkpoint reader: OpenCLIP reads such a file with
    ``torch.load`` without ``weights_only``, so it gets only a file that holds nothing but
    tensors. Tags and archives go to OpenCLIP as they are (a tag's file is checked against the
    SHA-256 in its URL; ``torch.jit.load`` runs no pickled Python)."""

    @functools.wraps(original)
    def load_openai_model(name: str, *args: Any, **kwargs: Any) -> torch.nn.Module:
        if (
            not open_clip.get_pretrained_url(name, "openai")
            and os.path.isfile(name)
            and not is_torchscript_archive(name)
        ):
            read_state_dict(
                name,
                "the OpenAI checkpoint",
                "give OpenAI's TorchScript archive, or a state dict in its layout.",
            )
        return original(name, *args, **kwargs)

    setattr(load_openai_model, _MARK, True)
    return load_openai_model


@functools.cache
def _registered_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """The tensor names and shapes of this package's configs and their OpenCLIP baselines
    (built on the ``meta`` device: no memory, no time)."""
    ours = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
    baselines = sorted({name.split("-", 1)[1] for name in ours if not name.startswith("ViT")})
    shapes = {}
    for name in ours + [b for b in baselines if b not in ours]:
        config = open_clip.get_model_config(name)
        if config is None:
            continue
        with torch.device("meta"):
            model = factory.CLIP(**config)
        shapes[name] = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    return shapes


def registered_models_of(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """The registered models (this package's and their baselines) whose tensors, by names and
    shapes, ``state_dict`` holds."""
    found = {k: tuple(v.shape) for k, v in state_dict.items() if k not in SCRIPTED_BUFFERS}
    return [name for name, shapes in _registered_shapes().items() if shapes == found]


def _install_hooks() -> None:
    factory.load_state_dict = read_weights
    if not getattr(factory.load_checkpoint, _MARK, False):
        factory.load_checkpoint = _checked_load(factory.load_checkpoint)
    register_model_finder(registered_models_of)
    if not getattr(factory.CLIP, _MARK, False):
        factory.CLIP = _dispatch(factory.CLIP)
    for name in FACTORY_MODEL_CLASSES[1:]:
        if not getattr(getattr(factory, name), _MARK, False):
            setattr(factory, name, _reject_sparo(getattr(factory, name)))
    if not getattr(openai_loader(), _MARK, False):
        install_openai_loader(_openai_weights_read_safely)
    reader = getattr(factory, FACTORY_CONFIG_READER)
    if not getattr(reader, _MARK, False):
        setattr(factory, FACTORY_CONFIG_READER, _explain_missing_sparo(reader))


def _dispatch(original: type) -> Callable[..., Any]:
    @functools.wraps(original, updated=())
    def build(*args: Any, **kwargs: Any) -> Any:
        if "sparo_cfg" in kwargs:
            if "multimodal_cfg" in kwargs:  # a CoCa config without custom_text
                raise _route_error("CoCa")
            return SparoCLIP(*args, **kwargs)
        if "control_cfg" in kwargs:  # the paper's controls (controls.py)
            return build_control(*args, **kwargs)
        return original(*args, **kwargs)

    setattr(build, _MARK, True)
    return build


def _reject_sparo(original: type) -> Callable[..., Any]:
    @functools.wraps(original, updated=())
    def build(*args: Any, **kwargs: Any) -> Any:
        if "sparo_cfg" in kwargs or "control_cfg" in kwargs:
            raise _route_error(original.__name__)
        return original(*args, **kwargs)

    setattr(build, _MARK, True)
    return build


def _explain_missing_sparo(read_config: Callable[[str], Any]) -> Callable[[str], Any]:
    """OpenCLIP's config reader, raising one line for a ``sparo-*`` name it has no config for
    (instead of the factory's list of every model)."""

    @functools.wraps(read_config)
    def get_model_config(model_name: str) -> Any:
        config = read_config(model_name)
        if config is None:
            message = missing_model_error(model_name.replace("/", "-"), model_configs())
            if message is not None:
                raise ValueError(message)
        return config

    setattr(get_model_config, _MARK, True)
    return get_model_config


def _route_error(route: str) -> ValueError:
    return ValueError(
        f"a SPARO config reached OpenCLIP's {route} route; SPARO models use OpenCLIP's own text "
        "transformer: remove `custom_text`, `hf_model_name` or `multimodal_cfg` from the config "
        "and do not pass force_custom_text=True."
    )


def _register_configs() -> None:
    if CONFIG_DIR in model_config_paths():
        return
    ours = {p.stem for p in CONFIG_DIR.glob("*.json")}
    clashes = sorted(ours & set(open_clip.list_models()))
    if clashes:
        logging.warning(
            "open_clip_sparo's configs %s replace OpenCLIP configs of the same name.", clashes
        )
    open_clip.add_model_config(CONFIG_DIR)
