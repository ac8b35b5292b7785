import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from PIL import Image

import open_clip_sparo
from open_clip_sparo import SparoCLIP, SparoOutput

TINY = "sparo-ViT-Ti-8-64"


def tiny(**kwargs) -> SparoCLIP:
    torch.manual_seed(0)
    return open_clip.create_model(TINY, **kwargs)


def batch(model: SparoCLIP, size: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    tokenizer = open_clip.get_tokenizer(TINY)
    captions = ["a red square", "two blue circles on the left", "a small green triangle"]
    generator = torch.Generator().manual_seed(1)
    return torch.randn(size, 3, 64, 64, generator=generator), tokenizer(captions[:size])


def test_is_an_openclip_clip_with_readouts_in_place():
    model = tiny()
    assert isinstance(model, open_clip.CLIP)
    assert isinstance(model.visual.sparo, open_clip_sparo.Sparo)
    assert isinstance(model.text_sparo, open_clip_sparo.Sparo)
    assert model.visual.proj is None and model.text_projection is None
    assert len(model.visual.transformer.resblocks) == 3 and len(model.transformer.resblocks) == 3
    names = set(model.state_dict())
    assert "visual.proj" not in names and "text_projection" not in names
    assert {"visual.sparo.queries", "text_sparo.queries", "visual.sparo.key.weight"} <= names


def test_shapes_and_unit_norm():
    model = tiny()
    images, text = batch(model)
    image_out, text_out = model.encode_image_slots(images), model.encode_text_slots(text)
    assert isinstance(image_out, SparoOutput)
    assert image_out.slots.shape == (3, 16, 16) and image_out.attn.shape == (3, 16, 65)
    assert text_out.slots.shape == (3, 16, 16) and text_out.attn.shape == (3, 16, 32)
    for features in (model.encode_image(images), model.encode_text(text)):
        assert features.shape == (3, 256)
        torch.testing.assert_close(features.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(model.encode_image(images), image_out.slots.flatten(1))
    torch.testing.assert_close(model.visual(images), model.encode_image(images))


def test_similarity_is_mean_of_slot_cosines():
    model = tiny()
    images, text = batch(model)
    image_out, text_out = model.encode_image_slots(images), model.encode_text_slots(text)
    cosines = F.cosine_similarity(image_out.slots[:, None], text_out.slots[None], dim=-1)
    similarity = model.encode_image(images) @ model.encode_text(text).T
    torch.testing.assert_close(similarity, cosines.mean(-1))


def test_text_attention_stops_at_eos_and_padding_is_ignored():
    model = tiny()
    _, text = batch(model)
    eos = text.argmax(dim=-1)
    attn = model.encode_text_slots(text).attn
    for row, end in enumerate(eos.tolist()):
        assert (attn[row, :, end + 1 :] == 0).all()
        assert (attn[row, :, : end + 1] > 0).all()
    noisy = text.clone()
    after_eos = torch.arange(text.shape[1])[None] > eos[:, None]
    noisy[after_eos] = torch.randint(1, 49000, (int(after_eos.sum()),))
    torch.testing.assert_close(model.encode_text(noisy), model.encode_text(text))


def test_forward_as_openclip_clip():
    model = tiny()
    images, text = batch(model)
    image_features, text_features, logit_scale = model(images, text)
    torch.testing.assert_close(image_features, model.encode_image(images, normalize=True))
    torch.testing.assert_close(text_features, model.encode_text(text, normalize=True))
    assert logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    out = tiny(output_dict=True)(images, text)
    assert set(out) == {"image_features", "text_features", "logit_scale"}


def test_forward_intermediates_matches_encoders():
    model = tiny()
    images, text = batch(model)
    out = model.forward_intermediates(images, text, output_logits=True)
    torch.testing.assert_close(out["image_features"], model.encode_image(images))
    torch.testing.assert_close(out["text_features"], model.encode_text(text))
    assert len(out["image_intermediates"]) == 3 and len(out["text_intermediates"]) == 3
    expected = model.logit_scale.exp() * out["image_features"] @ out["text_features"].T
    torch.testing.assert_close(out["image_logits"], expected)
    only = model.forward_intermediates(images, text, intermediates_only=True)
    assert "image_features" not in only and "text_features" not in only


@pytest.mark.parametrize(
    "sparo_cfg",
    [
        {"num_slots": 16, "slot_dim": 16},
        {"num_slots": 16, "slot_dim": 16, "share_kv": False, "value_dim": 8, "num_heads": 4},
        {"num_slots": 16, "slot_dim": 16, "share_queries": True, "slot_weight": "softmax"},
    ],
)
def test_every_parameter_gets_a_gradient_through_clip_loss(sparo_cfg):
    model = tiny(sparo_cfg=sparo_cfg)
    images, text = batch(model)
    loss = ClipLoss()(*model(images, text))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert model.visual.sparo.queries.grad.abs().sum() > 0
    assert model.text_sparo.out.weight.grad.abs().sum() > 0


def test_shared_queries_are_registered_once_and_learn_from_both_towers():
    model = tiny(sparo_cfg={"num_slots": 16, "slot_dim": 16, "share_queries": True})
    assert model.text_sparo.queries is None
    names = [n for n, _ in model.named_parameters() if n.endswith("queries")]
    assert names == ["visual.sparo.queries"]
    _, text = batch(model)
    model.encode_text(text).sum().backward()
    assert model.visual.sparo.queries.grad.abs().sum() > 0


TEXT_TOWER = ("token_embedding", "positional_embedding", "transformer.", "ln_final", "text_sparo")
SHARED_QUERIES = {"num_slots": 16, "slot_dim": 16, "share_queries": True}


def trainable(model: torch.nn.Module, prefix: str | tuple[str, ...]) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad and n.startswith(prefix)}


def names(model: torch.nn.Module, prefix: str | tuple[str, ...]) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.startswith(prefix)}


