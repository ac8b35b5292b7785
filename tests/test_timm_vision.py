"""SPARO on timm ViT-family towers behind OpenCLIP's TimmModel: one OpenCLIP config per family,
its trunk kept small through timm's own model arguments."""

from __future__ import annotations

import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F
from open_clip.model import CLIP

from open_clip_sparo import SparoCLIP
from open_clip_sparo.derive import timm_support
from open_clip_sparo.io.init_from_clip import init_from_clip
from open_clip_sparo.timm_vision import SparoTimmVision

# timm arguments that shrink a trunk of the family (blocks, width, heads, image size); the
# hybrid trunks' conv stems fix their width, so only their depth and image size shrink
SMALL = {"embed_dim": 64, "depth": 3, "num_heads": 2, "img_size": 32}
HYBRID = {"depth": 3, "img_size": 32}
# an OpenCLIP config of each timm family (or the timm model's own name where no config of
# OpenCLIP has the family at a smaller size) -> how to keep it small
FAMILIES = {
    "ViT-B-16-SigLIP": SMALL,  # vision_transformer, `map` attention pool, no projection
    "EVA02-B-16": SMALL,  # eva with rope, class token, linear projection
    "PE-Core-B-16": SMALL,  # eva with rope, `map` attention pool
    "EVA01-g-14": SMALL,  # eva without rope, class token
    "vit_relpos_medium_patch16_cls_224": SMALL,  # vision_transformer_relpos
    "vit_medium_patch16_gap_256": SMALL,  # vision_transformer without a class token
    "ViTamin-S": HYBRID,  # vitamin: conv stages, then ViT blocks; its final norm is fc_norm
    "MobileCLIP2-B": HYBRID,  # vision_transformer_hybrid: a conv stem, then ViT blocks
}
SLOW_FAMILIES = {"MobileCLIP2-B"}  # its conv stem alone has 21M parameters
TEXT = {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 2}
SPARO = {"num_slots": 8, "slot_dim": 8}
READOUTS = ("visual.sparo.", "text_sparo.")


def family_params() -> list:
    return [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW_FAMILIES else name
        for name in FAMILIES
    ]


@pytest.fixture
def family(request, monkeypatch) -> str:
    """The family's config name, with timm building its trunks small."""
    name = request.param
    create = timm.create_model
    overrides = FAMILIES[name]
    monkeypatch.setattr(timm, "create_model", lambda *a, **kw: create(*a, **{**kw, **overrides}))
    return name


def vision_cfg(name: str) -> dict:
    return open_clip.get_model_config(name)["vision_cfg"]


def build(name: str, sparo_cfg: dict | None = None, seed: int = 1) -> SparoCLIP:
    torch.manual_seed(seed)
    return SparoCLIP(64, vision_cfg(name), TEXT, {**SPARO, **(sparo_cfg or {})})


def baseline(name: str) -> CLIP:
    torch.manual_seed(0)
    return CLIP(32, vision_cfg(name), TEXT)


def images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def texts(batch: int = 2) -> torch.Tensor:
    return torch.randint(1, 63, (batch, 16), generator=torch.Generator().manual_seed(3))


def param_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_timm_support_accepts_vit_families_and_names_the_reason_otherwise() -> None:
    for name in ("ViT-B-16-SigLIP", "EVA02-B-16", "PE-Core-B-16", "ViTamin-S", "MobileCLIP2-B"):
        assert timm_support(vision_cfg(name)) is None, name
    assert timm_support({"width": 768, "layers": 12}) is None  # no timm tower
    for name in ("convnext_base", "MobileCLIP-S1", "swin_base_patch4_window7_224"):
        reason = timm_support(vision_cfg(name))
        assert "is not a ViT-family transformer" in reason, name
    assert "timm has no model named 'vit_nope'" == timm_support({"timm_model_name": "vit_nope"})
    reason = timm_support({"timm_model_name": "vit_base_patch16_224", "timm_pool": "abs_attn"})
    assert "timm_pool='abs_attn'" in reason


