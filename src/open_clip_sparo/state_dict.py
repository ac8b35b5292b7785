"""Checks that a state dict fits a model (SPARO's, the controls', OpenCLIP's), with errors that
say what to do instead of PyTorch's long lists of keys or OpenCLIP's bare assertions."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping

import torch

# parameters a plain CLIP checkpoint has and a SPARO model never has
PLAIN_CLIP_KEYS = ("text_projection", "visual.proj")

READOUT_PREFIXES = ("visual.sparo.", "text_sparo.")
NO_READOUT = "no SPARO read-out"

# buffers a scripted model's state holds though no model saves them: TorchScript's state_dict()
# keeps non-persistent buffers, and OpenCLIP's CLIP keeps its causal mask as one
SCRIPTED_BUFFERS = ("attn_mask",)

# OpenCLIP's loader resizes position embeddings of another length (same width) and reshapes a
# scalar logit scale or bias, so these fit when their last dimension (their size) does
_RESIZED_ON_LOAD = ("positional_embedding", "visual.positional_embedding")
_RESHAPED_ON_LOAD = ("logit_scale", "logit_bias")
# the tensors that tell a model's size first, in this order
_SIZE_KEYS = (
    "visual.conv1.weight",
    "visual.positional_embedding",
    "token_embedding.weight",
    "positional_embedding",
)
_BLOCKS = {"visual": re.compile(r"visual\.transformer\.resblocks\.(\d+)\."),
           "text": re.compile(r"transformer\.resblocks\.(\d+)\.")}  # fmt: skip

# state_dict -> the registered models whose tensors (names and shapes) it holds; the registry
# registers one (it knows the configs)
ModelFinder = Callable[[Mapping[str, torch.Tensor]], list[str]]
_FINDERS: list[ModelFinder] = []

# (model, state_dict, strict) -> the state dict in this project's layout, or None when the
# adapter does not know the layout; the authors' fork registers one (open_clip_sparo.fork)
StateDictAdapter = Callable[
    [torch.nn.Module, Mapping[str, torch.Tensor], bool], Mapping[str, torch.Tensor] | None
]
_ADAPTERS: list[StateDictAdapter] = []


def register_state_dict_adapter(adapter: StateDictAdapter) -> None:
    """Let SPARO models load checkpoints of another layout; registering twice is a no-op."""
    if adapter not in _ADAPTERS:
        _ADAPTERS.append(adapter)


def adapt_state_dict(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool
) -> Mapping[str, torch.Tensor]:
    """``state_dict`` in this project's layout: the first registered adapter that knows its
    layout converts it; one in this layout is returned as it is."""
    for adapter in _ADAPTERS:
        converted = adapter(model, state_dict, strict)
        if converted is not None:
            return converted
    return state_dict


def register_model_finder(finder: ModelFinder) -> None:
    """Let size errors name the model a checkpoint was trained as; registering twice is a no-op."""
    if finder not in _FINDERS:
        _FINDERS.append(finder)


def trained_as(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """The registered models whose tensors ``state_dict`` holds (by names and shapes)."""
    return next((names for finder in _FINDERS if (names := finder(state_dict))), [])


def without_scripted_buffers(state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """``state_dict`` without :data:`SCRIPTED_BUFFERS` (a ``--torchscript`` checkpoint's extra
    ``attn_mask``), so that every model family loads it; an OrderedDict keeps its metadata."""
    if not any(key in state_dict for key in SCRIPTED_BUFFERS):
        return state_dict
    state_dict = copy.copy(state_dict)
    for key in SCRIPTED_BUFFERS:
        state_dict.pop(key, None)
    return state_dict


def check_finite(state_dict: Mapping[str, torch.Tensor], what: str = "the checkpoint") -> None:
    """Raise a ``ValueError`` naming the tensors of ``state_dict`` that hold NaN or infinite
    values: before any comparison of its tensors, which NaN makes fail for the wrong reason."""
    damaged = [k for k, v in state_dict.items() if v.is_floating_point() and not v.isfinite().all()]
    if damaged:
        more = f" and {len(damaged) - 6} more" if len(damaged) > 6 else ""
        raise ValueError(
            f"{what} holds NaN or infinite values in {', '.join(damaged[:6])}{more}: it was saved "
            "by a run that diverged, or is damaged; give an earlier checkpoint of the run."
        )


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise a ``ValueError`` that says what to do when ``state_dict`` cannot fit ``model``.

    Catches the two mistakes PyTorch (or OpenCLIP's position-embedding resizing, with a bare
    assertion) reports badly: a plain OpenCLIP checkpoint given to a SPARO model, and a
    checkpoint of other sizes, named with the model it was trained as where its tensors tell
    and the mismatching sizes first. Position embeddings of another length and the same width
    fit: OpenCLIP's loader resizes them.
    """
    own = model.state_dict()
    has_readout = any(k.startswith(READOUT_PREFIXES) for k in state_dict)
    model_has_readout = any(k.startswith(READOUT_PREFIXES) for k in own)
    if model_has_readout and not has_readout and any(k in state_dict for k in PLAIN_CLIP_KEYS):
        raise ValueError(
            "this is a plain OpenCLIP checkpoint (it has projections and no SPARO read-outs), so "
            "it cannot be loaded into a SPARO model directly. Start from it with "
            "`training.main --init-from-clip CHECKPOINT` or convert it once with "
            "`sparo init-from-clip --model sparo-X --clip-checkpoint CHECKPOINT --out merged.pt`."
        )
    mismatched = _shape_mismatches(state_dict, own) + _block_count_mismatches(state_dict, own)
    if not mismatched:
        return
    names = trained_as(state_dict)
    if names:
        model_arg = " or ".join(f"--model {name}" for name in names)
        trained = f"Its tensors are those of {' or '.join(names)}: load it with {model_arg}"
    else:
        trained = "Build the model it was trained with (its run's model config"
        sizes = readout_sizes(state_dict)  # none in another layout, e.g. the authors' fork's
        trained += (
            f"; read-outs: checkpoint {sizes}, model {readout_sizes(own)})"
            if model_has_readout and sizes != NO_READOUT
            else ")"
        )
    raise ValueError(
        "the checkpoint was trained with other sizes than this model (checkpoint vs model): "
        + "; ".join(mismatched[:6])
        + (f"; and {len(mismatched) - 6} more" if len(mismatched) > 6 else "")
        + f". {trained}."
    )


