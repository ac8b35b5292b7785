"""Model configs of the authors' own code (``ankitkv/sparo-clip``, a fork of OpenCLIP 2.20) as
this project's model configs (docs/fork.md).

The fork gives SPARO's options as top-level keys of its model config (``use_sparo``, ``L``,
``V``, ``sparo_type``, ...) and its towers in OpenCLIP 2.20's terms. Every key is either
translated, ignored because the fork's SPARO model never reads it (said in
:attr:`ForkConfig.notes`), or refused by name with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import SLOT_REPRS, SLOT_WEIGHTS, SparoCfg

# fork key -> sparo_cfg key
_SPARO_KEYS = {
    "L": "num_slots",
    "V": "slot_dim",
    "sparo_attn_dim": "attn_dim",
    "sparo_value_dim": "value_dim",
    "sparo_heads": "num_heads",
    "share_kv": "share_kv",
    "share_queries": "share_queries",
    "reduce_depth": "reduce_depth",
}
# the fork's defaults where they differ from SparoCfg's
_FORK_DEFAULTS = {"reduce_depth": 0}
_TOP_IGNORED = {
    "bottleneck_dim": "the fork's SPARO embeddings never use the bottleneck projections",
    "num_codes": "used only with use_codebook",
    "output_dict": "chosen by the caller, not the checkpoint",
}

_VISION_SAME = (
    "layers",
    "width",
    "head_width",
    "mlp_ratio",
    "patch_size",
    "image_size",
    "ls_init_value",
    "patch_dropout",
)
_VISION_IGNORED = {
    "global_average_pool": "the fork's SPARO vision tower reads out of all tokens",
    "output_tokens": "unused by the fork's SPARO vision tower",
    "n_queries": "used only with attentional_pool",
    "attn_pooler_heads": "used only with attentional_pool",
    "timm_model_pretrained": "used only with timm_model_name",
    "timm_pool": "used only with timm_model_name",
    "timm_proj": "used only with timm_model_name",
    "timm_proj_bias": "used only with timm_model_name",
    "timm_drop": "used only with timm_model_name",
    "timm_drop_path": "used only with timm_model_name",
}
# options that, when set, build something SPARO here cannot read out of
_VISION_REFUSED = {
    "input_patchnorm": "OpenCLIP 3.x has no dual patchnorm",
    "attentional_pool": "the fork builds its attentional pooler next to the read-out",
    "timm_model_name": "the fork builds timm towers without the read-out",
}

_TEXT_SAME = (
    "context_length",
    "vocab_size",
    "width",
    "heads",
    "layers",
    "ls_init_value",
    "pad_id",
    "hf_tokenizer_name",
)
_TEXT_IGNORED = {
    "global_average_pool": "the fork's SPARO text read-out attends over positions 0..EOS",
    "output_tokens": "unused by the fork's CLIP text tower",
    "n_queries": "used only with attentional_pool",
    "attn_pooler_heads": "used only with attentional_pool",
    "hf_model_pretrained": "used only with hf_model_name",
    "proj": "used only with hf_model_name",
    "pooler_type": "used only with hf_model_name",
}
_TEXT_REFUSED = {
    "hf_model_name": "the fork builds Hugging Face text towers without the read-out",
    "attentional_pool": "the fork pools the text tokens before its read-out; SPARO here does not",
    "embed_cls": "the fork's CLIP cannot run it (positional embedding one token too long)",
}
_TOP_REFUSED = {
    "use_codebook": "the fork refuses SPARO with a codebook",
    "custom_text": "the fork builds CustomTextCLIP without the read-out",
}


# the sizes of a fork config, checked before anything is built: key -> (smallest, largest); the
# largest is far above any real model's (ViT-bigG: width 1664; multilingual vocabularies: 250k)
# and keeps a mistyped size from allocating terabytes
_WIDE = 2**16
_SIZE_LIMITS: dict[str, tuple[int, int]] = {
    "L": (1, _WIDE),
    "V": (1, _WIDE),
    "sparo_attn_dim": (1, _WIDE),
    "sparo_value_dim": (1, _WIDE),
    "sparo_heads": (1, _WIDE),
    "reduce_depth": (0, 1024),
    "vision_cfg.layers": (1, 1024),
    "vision_cfg.width": (1, _WIDE),
    "vision_cfg.head_width": (1, _WIDE),
    "vision_cfg.patch_size": (1, _WIDE),
    "vision_cfg.image_size": (1, _WIDE),
    "text_cfg.context_length": (1, _WIDE),
    "text_cfg.vocab_size": (1, 2**22),
    "text_cfg.width": (1, _WIDE),
    "text_cfg.heads": (1, _WIDE),
    "text_cfg.layers": (1, 1024),
}


def _check_sizes(fork_cfg: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming every size of ``fork_cfg`` that is not a whole number in its
    range (and a tower that is not a JSON object), before anything is built."""
    problems = [
        f"{tower} is {'null' if fork_cfg[tower] is None else type(fork_cfg[tower]).__name__}, "
        "not a JSON object"
        for tower in ("vision_cfg", "text_cfg")
        if tower in fork_cfg and not isinstance(fork_cfg[tower], dict)
    ]
    for key, (smallest, largest) in _SIZE_LIMITS.items():
        tower, _, name = key.rpartition(".")
        cfg = fork_cfg.get(tower) if tower else fork_cfg
        value = cfg.get(name) if isinstance(cfg, dict) else None
        if value is None or (name == "layers" and isinstance(value, list)):  # ResNet: refused
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not smallest <= value <= largest
        ):
            problems.append(f"{key}={value!r} (a whole number from {smallest} to {largest})")
    if problems:
        raise ValueError(
            "the fork config has values no model can be built from: "
            f"{'; '.join(problems)}. Fix these keys (the fork's model_configs/*.json give real "
            "sizes); nothing was built."
        )


