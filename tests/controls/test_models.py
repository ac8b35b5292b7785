"""The paper's controls against direct computations from OpenCLIP's pieces."""

import copy

import open_clip
import pytest
import torch
import torch.nn.functional as F
from controls.test_codebook import reference as codebook_reference
from open_clip.loss import ClipLoss

import open_clip_sparo  # noqa: F401  (registers the configs)
from open_clip_sparo.controls.models import (
    BottleneckCLIP,
    CodebookCLIP,
    GapCLIP,
    GapVisionTransformer,
)

TINY = "ViT-Ti-8-64"
SIZES = ("ViT-Ti-8-64", "ViT-B-32", "ViT-B-16")
# tiny sizes for the exact comparisons: 2 blocks per tower, 64 codes
SMALL = {"vision_cfg": {"layers": 2}, "text_cfg": {"layers": 2}}


def small(name, **overrides):
    config = copy.deepcopy(open_clip.get_model_config(name))
    for block, values in SMALL.items():
        config[block].update(values)
    config.update(overrides)
    return config


def build(name, **overrides):
    torch.manual_seed(0)
    config = small(name, **overrides)
    model = open_clip.factory.CLIP(**config)  # the factory's hooked name, as create_model calls it
    return model.eval()


@pytest.fixture
def batch():
    torch.manual_seed(1)
    tokenizer = open_clip.get_tokenizer(TINY)
    return torch.rand(3, 3, 64, 64), tokenizer(["a red square", "two blue circles left", "x"])


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_factory_builds_each_control():
    for kind, cls in (("gap", GapCLIP), ("bottleneck", BottleneckCLIP), ("codebook", CodebookCLIP)):
        with torch.device("meta"):
            model = open_clip.create_model(f"{kind}-{TINY}", device="meta")
        assert type(model) is cls and isinstance(model, open_clip.CLIP)


def test_gap_pools_the_mean_of_all_tokens_then_ln_post(batch):
    image, text = batch
    gap = build(f"gap-{TINY}")
    plain = build(TINY)
    plain.load_state_dict(gap.state_dict())  # the same parameters
    v = plain.visual
    tokens = v.transformer(v._embeds(image))  # (B, 1 + HW, width)
    expected = v.ln_post(tokens.mean(dim=1)) @ v.proj  # class token included, LN after the mean
    with torch.no_grad():
        torch.testing.assert_close(gap.encode_image(image), expected)
        torch.testing.assert_close(gap.encode_text(text), plain.encode_text(text))
        openclip_avg = v.ln_post(tokens[:, 1:].mean(dim=1)) @ v.proj
        assert not torch.allclose(gap.encode_image(image), openclip_avg)


def test_gap_with_ln_first_normalises_every_token(batch):
    image, _ = batch
    config = small(f"gap-{TINY}")
    config["vision_cfg"]["final_ln_after_pool"] = False
    torch.manual_seed(0)
    gap = open_clip.factory.CLIP(**config).eval()
    v = gap.visual
    with torch.no_grad():
        tokens = v.transformer(v._embeds(image))
        torch.testing.assert_close(gap.encode_image(image), v.ln_post(tokens).mean(dim=1) @ v.proj)


def test_gap_rejects_another_pool_type():
    config = small(f"gap-{TINY}")
    config["vision_cfg"]["pool_type"] = "avg"
    with pytest.raises(ValueError, match=r"remove vision_cfg\.pool_type='avg'"):
        open_clip.factory.CLIP(**config)


def test_bottleneck_is_plain_clip_then_a_linear_map(batch):
    image, text = batch
    model = build(f"bottleneck-{TINY}")
    assert model.vision_bottleproj.weight.shape == (256, 128)
    plain = build(TINY)
    plain.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        for encode, base, proj in (
            (model.encode_image, plain.encode_image(image), model.vision_bottleproj),
            (model.encode_text, plain.encode_text(text), model.text_bottleproj),
        ):
            x = image if encode == model.encode_image else text
            expected = base @ proj.weight.T + proj.bias
            torch.testing.assert_close(encode(x), expected)
            torch.testing.assert_close(encode(x, normalize=True), F.normalize(expected, dim=-1))


def test_codebook_reads_patch_tokens_and_text_up_to_eos(batch):
    image, text = batch
    model = build(f"codebook-{TINY}", control_cfg={"kind": "codebook", "num_codes": 64})
    v = model.visual
    lengths = (text.argmax(dim=-1) + 1).tolist()
    with torch.no_grad():
        patches = v.transformer(v._embeds(image))[:, 1:]  # no class token, no ln_post
        expected = codebook_reference(model.img_query_model, patches, model.space_dict, [64] * 3)
        torch.testing.assert_close(model.encode_image(image), expected)
        x = model.token_embedding(text) + model.positional_embedding
        x = model.transformer(x, attn_mask=model.attn_mask)  # no ln_final
        expected = codebook_reference(model.txt_query_model, x, model.space_dict, lengths)
        torch.testing.assert_close(model.encode_text(text), expected)
    assert model.visual.proj is None and model.text_projection is None


