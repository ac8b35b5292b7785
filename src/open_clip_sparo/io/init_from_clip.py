"""Starting a SPARO model from a plain OpenCLIP CLIP checkpoint of its baseline (init-from-clip).

``sparo-X`` keeps ``X``'s embeddings, norms, logit scale and the first ``layers - reduce_depth``
blocks of each tower. Those tensors are copied; the removed blocks, the projections
(``visual.proj``, ``text_projection``) and what else the vision tower's read-out replaces (its
``readout_replaces``: a timm trunk's attention pool and heads) have no place in SPARO and are
dropped; the read-outs start fresh. The command line writes the result as a checkpoint
OpenCLIP's ``pretrained=`` accepts::

    sparo init-from-clip --model sparo-ViT-B-16 --clip-checkpoint clip.pt --out merged.pt"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..model import SparoCLIP
from ..state_dict import PLAIN_CLIP_KEYS, READOUT_PREFIXES
from ..util.files import read_state_dict

_TEXT_BLOCK_PREFIX = "transformer.resblocks."
_CUSTOM_TEXT_PREFIX = "text."


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`init_from_clip` did with each tensor: names and shapes, in model order."""

    copied: dict[str, tuple[int, ...]]
    dropped: dict[str, tuple[int, ...]]
    new: dict[str, tuple[int, ...]]

    def summary(self) -> str:
        return (
            f"{len(self.copied)} tensors copied from the CLIP checkpoint, "
            f"{len(self.dropped)} dropped, {len(self.new)} new (SPARO read-outs, freshly "
            "initialised)"
        )

    def table(self) -> str:
        """One row per tensor: status, name, shape."""
        rows = [
            (status, name, "x".join(map(str, shape)) or "scalar")
            for status, tensors in (
                ("copied", self.copied),
                ("dropped", self.dropped),
                ("new", self.new),
            )
            for name, shape in tensors.items()
        ]
        width = max(len(name) for _, name, _ in rows)
        lines = [f"{status:<8}{name:<{width}}  {shape}" for status, name, shape in rows]
        return "\n".join([self.summary(), f"{'status':<8}{'tensor':<{width}}  shape", *lines])


def load_clip_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A CLIP state dict from any weights file OpenCLIP's ``pretrained=`` reads (``.pt``/``.bin``,
    ``.safetensors``, open_clip_train checkpoints with ``module.`` keys), read by the package's
    checkpoint reader (tensors only)."""
    return read_state_dict(
        path,
        "CLIP checkpoint",
        "give a plain OpenCLIP checkpoint of the model's baseline (e.g. ViT-B-16 for "
        "sparo-ViT-B-16).",
    )


def init_from_clip(
    model: SparoCLIP, clip_state_dict: Mapping[str, torch.Tensor]
) -> ConversionReport:
    """Copy the baseline's tensors from ``clip_state_dict`` into ``model`` in place.

    Raises ``ValueError`` naming the problem when the checkpoint is not a plain OpenCLIP CLIP
    checkpoint of ``model``'s baseline (same sizes, ``layers`` blocks per tower).
    """
    if not isinstance(model, SparoCLIP):
        raise ValueError(
            f"init-from-clip builds SPARO models, got {type(model).__name__}; use a sparo-* model."
        )
    if any(key.startswith(READOUT_PREFIXES) for key in clip_state_dict):
        raise ValueError(
            "the checkpoint already has SPARO read-outs; load it directly (--pretrained) "
            "instead of converting it."
        )
    clip_state_dict = _clip_layout(clip_state_dict)
    target = model.state_dict()
    kept_blocks = _check_block_counts(model, target, clip_state_dict)
    # what the vision tower's read-out replaces (its pooling and projection), by its class
    replaced = tuple("visual." + prefix for prefix in model.visual.readout_replaces)

    copied, dropped, mismatched, unexpected = {}, {}, [], []
    for key, tensor in clip_state_dict.items():
        shape = tuple(tensor.shape)
        if key in target:
            if shape == tuple(target[key].shape):
                copied[key] = shape
            else:
                mismatched.append(f"{key}: checkpoint {shape} vs model {tuple(target[key].shape)}")
        elif _is_projection(key) or key.startswith(replaced) or _removed_block(key, kept_blocks):
            dropped[key] = shape
        else:
            unexpected.append(key)
    new = {k: tuple(v.shape) for k, v in target.items() if k not in clip_state_dict}
    missing = [k for k in new if not k.startswith(READOUT_PREFIXES)]
    problems = [
        ("tensors of other shapes", mismatched),
        ("tensors a CLIP model of this baseline does not have", unexpected),
        ("missing tensors", missing),
    ]
    found = [f"{what}: {_first(names)}" for what, names in problems if names]
    if found:
        raise ValueError(
            "the checkpoint is not a plain OpenCLIP CLIP checkpoint of this model's baseline ("
            + "; ".join(found)
            + "). Give the checkpoint of the model sparo-X was derived from (X), trained with "
            "the same sizes."
        )
    with torch.no_grad():
        for key in copied:
            target[key].copy_(clip_state_dict[key])
    ordered_copied = {k: copied[k] for k in target if k in copied}
    return ConversionReport(ordered_copied, dropped, new)


def _clip_layout(state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """``state_dict`` in CLIP's layout: OpenCLIP's ``CustomTextCLIP`` (SigLIP, PE-Core, ...) keeps
    its own text transformer under ``text.``, where ``CLIP`` (and so SPARO) has it at the top."""
    if not any(key.startswith(_CUSTOM_TEXT_PREFIX) for key in state_dict):
        return state_dict
    return {key.removeprefix(_CUSTOM_TEXT_PREFIX): t for key, t in state_dict.items()}


def _is_projection(key: str) -> bool:
    """A tower's output projection: a parameter (``text_projection``) or a linear layer's weight
    or bias (``text_projection.weight``, as SigLIP's text tower has it)."""
    return key.removesuffix(".weight").removesuffix(".bias") in PLAIN_CLIP_KEYS


def _check_block_counts(
    model: SparoCLIP,
    target: Mapping[str, torch.Tensor],
    state_dict: Mapping[str, torch.Tensor],
) -> dict[str, int]:
    """Blocks each tower keeps (block prefix -> count, as in ``model``'s state dict ``target``);
    checks the checkpoint has the baseline's ``reduce_depth`` more."""
    kept = {}
    prefixes = {"vision": "visual." + model.visual.block_prefix, "text": _TEXT_BLOCK_PREFIX}
    for tower, prefix in prefixes.items():
        kept[prefix] = _block_count(target, prefix)
        baseline_layers = kept[prefix] + model.sparo_cfg.reduce_depth
        found = _block_count(state_dict, prefix)
        if found != baseline_layers:
            raise ValueError(
                f"the checkpoint's {tower} tower has {found} blocks, but this model's "
                f"baseline has {baseline_layers}; give a checkpoint of the baseline with the same "
                "number of layers."
            )
    return kept


def _block_count(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for key in state_dict if (m := pattern.match(key))})


def _removed_block(key: str, kept_blocks: Mapping[str, int]) -> bool:
    for prefix, kept in kept_blocks.items():
        if key.startswith(prefix) and int(key[len(prefix) :].split(".", 1)[0]) >= kept:
            return True
    return False


def _first(names: list[str], limit: int = 6) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