def test_every_refused_openclip_timm_config_is_a_convolutional_or_windowed_trunk() -> None:
    refused = set()
    for name in open_clip.list_models():
        vision = (open_clip.get_model_config(name) or {}).get("vision_cfg", {})
        if vision.get("timm_model_name") and timm_support(vision):
            refused.add(vision["timm_model_name"].split("_")[0])
    assert refused == {"convnext", "fastvit", "swin"}


def test_a_refused_tower_fails_at_construction_with_the_reason() -> None:
    with pytest.raises(ValueError, match="SPARO cannot read this vision tower: its timm tower"):
        SparoCLIP(64, vision_cfg("convnext_base"), TEXT, SPARO)


@pytest.mark.parametrize("family", family_params(), indirect=True)
def test_embeds_unit_vectors_of_slots_read_from_normalised_tokens(family: str) -> None:
    model = build(family).eval()
    base = baseline(family)
    trunk = model.visual.trunk
    assert isinstance(model.visual, SparoTimmVision)
    assert len(trunk.blocks) == len(base.visual.trunk.blocks) - 1
    assert getattr(trunk, "attn_pool", None) is None
    assert isinstance(trunk.head, torch.nn.Identity)
    assert isinstance(model.visual.head, torch.nn.Identity)

    seen = []
    model.visual.sparo.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    with torch.no_grad():
        embedding = model.encode_image(images())
        output = model.encode_image_slots(images())
        num_tokens = trunk.forward_features(images()).shape[1]
    assert embedding.shape == (2, 64)
    assert torch.isfinite(embedding).all()
    torch.testing.assert_close(embedding.norm(dim=-1), torch.ones(2))
    assert output.slots.shape == (2, 8, 8)
    assert output.attn.shape == (2, 8, num_tokens)  # prefix tokens included
    torch.testing.assert_close(output.attn.sum(-1), torch.ones(2, 8))
    # the read-out sees the trunk's final norm (norm, or fc_norm for every token): a fresh
    # LayerNorm leaves each patch token with mean 0 and variance 1
    tokens = seen[0][:, trunk.num_prefix_tokens :]
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(tokens.shape[:2]), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        tokens.var(-1, unbiased=False), torch.ones(tokens.shape[:2]), atol=1e-2, rtol=0
    )
    assert param_count(model.visual) <= param_count(base.visual)


