"""The authors' fork (ankitkv/sparo-clip) as fixtures: its config keys, its checkpoint layout
(written here from the fork's code, the inverse of the conversion under test), and its read-out
and slot embedding written from its formulas, to compare against without the fork itself."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F

from open_clip_sparo import SparoCLIP
from open_clip_sparo.fork.config import from_fork_config

# tiny towers in the fork's terms
FORK_BASE: dict[str, Any] = {
    "embed_dim": 64,
    "use_sparo": True,
    "sparo_attn_dim": None,
    "sparo_value_dim": None,
    "sparo_heads": None,
    "L": 8,
    "V": 8,
    "reduce_depth": 1,
    "share_kv": True,
    "share_queries": False,
    "sparo_type": "cont:const",
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
SPARO_TYPES = [
    f"{r}:{w}"
    for r in ("cont", "sem", "sqrtsem")
    for w in ("const", "norm", "softmax", "sqrtsoftmax")
    if (r, w) != ("sem", "norm")  # the fork raises NotImplementedError for it
]
# every option of the fork's SPARO, alone and together: name -> keys that replace FORK_BASE's
VARIANTS: dict[str, dict[str, Any]] = {
    **{f"sparo_type={t}": {"sparo_type": t} for t in SPARO_TYPES},
    "share_kv=false": {"share_kv": False, "sparo_value_dim": 24},
    "share_queries": {"share_queries": True},
    "sparo_heads=2": {"sparo_heads": 2},
    "sparo_attn_dim=24": {"sparo_attn_dim": 24},
    "reduce_depth=0 (fork default)": {"reduce_depth": None},
    "all options": {
        "share_kv": False,
        "sparo_value_dim": 12,
        "share_queries": True,
        "sparo_heads": 4,
        "sparo_attn_dim": 20,
        "sparo_type": "sqrtsem:sqrtsoftmax",
    },
}
READOUTS = ("visual.sparo.", "text_sparo.")


def shipped_fork_config(patch_size: int) -> dict:
    """The fork's model_configs/ViT-B-{patch_size}-SPARO.json."""
    return {
        "embed_dim": 4096, "use_sparo": True, "sparo_attn_dim": None, "sparo_value_dim": None,
        "sparo_heads": None, "L": 64, "V": 64, "reduce_depth": 1, "share_kv": True,
        "share_queries": False, "sparo_type": "cont:const",
        "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": patch_size},
        "text_cfg": {
            "context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12
        },
    }  # fmt: skip


def fork_config(**options: Any) -> dict[str, Any]:
    """``FORK_BASE`` with ``options``; an option set to ``None`` is left out (fork default)."""
    cfg = copy.deepcopy(FORK_BASE)
    cfg.update(options)
    return {k: v for k, v in cfg.items() if v is not None}


def build(fork_cfg: dict[str, Any], seed: int = 0) -> SparoCLIP:
    """This project's model for ``fork_cfg``, random weights from ``seed``, eval mode."""
    torch.manual_seed(seed)
    model = SparoCLIP(**from_fork_config(fork_cfg).model_cfg).eval()
    with torch.no_grad():  # out biases start at zero; make them matter
        for readout in (model.visual.sparo, model.text_sparo):
            readout.out.bias.normal_()
    return model


def to_fork_layout(model: SparoCLIP) -> dict[str, torch.Tensor]:
    """``model``'s state dict as the fork's ``CLIP.state_dict()`` names it."""
    cfg = model.sparo_cfg
    fork: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        prefix = next((p for p in READOUTS if key.startswith(p)), None)
        if prefix is None:
            fork[key] = tensor.clone()
            continue
        module, _, param = key[len(prefix) :].partition(".")
        if module == "queries":
            heads = cfg.num_heads or cfg.num_slots
            fork[prefix + "q_emb"] = tensor.reshape(1, heads, -1, 1, tensor.shape[-1]).clone()
        elif module == "out":
            rows = torch.roll(tensor, 1, dims=0) if cfg.readout_dim > cfg.slot_dim else tensor
            fork[f"{prefix}proj.{param}"] = rows.clone()
        else:
            fork[f"{prefix}{dict(key='k', value='v')[module]}.{param}"] = tensor.clone()
            if module == "key" and cfg.share_kv:  # the fork registers its k module again as v
                fork[f"{prefix}v.{param}"] = tensor.clone()
    if cfg.share_queries:  # the fork's text read-out holds the vision queries
        fork["text_sparo.q_emb"] = fork["visual.sparo.q_emb"]
    return fork


