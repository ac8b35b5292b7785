"""Reading state dicts written by the authors' own code (``ankitkv/sparo-clip``, a fork of
OpenCLIP 2.20) into this project's layout (docs/fork.md).

Only the read-outs differ; every other tensor (towers, norms, ``logit_scale``) has the same name
and shape in both. Per read-out (``visual.sparo.`` and ``text_sparo.``):

| the fork | here |
| --- | --- |
| ``q_emb (1, heads, L / heads, 1, a)`` | ``queries (L, a)``, slot ``head * L / heads + s`` |
| ``k.*`` | ``key.*`` |
| ``v.*`` | ``value.*``; with ``share_kv`` the fork registers ``k`` again as ``v``: dropped |
| ``proj.*`` | ``out.*``; with softmax slot weights the logit row moves from first to last |

With ``share_queries`` the fork's ``text_sparo.q_emb`` is the vision tensor: dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from ..config import SparoCfg
from ..state_dict import check_finite

READOUTS = ("visual.sparo.", "text_sparo.")
# parameters of the fork's bottleneck option, which its SPARO embeddings never use
UNUSED_FORK_PREFIXES = ("vision_bottleproj.", "text_bottleproj.")
_RENAMES = {"k": "key", "v": "value", "proj": "out"}  # the fork's module -> this project's
_FIX = (
    "convert the checkpoint with its training config instead: "
    "`sparo convert-fork --config FORK.json --checkpoint CKPT --out DIR` (docs/fork.md)."
)

logger = logging.getLogger(__name__)


def is_fork_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True when ``state_dict`` has a read-out as the authors' fork names it (``q_emb``)."""
    return any(key.startswith(READOUTS) and key.endswith(".q_emb") for key in state_dict)


def adapt_fork_state_dict(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool
) -> dict[str, torch.Tensor] | None:
    """The state-dict adapter for SPARO models: a checkpoint in the fork's layout converted for
    ``model`` (checked against its state dict when ``strict``), or None for any other layout."""
    if not is_fork_layout(state_dict):
        return None
    check_finite(state_dict)  # NaN != NaN: before the fork's shared tensors are compared
    return from_fork_layout(state_dict, model.sparo_cfg, model.state_dict() if strict else None)


def from_fork_layout(
    state_dict: Mapping[str, torch.Tensor],
    cfg: SparoCfg,
    target: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The state dict of a model built with ``cfg`` holding the fork's tensors.

    Raises ``ValueError`` naming the keys when the fork's tensors contradict ``cfg``
    (``share_kv``, ``share_queries``), are not the fork's read-out parameters, or (given the
    model's own state dict ``target``) do not have the model's read-out names and shapes.
    """
    converted: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    dropped: list[str] = []
    for key, tensor in state_dict.items():
        prefix = next((p for p in READOUTS if key.startswith(p)), None)
        if prefix is None:
            if key.startswith(UNUSED_FORK_PREFIXES):
                dropped.append(key)
            else:
                converted[key] = tensor
            continue
        name = key[len(prefix) :]
        if name == "q_emb":
            if tensor.ndim != 5:
                problems.append(f"{key} has shape {tuple(tensor.shape)}, not the fork's 5 dims")
                continue
            converted[prefix + "queries"] = tensor.reshape(-1, tensor.shape[-1])
        elif (module := name.partition(".")[0]) in _RENAMES and name.count(".") == 1:
            converted[prefix + _RENAMES[module] + name[len(module) :]] = tensor
        else:
            problems.append(f"{key} is not a parameter of the fork's read-out")
    for prefix in READOUTS:
        _fold_shared_kv(converted, prefix, cfg, problems, dropped)
        _rotate_logit(converted, prefix, cfg)
    if cfg.share_queries:
        _drop_shared_queries(converted, problems, dropped)
    if target is not None:
        problems.extend(_readout_mismatches(converted, target))
    if problems:
        raise ValueError(
            "this checkpoint uses the authors' fork layout (ankitkv/sparo-clip) but does not fit "
            f"this model's sparo_cfg: {_first(problems)}. Build the model the checkpoint was "
            f"trained with, or {_FIX}"
        )
    logger.info(
        "Converted a checkpoint of the authors' fork (ankitkv/sparo-clip) to this layout: "
        "q_emb -> queries, k -> key, v -> value, proj -> out%s%s.",
        " (weight logit moved last)" if cfg.readout_dim != cfg.slot_dim else "",
        f"; dropped {dropped}" if dropped else "",
    )
    return converted


def _fold_shared_kv(
    state: dict[str, torch.Tensor],
    prefix: str,
    cfg: SparoCfg,
    problems: list[str],
    dropped: list[str],
) -> None:
    """With ``share_kv`` the fork's ``v.*`` are its ``k.*`` registered twice: drop them."""
    if not cfg.share_kv:
        return
    for param in ("weight", "bias"):
        value, key = state.get(f"{prefix}value.{param}"), state.get(f"{prefix}key.{param}")
        if value is None:
            continue
        if key is None or not torch.equal(value, key):
            problems.append(
                f"{prefix}v.{param} differs from {prefix}k.{param}, so it was trained with "
                "share_kv=false (this model has share_kv=true)"
            )
        del state[f"{prefix}value.{param}"]
        dropped.append(f"{prefix}v.{param}")


def _rotate_logit(state: dict[str, torch.Tensor], prefix: str, cfg: SparoCfg) -> None:
    """The fork reads a slot's weight logit from output 0, this project from the last."""
    if cfg.readout_dim == cfg.slot_dim:
        return
    for param in ("weight", "bias"):
        key = f"{prefix}out.{param}"
        if key in state and state[key].shape[0] == cfg.readout_dim:
            state[key] = torch.roll(state[key], shifts=-1, dims=0)


def _drop_shared_queries(
    state: dict[str, torch.Tensor], problems: list[str], dropped: list[str]
) -> None:
    """With ``share_queries`` the fork's text queries are the vision tensor."""
    text, vision = state.pop("text_sparo.queries", None), state.get("visual.sparo.queries")
    if text is None:
        return
    dropped.append("text_sparo.q_emb")
    if vision is None or not torch.equal(text, vision):
        problems.append(
            "text_sparo.q_emb differs from visual.sparo.q_emb, so it was trained with "
            "share_queries=false (this model has share_queries=true)"
        )


def _readout_mismatches(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> list[str]:
    """The read-out tensors of ``state`` that ``target`` lacks, has with other shapes, or has
    and ``state`` lacks."""
    own = {k: tuple(v.shape) for k, v in target.items() if k.startswith(READOUTS)}
    found = {k: tuple(v.shape) for k, v in state.items() if k.startswith(READOUTS)}
    problems = [
        f"{k} {shape} has no place in this model" for k, shape in found.items() if k not in own
    ]
    problems += [f"{k} is missing" for k in own if k not in found]
    problems += [
        f"{k}: checkpoint {shape} vs model {own[k]}"
        for k, shape in found.items()
        if k in own and shape != own[k]
    ]
    return problems


def _first(problems: list[str], limit: int = 8) -> str:
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more