def test_lock_image_tower_freezes_the_readout_too():
    model = tiny()
    model.lock_image_tower()
    assert not trainable(model, "visual.")
    assert "text_sparo.queries" in trainable(model, "text_sparo.")
    model = tiny()
    model.lock_image_tower(unlocked_groups=1)
    assert trainable(model, "visual.") == names(model, "visual.sparo.")
    model = tiny()
    model.lock_image_tower(unlocked_groups=2)
    unlocked = trainable(model, "visual.")
    assert "visual.ln_post.weight" in unlocked and "visual.sparo.key.weight" in unlocked
    assert "visual.transformer.resblocks.2.mlp.c_fc.weight" in unlocked
    assert "visual.transformer.resblocks.1.mlp.c_fc.weight" not in unlocked
    assert model.visual.proj is None


def test_lock_text_tower_freezes_the_readout_too():
    model = tiny()
    model.lock_text_tower()
    assert not trainable(model, TEXT_TOWER)
    assert trainable(model, "visual.") and model.logit_scale.requires_grad
    model = tiny()
    model.lock_text_tower(unlocked_layers=1)
    assert trainable(model, TEXT_TOWER) == names(model, "text_sparo.")
    model = tiny()
    model.lock_text_tower(unlocked_layers=2)
    assert "ln_final.weight" in trainable(model, "ln_final")
    assert "transformer.resblocks.2.attn.in_proj_weight" in trainable(model, "transformer.")
    with pytest.raises(ValueError, match="LayerNorm"):
        model.lock_text_tower(freeze_layer_norm=False)


def test_shared_queries_stay_trainable_when_one_tower_is_locked():
    model = tiny(sparo_cfg=SHARED_QUERIES)
    model.lock_image_tower()
    assert trainable(model, "visual.") == {"visual.sparo.queries"}
    assert trainable(model, TEXT_TOWER) == names(model, TEXT_TOWER)
    model = tiny(sparo_cfg=SHARED_QUERIES)
    model.lock_text_tower()
    assert not trainable(model, TEXT_TOWER)
    assert trainable(model, "visual.") == names(model, "visual.")


@pytest.mark.parametrize("image_first", [True, False])
def test_shared_queries_freeze_when_both_towers_are_locked(image_first):
    model = tiny(sparo_cfg=SHARED_QUERIES)
    locks = [model.lock_image_tower, model.lock_text_tower]
    for lock in locks if image_first else locks[::-1]:
        lock()
    assert trainable(model, "") == {"logit_scale"}


def test_shared_queries_follow_a_readout_left_unlocked():
    model = tiny(sparo_cfg=SHARED_QUERIES)
    model.lock_text_tower()
    model.lock_image_tower(unlocked_groups=1, freeze_bn_stats=True)
    assert trainable(model, "visual.") == names(model, "visual.sparo.")
    assert "visual.sparo.queries" in names(model, "visual.sparo.")
    assert not trainable(model, TEXT_TOWER)
    model = tiny(sparo_cfg=SHARED_QUERIES)
    model.lock_image_tower()
    model.lock_text_tower(unlocked_layers=1)
    assert trainable(model, "visual.") == {"visual.sparo.queries"}
    assert trainable(model, TEXT_TOWER) == names(model, "text_sparo.")
    model.lock_text_tower()
    assert not trainable(model, ("visual.", *TEXT_TOWER))