@dataclass(frozen=True)
class ForkConfig:
    """A fork model config translated: ``model_cfg`` for :class:`~open_clip_sparo.SparoCLIP`
    (``embed_dim``, ``vision_cfg``, ``text_cfg``, ``sparo_cfg``, ``quick_gelu``), and one note
    per fork key that was ignored, with the reason."""

    model_cfg: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def from_fork_config(fork_cfg: dict[str, Any]) -> ForkConfig:
    """Translate the fork's model config ``fork_cfg`` (one of its ``model_configs/*.json``).

    Raises ``ValueError`` naming every key that has no equivalent here.
    """
    if not isinstance(fork_cfg, dict):
        raise ValueError(f"a fork model config is a JSON object, got {type(fork_cfg).__name__}.")
    _check_sizes(fork_cfg)
    problems: list[str] = []
    notes: list[str] = []
    if fork_cfg.get("use_sparo") is not True:
        problems.append(
            "use_sparo is not true: this is a plain CLIP config of the fork; its checkpoints "
            "are OpenCLIP CLIP checkpoints (start SPARO from one with `sparo init-from-clip`)"
        )
    for key in ("L", "V"):
        if fork_cfg.get(key) is None:
            problems.append(f"{key} is missing (the fork needs it with use_sparo)")

    sparo_cfg: dict[str, Any] = {}
    model_cfg: dict[str, Any] = {}
    for key, value in fork_cfg.items():
        if key in _SPARO_KEYS:
            if value is not None:
                sparo_cfg[_SPARO_KEYS[key]] = value
        elif key == "sparo_type":
            sparo_cfg.update(_slot_options(value, problems))
        elif key == "quick_gelu":
            model_cfg["quick_gelu"] = value
        elif key in _TOP_REFUSED:
            if value:
                problems.append(f"{key}={value!r}: {_TOP_REFUSED[key]}")
        elif key in _TOP_IGNORED:
            if value:
                notes.append(f"{key}={value!r} ignored: {_TOP_IGNORED[key]}")
        elif key not in ("use_sparo", "embed_dim", "vision_cfg", "text_cfg"):
            problems.append(f"{key} is not a key of the fork's CLIP")
    for key, value in _FORK_DEFAULTS.items():
        sparo_cfg.setdefault(_SPARO_KEYS[key], value)
    if "sparo_type" not in fork_cfg:
        sparo_cfg.update(_slot_options("cont:const", problems))

    vision = _tower(
        "vision_cfg", fork_cfg.get("vision_cfg", {}), _VISION_SAME, _VISION_IGNORED,
        _VISION_REFUSED, problems, notes,
    )  # fmt: skip
    if not isinstance(vision.get("layers", 12), int):
        problems.append("vision_cfg.layers is a list (a ResNet): the fork's SPARO needs a ViT")
    text = _tower(
        "text_cfg", fork_cfg.get("text_cfg", {}), _TEXT_SAME, _TEXT_IGNORED, _TEXT_REFUSED,
        problems, notes,
    )  # fmt: skip
    if problems:
        raise ValueError(
            "the fork config cannot be converted: "
            + "; ".join(problems)
            + ". These options have no equivalent here (docs/fork.md)."
        )
    cfg = SparoCfg.from_dict(sparo_cfg)  # checks the translated values
    if fork_cfg.get("embed_dim", cfg.embed_dim) != cfg.embed_dim:
        notes.append(
            f"embed_dim={fork_cfg['embed_dim']!r} replaced by L * V = {cfg.embed_dim}: the "
            "fork's SPARO embedding has L * V dims whatever embed_dim says"
        )
    model_cfg = {
        "embed_dim": cfg.embed_dim,
        "vision_cfg": vision,
        "text_cfg": text,
        "sparo_cfg": cfg.to_dict(),
        **model_cfg,
    }
    return ForkConfig(model_cfg, notes)


def _slot_options(sparo_type: Any, problems: list[str]) -> dict[str, str]:
    """The fork's ``sparo_type`` ``"<slot_repr>:<slot_weight>"`` as the two options."""
    parts = sparo_type.split(":") if isinstance(sparo_type, str) else []
    if len(parts) != 2 or parts[0] not in SLOT_REPRS or parts[1] not in SLOT_WEIGHTS:
        problems.append(
            f"sparo_type={sparo_type!r} is not '<{'|'.join(SLOT_REPRS)}>:"
            f"<{'|'.join(SLOT_WEIGHTS)}>'"
        )
        return {}
    if tuple(parts) == ("sem", "norm"):
        problems.append("sparo_type='sem:norm' is refused by the fork itself (NotImplementedError)")
        return {}
    return {"slot_repr": parts[0], "slot_weight": parts[1]}


def _tower(
    name: str,
    cfg: dict[str, Any],
    same: tuple[str, ...],
    ignored: dict[str, str],
    refused: dict[str, str],
    problems: list[str],
    notes: list[str],
) -> dict[str, Any]:
    """One tower config: ``same`` keys copied, ``ignored`` noted, set ``refused`` ones refused."""
    tower: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in same:
            if value is not None or key == "ls_init_value":
                tower[key] = value
        elif key in refused:
            if value:
                problems.append(f"{name}.{key}={value!r}: {refused[key]}")
        elif key in ignored:
            if value:
                notes.append(f"{name}.{key}={value!r} ignored: {ignored[key]}")
        else:
            problems.append(f"{name}.{key} is not a key of the fork's {name}")
    return tower