def save_fork_training_checkpoint(state_dict: dict[str, torch.Tensor], path: Path) -> Path:
    """``state_dict`` as the fork's training writes ``epoch_N.pt``: DDP's ``module.`` keys,
    epoch, name and optimizer state."""
    params = [torch.nn.Parameter(t.clone()) for t in list(state_dict.values())[:3]]
    optimizer = torch.optim.AdamW(params)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    checkpoint = {
        "epoch": 1,
        "name": "fork-run",
        "state_dict": {f"module.{k}": v for k, v in state_dict.items()},
        "optimizer": optimizer.state_dict(),
    }
    torch.save(checkpoint, path)
    return path


def inputs(fork_cfg: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Two images and two captions (of different lengths) at the config's sizes."""
    size = fork_cfg["vision_cfg"]["image_size"]
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    context = fork_cfg["text_cfg"]["context_length"]
    tokens = open_clip.tokenize(["a red square", "two small blue circles on grass"], context)
    return images, tokens


def embeddings(model: torch.nn.Module, fork_cfg: dict[str, Any]) -> torch.Tensor:
    """Image and text embeddings of :func:`inputs`, stacked."""
    images, tokens = inputs(fork_cfg)
    with torch.no_grad():
        return torch.cat([model.encode_image(images), model.encode_text(tokens)])


def fork_readout(
    tokens: torch.Tensor, fork: dict[str, torch.Tensor], prefix: str, eos: torch.Tensor | None
) -> torch.Tensor:
    """The fork's ``SPARO.forward`` from its formulas: per head, keys and values of every token,
    each slot's query attending over them (positions after ``eos`` masked), then ``proj``."""
    q = fork[prefix + "q_emb"][0, :, :, 0]  # (heads, L / heads, a)
    heads, attn_dim = q.shape[0], q.shape[-1]
    keys = F.linear(tokens, fork[prefix + "k.weight"], fork[prefix + "k.bias"])
    values = F.linear(tokens, fork[prefix + "v.weight"], fork[prefix + "v.bias"])
    keys, values = keys.unflatten(-1, (heads, attn_dim)), values.unflatten(-1, (heads, -1))
    logits = torch.einsum("hsa,bnha->bhsn", q, keys) * attn_dim**-0.5
    if eos is not None:
        after = torch.arange(tokens.shape[1])[None, :] > eos[:, None]  # (B, N)
        logits = logits.masked_fill(after[:, None, None], -torch.inf)
    z = torch.einsum("bhsn,bnhv->bhsv", logits.softmax(-1), values).flatten(1, 2)  # (B, L, v)
    return F.linear(z, fork[prefix + "proj.weight"], fork[prefix + "proj.bias"])


def fork_slot_embedding(y: torch.Tensor, sparo_type: str) -> torch.Tensor:
    """The fork's ``CLIP._project_for_sparo`` from its formulas: ``y (B, L, V [+ 1])`` with the
    weight logit first -> ``(B, L * V)``."""
    rep, weight = sparo_type.split(":")
    num_slots = y.shape[1]
    if weight in ("softmax", "sqrtsoftmax"):
        logits, y = y[..., 0], y[..., 1:]
        probs = logits.softmax(dim=-1)
        weights = probs.sqrt() if weight == "sqrtsoftmax" else probs / probs.norm(dim=-1)[:, None]
    elif weight == "norm":
        base = y if rep == "cont" else torch.exp(y / 2)  # sqrtsem: what it normalises
        norms = base.norm(dim=-1)
        weights = norms / norms.norm(dim=-1, keepdim=True)
    else:
        weights = torch.full(y.shape[:2], num_slots**-0.5)
    if rep == "cont":
        vectors = F.normalize(y, dim=-1)
    elif rep == "sem":
        vectors = F.normalize(y.softmax(-1), dim=-1)
    else:
        vectors = y.softmax(-1).sqrt()
    return (vectors * weights[..., None]).flatten(1)


def fork_embeddings(
    model: SparoCLIP, fork: dict[str, torch.Tensor], fork_cfg: dict[str, Any]
) -> torch.Tensor:
    """The fork's embeddings of :func:`inputs` with the fork's tensors ``fork``, its read-out and
    slot embedding from their formulas on top of ``model``'s towers (which must hold the same
    backbone tensors)."""
    images, text = inputs(fork_cfg)
    sparo_type = fork_cfg.get("sparo_type", "cont:const")
    with torch.no_grad():
        vision = model.visual.ln_post(model.visual.transformer(model.visual._embeds(images)))
        x = model.transformer(model._text_tokens(text), attn_mask=model.attn_mask)
        text_tokens = model.ln_final(x)
        image = fork_slot_embedding(fork_readout(vision, fork, "visual.sparo.", None), sparo_type)
        eos = text.argmax(dim=-1)  # the fork's end of text
        words = fork_readout(text_tokens, fork, "text_sparo.", eos)
        return torch.cat([image, fork_slot_embedding(words, sparo_type)])