def test_grad_checkpointing_gives_the_same_gradients():
    images, text = batch(tiny())
    grads = []
    for enable in (False, True):
        model = tiny()
        model.set_grad_checkpointing(enable)
        ClipLoss()(*model(images, text)).backward()
        grads.append(model.visual.sparo.key.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_no_weight_decay_names_the_queries():
    model = tiny()
    names = model.no_weight_decay()
    assert {"visual.sparo.queries", "text_sparo.queries", "positional_embedding"} <= names
    assert {"visual.class_embedding", "visual.positional_embedding"} <= names


@pytest.mark.parametrize("precision", ["bf16", "fp16", "pure_bf16", "pure_fp16"])
def test_low_precision_embeddings_are_finite(precision):
    model = tiny(precision=precision)
    images, text = batch(model)
    dtype = torch.bfloat16 if "bf16" in precision else torch.float16
    if precision in ("bf16", "fp16"):
        assert model.visual.sparo.queries.dtype == torch.float32  # OpenCLIP leaves it in fp32
    image_features = model.encode_image(images.to(dtype))
    text_features = model.encode_text(text)
    for features in (image_features, text_features):
        assert features.dtype == dtype and torch.isfinite(features).all()


def test_autocast_matches_fp32():
    model = tiny()
    images, text = batch(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        image_features, text_features, _ = model(images, text)
    assert torch.isfinite(image_features).all() and torch.isfinite(text_features).all()
    reference = model.encode_image(images, normalize=True)
    assert F.cosine_similarity(image_features.float(), reference).min() > 0.99


@pytest.mark.slow  # torch.compile on CPU (minutes)
def test_torch_compile_matches_eager():
    model = tiny().eval()
    images, text = batch(model)
    compiled = torch.compile(model)
    with torch.no_grad():
        eager = model(images, text)
        fast = compiled(images, text)
    for a, b in zip(eager, fast, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_parameter_counts_do_not_exceed_the_baselines():
    for name in ("ViT-Ti-8-64", "ViT-B-32", "ViT-B-16", "ViT-L-14"):
        with torch.device("meta"):
            baseline = open_clip.create_model(name, device="meta")
            sparo = open_clip.create_model("sparo-" + name, device="meta")
        count = sum(p.numel() for p in sparo.parameters())
        assert count <= sum(p.numel() for p in baseline.parameters()), name
        assert sparo.visual.sparo.key.out_features == sparo.num_slots * sparo.visual.sparo.attn_dim


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"embed_dim": 100}, "embed_dim=100"),
        ({"sparo_cfg": {"num_slots": 16, "slot_dim": 16, "reduce_depth": 4}}, "reduce_depth"),
        ({"sparo_cfg": {"num_slots": 16, "slot_dim": 16, "num_heads": 3}}, "num_heads"),
        ({"sparo_cfg": {"num_slots": 16, "slot_dim": 16, "slot_repr": "x"}}, "slot_repr"),
        ({"sparo_cfg": {"num_slots": 16, "slot_dim": 16, "bogus": 1}}, "unknown keys"),
        (
            {"sparo_cfg": {"num_slots": 16, "slot_dim": 16, "share_kv": True, "value_dim": 8}},
            "value_dim",
        ),
    ],
)
def test_invalid_model_configs_fail_at_construction(overrides, key):
    with pytest.raises(ValueError, match=key):
        open_clip.create_model(TINY, **overrides)


def test_unsupported_towers_are_rejected():
    cfg = open_clip.get_model_config(TINY)
    text_cfg = dict(cfg["text_cfg"], heads=2)
    with pytest.raises(ValueError, match="share_queries"):
        SparoCLIP(256, cfg["vision_cfg"], text_cfg, dict(cfg["sparo_cfg"], share_queries=True))
    with pytest.raises(ValueError, match="attentional_pool"):
        SparoCLIP(
            256, dict(cfg["vision_cfg"], attentional_pool=True), cfg["text_cfg"], cfg["sparo_cfg"]
        )
    with pytest.raises(ValueError, match="class token"):
        SparoCLIP(256, cfg["vision_cfg"], dict(cfg["text_cfg"], embed_cls=True), cfg["sparo_cfg"])


EDGE_CAPTIONS = [  # awkward but legal captions for the model's own tokenizer
    "",
    "a red square " * 40,  # far longer than the context: truncated, EOS forced at the end
    "une forme rouge à gauche, 赤い四角, ☃ 🙂",
    "   ",
]


def edge_images(preprocess) -> torch.Tensor:
    rng = np.random.default_rng(0)
    pictures = [
        Image.fromarray(rng.integers(0, 255, (37, 91), dtype=np.uint8), mode="L"),  # greyscale
        Image.fromarray(rng.integers(0, 255, (300, 17, 3), dtype=np.uint8)),  # odd size
        Image.fromarray(rng.integers(0, 255, (64, 64, 4), dtype=np.uint8), mode="RGBA"),
        Image.new("RGB", (1, 1)),
    ]
    return torch.stack([preprocess(p) for p in pictures])


@pytest.mark.parametrize("precision", ["fp32", "amp_bf16", "pure_bf16", "pure_fp16"])
def test_edge_inputs_give_finite_embeddings(precision):
    torch.manual_seed(0)
    model_precision = precision if precision.startswith("pure") else "fp32"
    model, _, preprocess = open_clip.create_model_and_transforms(TINY, precision=model_precision)
    tokens = open_clip.get_tokenizer(TINY)(EDGE_CAPTIONS)
    assert (tokens.argmax(-1) == torch.tensor([1, 31, tokens[2].argmax(), 1])).all()
    pixels = edge_images(preprocess)
    if precision.startswith("pure"):
        pixels = pixels.to(torch.bfloat16 if "bf16" in precision else torch.float16)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "amp_bf16"):
        image_features = model.encode_image(pixels, normalize=True)
        text_features = model.encode_text(tokens, normalize=True)
    for features in (image_features, text_features):
        assert features.shape == (4, 256) and torch.isfinite(features).all()
        torch.testing.assert_close(features.float().norm(dim=-1), torch.ones(4), atol=1e-2, rtol=0)
