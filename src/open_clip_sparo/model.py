"""SparoCLIP: OpenCLIP's CLIP with a SPARO read-out on each tower (docs/model.md)."""

from __future__ import annotations

import copy
from dataclasses import asdict, is_dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from .config import SparoCfg, TowerSizes
from .derive import text_support
from .embedding import SlotEmbedding
from .eos import after_eos, eos_positions
from .openclip_internals import lock_text_tower
from .readout import Sparo, SparoOutput
from .state_dict import adapt_state_dict, check_state_dict, without_scripted_buffers
from .timm_vision import SparoTimmVision
from .vision import SparoVisionTransformer


class TextTokens:
    """Mixin for OpenCLIP's ``CLIP``: the input of its text transformer, as a method (scripted
    with the model)."""

    def _text_tokens(self, text: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, N)`` -> token plus positional embeddings ``(B, N, width)``."""
        cast_dtype = self.transformer.get_cast_dtype()
        x = self.token_embedding(text).to(cast_dtype)  # (B, N, width)
        return x + self.positional_embedding.to(cast_dtype)


class SparoCLIP(TextTokens, CLIP):
    """CLIP whose image and text embeddings are SPARO embeddings of ``num_slots * slot_dim`` dims.

    Built by OpenCLIP's factory for any model config that carries ``sparo_cfg``. The towers are
    OpenCLIP's (its ViT or a timm ViT trunk, see :func:`sparo_vision_tower`), ``reduce_depth``
    blocks shorter; ``visual.sparo`` and ``text_sparo`` replace the class-token / EOS pooling
    and the projections. Image slot ``l`` matches text slot ``l``.
    """

    def __init__(
        self,
        embed_dim: int,
        vision_cfg: CLIPVisionCfg | dict[str, Any],
        text_cfg: CLIPTextCfg | dict[str, Any],
        sparo_cfg: SparoCfg | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        sparo = SparoCfg.from_dict(sparo_cfg)
        vision = _as_cfg(CLIPVisionCfg, vision_cfg)
        text = _as_cfg(CLIPTextCfg, text_cfg)
        vision_tower = sparo_vision_tower(vision)
        text_sizes = _tower_sizes(embed_dim, text, sparo)
        reduced_text = replace(text, layers=text_sizes.layers, proj_type="none")
        super().__init__(embed_dim, vision_tower.build_cfg(vision, sparo), reduced_text, **kwargs)
        self.sparo_cfg = sparo
        self.text_pad_id = text.pad_id  # where the text ends for pool types without an EOS token
        # the config this model was built from, as OpenCLIP's factory reads it (for saving)
        self.model_cfg = {
            "embed_dim": embed_dim,
            "vision_cfg": _public_cfg(vision_cfg),
            "text_cfg": _public_cfg(text_cfg),
            "sparo_cfg": sparo.to_dict(),
            **{k: v for k, v in kwargs.items() if k != "cast_dtype"},
        }

        self.visual = vision_tower.from_tower(self.visual, vision, sparo)
        _check_shared_queries(sparo, self.visual.sparo.attn_dim, text_sizes.attn_dim)
        self.text_sparo = Sparo.from_cfg(sparo, text_sizes, shared_queries=sparo.share_queries)
        self.text_slot_embedding = SlotEmbedding(sparo.slot_repr, sparo.slot_weight)

    @property
    @torch.jit.unused  # reads the Python-only sparo_cfg; a scripted model has no num_slots
    def num_slots(self) -> int:
        return self.sparo_cfg.num_slots

    @property
    @torch.jit.unused  # reads the Python-only sparo_cfg; a scripted model has no slot_dim
    def slot_dim(self) -> int:
        return self.sparo_cfg.slot_dim

    def _text_queries(self) -> torch.Tensor | None:
        # a text read-out without queries of its own (share_queries) reads the vision queries
        return self.visual.sparo.queries if self.text_sparo.queries is None else None

    def encode_image_slots(self, image: torch.Tensor) -> SparoOutput:
        """Images -> weighted slots ``(B, L, V)`` and attention ``(B, L, 1 + HW)``."""
        return self.visual.forward_slots(image)

    def text_read_out(self, tokens: torch.Tensor, text: torch.Tensor) -> SparoOutput:
        """Text tokens after ``ln_final`` ``(B, N, width)`` -> :class:`SparoOutput`; the
        read-out sees positions 0..end of the text (``eos.py``)."""
        padding = after_eos(text, self.text_pool_type, self.text_eos_id, self.text_pad_id)
        slots, attn = self.text_sparo(tokens, padding, queries=self._text_queries())
        return SparoOutput(self.text_slot_embedding(slots), attn)

    def eos_positions(self, text: torch.Tensor) -> torch.Tensor:
        """``(B,)`` position of the end of the text, found as OpenCLIP's text pooling finds it."""
        return eos_positions(text, self.text_pool_type, self.text_eos_id, self.text_pad_id)

    def encode_text_slots(self, text: torch.Tensor) -> SparoOutput:
        """Token ids -> weighted slots ``(B, L, V)`` and attention ``(B, L, N)``, 0 after EOS."""
        x = self.transformer(self._text_tokens(text), attn_mask=self.attn_mask)
        return self.text_read_out(self.ln_final(x), text)

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.encode_image_slots(image).slots.flatten(1)  # (B, L * V)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.encode_text_slots(text).slots.flatten(1)  # (B, L * V)
        return F.normalize(features, dim=-1) if normalize else features

    def forward_intermediates(
        self,
        image: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        image_indices: int | list[int] | None = None,
        text_indices: int | list[int] | None = None,
        stop_early: bool = False,
        normalize: bool = True,
        normalize_intermediates: bool = False,
        intermediates_only: bool = False,
        image_output_fmt: str = "NCHW",
        image_output_extra_tokens: bool = False,
        text_output_fmt: str = "NLC",
        text_output_extra_tokens: bool = False,
        output_logits: bool = False,
        output_logit_scale_bias: bool = False,
    ) -> dict[str, Any]:
        """As OpenCLIP's, with the text features read out by SPARO."""
        output = super().forward_intermediates(
            image,
            None,
            image_indices=image_indices,
            stop_early=stop_early,
            normalize=normalize,
            normalize_intermediates=normalize_intermediates,
            intermediates_only=intermediates_only,
            image_output_fmt=image_output_fmt,
            image_output_extra_tokens=image_output_extra_tokens,
        )
        if text is not None:
            x, intermediates = self.transformer.forward_intermediates(
                self._text_tokens(text),
                attn_mask=self.attn_mask,
                indices=text_indices,
                stop_early=stop_early,
            )
            if normalize_intermediates:
                intermediates = [self.ln_final(xi) for xi in intermediates]
            output["text_intermediates"] = intermediates
            if not intermediates_only:
                features = self.text_read_out(self.ln_final(x), text).slots.flatten(1)
                output["text_features"] = F.normalize(features, dim=-1) if normalize else features
        if intermediates_only:
            return output
        return add_logits(self, output, output_logits, output_logit_scale_bias)

    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the image tower, read-out included; ``unlocked_groups`` counts the read-out as
        the last group (where OpenCLIP counts ``proj``). Shared queries follow both towers."""
        self.visual.lock(unlocked_groups, freeze_bn_stats)
        self._update_shared_queries()

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        """Freeze the text tower, read-out included; ``unlocked_layers`` counts the read-out as
        the last group (where OpenCLIP counts ``text_projection``). Shared queries follow both
        towers."""
        if not freeze_layer_norm:
            raise ValueError("unfreezing LayerNorm is not supported (as in OpenCLIP's CLIP).")
        lock_text_tower(self, max(unlocked_layers - 1, 0))
        self.text_sparo.requires_grad_(unlocked_layers > 0)
        self._update_shared_queries()

    def _update_shared_queries(self) -> None:
        """With ``share_queries`` the queries belong to both read-outs: they are frozen only
        while both read-outs are, whichever tower was locked first."""
        if not self.sparo_cfg.share_queries:
            return
        # a lock freezes or unfreezes a read-out as a whole, so its key projection stands for it
        keys = (self.visual.sparo.key.weight, self.text_sparo.key.weight)
        self.visual.sparo.queries.requires_grad_(any(key.requires_grad for key in keys))

    def no_weight_decay(self) -> set[str]:
        names = set(super().no_weight_decay())
        if self.text_sparo.queries is not None:
            names.add("text_sparo.queries")
        return names

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        state_dict = without_scripted_buffers(state_dict)  # --torchscript checkpoints
        state_dict = adapt_state_dict(self, state_dict, strict)  # e.g. the authors' fork's
        if strict:
            check_state_dict(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def add_logits(
    model: CLIP, output: dict[str, Any], output_logits: bool, output_logit_scale_bias: bool
) -> dict[str, Any]:
    """The end of OpenCLIP's ``forward_intermediates`` for features already in ``output``:
    ``image_logits`` / ``text_logits`` (``output_logits``), ``logit_scale`` and ``logit_bias``
    (``output_logit_scale_bias``)."""
    scale = model.logit_scale.exp()
    if output_logits:
        if "image_features" not in output or "text_features" not in output:
            raise ValueError("output_logits needs both image and text.")
        logits = scale * output["image_features"] @ output["text_features"].T
        if model.logit_bias is not None:
            logits = logits + model.logit_bias
        output["image_logits"], output["text_logits"] = logits, logits.T
    if output_logit_scale_bias:
        output["logit_scale"] = scale
        if model.logit_bias is not None:
            output["logit_bias"] = model.logit_bias
    return output


def _as_cfg(cls: type, cfg: Any) -> Any:
    return cls(**cfg) if isinstance(cfg, dict) else cfg


def _public_cfg(cfg: Any) -> dict[str, Any]:
    return copy.deepcopy(asdict(cfg) if is_dataclass(cfg) else cfg)


def sparo_vision_tower(vision: CLIPVisionCfg) -> type[SparoVisionTransformer | SparoTimmVision]:
    """The SPARO tower class of ``vision``: a timm trunk's or OpenCLIP's ViT's."""
    return SparoTimmVision if vision.timm_model_name else SparoVisionTransformer