@pytest.mark.parametrize("family", family_params(), indirect=True)
def test_one_training_step_updates_read_out_and_blocks(family: str) -> None:
    model = build(family).train()
    before = {k: v.clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    image_features, text_features, logit_scale = model(images(), texts())
    logits = logit_scale * image_features @ text_features.T
    loss = F.cross_entropy(logits, torch.arange(2))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    optimizer.step()
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert {"visual.sparo.key.weight", "visual.sparo.queries"} <= changed
    assert any(k.startswith("visual.trunk.blocks.0.") for k in changed)


@pytest.mark.parametrize("family", ["ViT-B-16-SigLIP", "EVA01-g-14"], indirect=True)
def test_lock_counts_the_read_out_as_the_last_group(family: str) -> None:
    def trainable(unlocked_groups: int) -> set[str]:
        model = build(family)
        model.lock_image_tower(unlocked_groups=unlocked_groups)
        return {k for k, p in model.visual.named_parameters() if p.requires_grad}

    model = build(family)
    assert trainable(0) == set()
    assert trainable(1) == {k for k, _ in model.visual.sparo.named_parameters(prefix="sparo")}
    # the read-out and timm's last group of the trunk (its final norm, with its last block)
    last_groups = trainable(2)
    assert {"trunk.norm.weight", "trunk.fc_norm.weight"} & last_groups
    assert not any(k.startswith(("trunk.patch_embed.", "trunk.blocks.0.")) for k in last_groups)
    assert model.no_weight_decay() >= {"visual.sparo.queries"}


@pytest.mark.parametrize("family", ["PE-Core-B-16"], indirect=True)
def test_forward_intermediates_reads_out_the_same_features(family: str) -> None:
    model = build(family).eval()
    with torch.no_grad():
        output = model.forward_intermediates(images(), texts(), image_indices=2)
        expected = model.encode_image(images(), normalize=True)
    torch.testing.assert_close(output["image_features"], expected)
    assert len(output["image_intermediates"]) == 2


@pytest.mark.parametrize("family", family_params(), indirect=True)
def test_init_from_clip_copies_the_kept_tensors_exactly(family: str) -> None:
    clip_state = baseline(family).state_dict()
    model = build(family)
    readouts_before = {
        k: v.clone() for k, v in model.state_dict().items() if k.startswith(READOUTS)
    }
    report = init_from_clip(model, clip_state)
    state = model.state_dict()

    last_block = len(model.visual.trunk.blocks)
    replaced = ("visual.trunk.attn_pool.", "visual.trunk.head.", "visual.head.")
    assert set(report.dropped) == {
        k
        for k in clip_state
        if k.startswith((f"visual.trunk.blocks.{last_block}.", "transformer.resblocks.1."))
        or k.startswith(replaced)
    } | {"text_projection"}
    assert set(report.copied) == set(clip_state) - set(report.dropped)
    assert all(torch.equal(state[k], clip_state[k]) for k in report.copied)
    assert set(report.new) == set(readouts_before)
    assert all(torch.equal(state[k], v) for k, v in readouts_before.items())
    assert any(k.startswith(f"visual.trunk.blocks.{last_block - 1}.") for k in report.copied)


@pytest.mark.parametrize("family", ["ViT-B-16-SigLIP"], indirect=True)
def test_reduce_depth_0_keeps_every_pretrained_block(family: str) -> None:
    clip_state = baseline(family).state_dict()
    model = build(family, {"reduce_depth": 0})
    report = init_from_clip(model, clip_state)
    assert len(model.visual.trunk.blocks) == 3
    assert not any(k.startswith("visual.trunk.blocks.") for k in report.dropped)
    assert {k for k in report.dropped if k.startswith("visual.")} == {
        k for k in clip_state if k.startswith(("visual.trunk.attn_pool.", "visual.trunk.head."))
    }


@pytest.mark.parametrize(
    "name",
    ["ViT-B-16-SigLIP", "EVA02-B-16", "PE-Core-B-16", "ViTamin-S", "MobileCLIP2-B", "EVA01-g-14"],
)
def test_real_sizes_have_at_most_the_baselines_parameters(name: str) -> None:
    cfg = open_clip.get_model_config(name)
    # the text tower SPARO builds today (parameters do not depend on the causal mask)
    text = {k: v for k, v in cfg["text_cfg"].items() if k != "no_causal_mask"}
    with torch.device("meta"):
        base = open_clip.create_model(name, device="meta")
        model = SparoCLIP(4096, cfg["vision_cfg"], text, {})
    assert param_count(model.visual) <= param_count(base.visual)
    assert param_count(model) <= param_count(base)
    trunk = model.visual.trunk
    assert model.visual.sparo.key.out_features == 64 * trunk.blocks[0].attn.head_dim


@pytest.mark.parametrize("family", ["ViT-B-16-SigLIP"], indirect=True)
def test_torchscript_and_grad_checkpointing_keep_the_embedding(family: str) -> None:
    model = build(family).eval()
    with torch.no_grad():
        expected = model.encode_image(images())
        torch.testing.assert_close(torch.jit.script(model).encode_image(images()), expected)
    model.set_grad_checkpointing(True)
    assert model.visual.trunk.grad_checkpointing
    image_features, _, _ = model.train()(images(), texts())
    image_features.sum().backward()
    assert model.visual.trunk.blocks[0].attn.qkv.weight.grad is not None