def _shape_mismatches(
    state_dict: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]
) -> list[str]:
    """``name (checkpoint shape) vs (model shape)`` for the tensors of both with other sizes,
    the size-telling tensors first."""
    keys = [k for k in _SIZE_KEYS if k in state_dict] + [
        k for k in state_dict if k not in _SIZE_KEYS
    ]
    mismatched = []
    for key in keys:
        if key not in own:
            continue
        found, wanted = tuple(state_dict[key].shape), tuple(own[key].shape)
        if key in _RESIZED_ON_LOAD:
            fits = found[-1:] == wanted[-1:] and len(found) == len(wanted)
        elif key in _RESHAPED_ON_LOAD:
            fits = state_dict[key].numel() == own[key].numel()
        else:
            fits = found == wanted
        if not fits:
            mismatched.append(f"{key} {_shape(found)} vs {_shape(wanted)}")
    return mismatched


def _block_count_mismatches(
    state_dict: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]
) -> list[str]:
    """``<tower> blocks N vs M`` for each tower with another number of transformer blocks."""
    mismatched = []
    for tower, pattern in _BLOCKS.items():
        found, wanted = _count_blocks(state_dict, pattern), _count_blocks(own, pattern)
        if found and wanted and found != wanted:
            mismatched.append(f"{tower} blocks {found} vs {wanted}")
    return mismatched


def _count_blocks(keys: Iterable[str], pattern: re.Pattern[str]) -> int:
    return len({m.group(1) for key in keys if (m := pattern.match(key))})


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(map(str, shape)) + ")"


def readout_sizes(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The read-out sizes a state dict implies, for error messages."""
    parts = []
    for prefix in READOUT_PREFIXES:
        queries = state_dict.get(prefix + "queries")
        out = state_dict.get(prefix + "out.weight")
        key = state_dict.get(prefix + "key.weight")
        if out is None or key is None:
            continue
        sizes = {"readout_out_dim": out.shape[0], "value_dim": out.shape[1]}
        if queries is not None:
            sizes.update(num_slots=queries.shape[0], attn_dim=queries.shape[1])
            sizes["num_heads"] = key.shape[0] // queries.shape[1]
        parts.append(prefix.rstrip(".") + " " + ", ".join(f"{k}={v}" for k, v in sizes.items()))
    return "; ".join(parts) or NO_READOUT
