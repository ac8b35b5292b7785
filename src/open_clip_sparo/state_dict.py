"""Checks that a state dict fits a SPARO model, with errors that say what to do instead of
PyTorch's long lists of keys."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

# parameters a plain CLIP checkpoint has and a SPARO model never has
PLAIN_CLIP_KEYS = ("text_projection", "visual.proj")

READOUT_PREFIXES = ("visual.sparo.", "text_sparo.")

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


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise a ``ValueError`` that says what to do when ``state_dict`` cannot fit ``model``.

    Catches the two mistakes PyTorch reports only as long key lists: a plain OpenCLIP
    checkpoint given to a SPARO model, and a SPARO checkpoint of other sizes.
    """
    has_readout = any(k.startswith(READOUT_PREFIXES) for k in state_dict)
    if not has_readout and any(k in state_dict for k in PLAIN_CLIP_KEYS):
        raise ValueError(
            "this is a plain OpenCLIP checkpoint (it has projections and no SPARO read-outs), so "
            "it cannot be loaded into a SPARO model directly. Start from it with "
            "`training.main --init-from-clip CHECKPOINT` or convert it once with "
            "`sparo init-from-clip --model sparo-X --clip-checkpoint CHECKPOINT --out merged.pt`."
        )
    own = model.state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if mismatched:
        raise ValueError(
            "the checkpoint was trained with other sizes than this model "
            f"(checkpoint {readout_sizes(state_dict)}, model {readout_sizes(own)}); "
            "build the model with the checkpoint's sparo_cfg (or its run's model config). "
            "Mismatched tensors: "
            + "; ".join(mismatched[:8])
            + (f"; and {len(mismatched) - 8} more" if len(mismatched) > 8 else "")
        )


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
    return "; ".join(parts) or "no SPARO read-out"