def _tower_sizes(embed_dim: int, text: CLIPTextCfg, sparo: SparoCfg) -> TowerSizes:
    """The text tower's resolved read-out sizes, after the checks that need the towers
    (``SparoCfg`` checks its own values and those that need one tower; the vision tower's
    class checks its own)."""
    if embed_dim != sparo.embed_dim:
        raise ValueError(
            f"embed_dim={embed_dim} must equal sparo_cfg.num_slots * sparo_cfg.slot_dim = "
            f"{sparo.num_slots} * {sparo.slot_dim} = {sparo.embed_dim}; set embed_dim to "
            f"{sparo.embed_dim} or change the slot sizes."
        )
    reason = text_support(asdict(text))
    if reason is not None:
        raise ValueError(
            f"SPARO cannot read this text tower: {reason}; use OpenCLIP's own text transformer "
            "(no text_cfg.hf_model_name, no text_cfg.embed_cls)."
        )
    return sparo.tower("text_cfg", text.width, text.width // text.heads, text.layers)


def _check_shared_queries(sparo: SparoCfg, vision_attn_dim: int, text_attn_dim: int) -> None:
    if sparo.share_queries and vision_attn_dim != text_attn_dim:
        raise ValueError(
            f"sparo_cfg.share_queries needs one attn_dim for both towers, but they default to "
            f"{vision_attn_dim} (vision) and {text_attn_dim} (text); set sparo_cfg.attn_dim."
        )