@pytest.mark.parametrize("kind", ["gap", "bottleneck", "codebook"])
def test_forward_intermediates_features_and_logits(kind, batch):
    image, text = batch
    overrides = {"control_cfg": {"kind": "codebook", "num_codes": 64}} if kind == "codebook" else {}
    model = build(f"{kind}-{TINY}", **overrides)
    with torch.no_grad():
        out = model.forward_intermediates(image, text, output_logits=True)
        image_features, text_features, scale = model(image, text)
    torch.testing.assert_close(out["image_features"], image_features)
    torch.testing.assert_close(out["text_features"], text_features)
    torch.testing.assert_close(out["image_logits"], scale * image_features @ text_features.T)
    assert len(out["image_intermediates"]) == len(out["text_intermediates"]) == 2


@pytest.mark.parametrize("kind", ["gap", "bottleneck", "codebook"])
def test_every_parameter_gets_a_gradient(kind, batch):
    image, text = batch
    overrides = {"control_cfg": {"kind": "codebook", "num_codes": 64}} if kind == "codebook" else {}
    model = build(f"{kind}-{TINY}", **overrides).train()
    ClipLoss()(*model(image, text)).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_bottleneck_projection_is_locked_with_its_tower():
    model = build(f"bottleneck-{TINY}")
    model.lock_image_tower()
    assert not model.vision_bottleproj.weight.requires_grad
    assert model.text_bottleproj.weight.requires_grad
    model.lock_text_tower(unlocked_layers=1)
    assert model.text_bottleproj.weight.requires_grad == model.text_projection.requires_grad


def test_codebook_refuses_locking_one_tower():
    model = build(f"codebook-{TINY}", control_cfg={"kind": "codebook", "num_codes": 8})
    with pytest.raises(ValueError, match="drop --lock-image / --lock-text"):
        model.lock_text_tower()


@pytest.mark.parametrize("size", SIZES)
def test_parameter_counts_against_the_baseline(size):
    with torch.device("meta"):
        base, gap, bottleneck, codebook = (
            open_clip.create_model(name, device="meta")
            for name in (size, f"gap-{size}", f"bottleneck-{size}", f"codebook-{size}")
        )
    assert count(gap) == count(base)
    d, big = bottleneck.control_cfg.bottleneck_dim, bottleneck.embed_dim
    assert d == base.text_projection.shape[1] and big == (256 if size == TINY else 4096)
    assert count(bottleneck) == count(base) + 2 * (d * big + big)
    # the codebook drops both projections and final LayerNorms and adds codes and two maps
    dropped = base.visual.proj.numel() + base.text_projection.numel()
    dropped += count(base.visual.ln_post) + count(base.ln_final)
    added = count(codebook.img_query_model) + count(codebook.txt_query_model)
    assert codebook.space_dict.shape == (16384, d)
    assert count(codebook) == count(base) - dropped + 16384 * d + added


def test_control_cfg_never_reaches_custom_text_routes():
    config = small(f"gap-{TINY}")
    with pytest.raises(ValueError, match="a SPARO config reached OpenCLIP's CustomTextCLIP"):
        open_clip.factory.CustomTextCLIP(**config)


def test_gap_vision_rejects_attentional_pool():
    vit = build(TINY).visual
    vit.attn_pool = torch.nn.Identity()
    with pytest.raises(ValueError, match="attentional_pool conflicts with the gap control"):
        GapVisionTransformer.from_vit(vit)


@pytest.mark.parametrize("size", SIZES)
def test_control_configs_keep_the_baseline_towers(size):
    base = open_clip.get_model_config(size)
    for kind in ("gap", "bottleneck", "codebook"):
        cfg = open_clip.get_model_config(f"{kind}-{size}")
        assert cfg["control_cfg"]["kind"] == kind
        vision = dict(cfg["vision_cfg"])
        if kind == "gap":
            assert vision.pop("final_ln_after_pool") is True  # LayerNorm after the mean
        assert vision == base["vision_cfg"] and cfg["text_cfg"] == base["text_cfg"]
    assert (
        open_clip.get_model_config(f"bottleneck-{size}")["embed_dim"]
        == (open_clip.get_model_config(f"sparo-{size}")["embed_dim"])
    )
