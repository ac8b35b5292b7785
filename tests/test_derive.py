"""derive.py and its registration: which OpenCLIP configs SPARO reads (sparo_support) and
sparo-<name> for each."""

import copy

import numpy as np
import open_clip
import pytest
import torch
from open_clip.loss import ClipLoss
from open_clip.model import CLIP, CustomTextCLIP
from open_clip.transformer import QuickGELU
from PIL import Image

from open_clip_sparo import SparoCfg, SparoCLIP, registry
from open_clip_sparo.derive import baseline_name, derive_config, derived_configs, sparo_support

PAPER = SparoCfg().to_dict()  # 64 slots of 64, one block fewer per tower
SHIPPED_SPARO = {p.stem for p in registry.CONFIG_DIR.glob("sparo-*.json")}


def derived_names() -> list[str]:
    return [n for n in open_clip.list_models() if n.startswith("sparo-")]


def own_tower_configs() -> list[str]:
    """OpenCLIP's configs (and this project's baseline) with OpenCLIP's own ViT and text
    transformer, by their config keys."""
    names = [
        n
        for n in open_clip.list_models()
        if not n.startswith(("sparo-", "gap-", "bottleneck-", "codebook-"))
    ]
    configs = {n: open_clip.get_model_config(n) for n in names}
    return [
        n
        for n, cfg in configs.items()
        if isinstance(cfg["vision_cfg"].get("layers", 12), int)
        and "timm_model_name" not in cfg["vision_cfg"]
        and "hf_model_name" not in cfg["text_cfg"]
        and "multimodal_cfg" not in cfg
    ]


def test_every_openclip_transformer_config_has_a_derived_twin() -> None:
    own_towers = own_tower_configs()
    assert len(own_towers) == 46  # OpenCLIP 3.3.0's 45, and this project's ViT-Ti-8-64
    assert {f"sparo-{n}" for n in own_towers} <= set(derived_names())
    names = set(open_clip.list_models())
    for refused in ("RN50", "RN50x64", "coca_ViT-B-32", "coca_ViT-L-14"):
        assert refused in names and f"sparo-{refused}" not in names
    listed = open_clip.list_models()
    assert listed == sorted(listed, key=open_clip.factory._natural_key)  # OpenCLIP's order


def test_derived_config_differs_from_its_base_only_by_sparo() -> None:
    for base_name in own_tower_configs():
        name = f"sparo-{base_name}"
        if name in SHIPPED_SPARO:
            continue
        base, derived = (open_clip.get_model_config(n) for n in (base_name, name))
        assert set(derived) == set(base) | {"sparo_cfg"}, name
        for key, value in base.items():
            if key != "embed_dim":
                assert derived[key] == value, (name, key)
        assert derived["sparo_cfg"] == PAPER
        assert derived["embed_dim"] == PAPER["num_slots"] * PAPER["slot_dim"] == 4096


def test_the_paper_configs_are_what_derivation_gives() -> None:
    for name in ("sparo-ViT-B-32", "sparo-ViT-B-16", "sparo-ViT-L-14"):
        assert open_clip.get_model_config(name) == derive_config(
            open_clip.get_model_config(baseline_name(name))
        )


def test_shipped_files_win_and_derivation_skips_the_projects_own_configs() -> None:
    assert open_clip.get_model_config("sparo-ViT-Ti-8-64")["sparo_cfg"]["num_slots"] == 16
    ours = {"sparo-ViT-Ti-8-64": open_clip.get_model_config("sparo-ViT-Ti-8-64")}
    ours["gap-ViT-B-32"] = open_clip.get_model_config("gap-ViT-B-32")
    assert derived_configs(ours) == {}
    registry.register()  # again: nothing changes
    assert open_clip.get_model_config("sparo-ViT-Ti-8-64")["sparo_cfg"]["num_slots"] == 16


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sparo-RN50", "'sparo-RN50' does not exist: SPARO cannot read RN50 because its vision "
         "tower is a ResNet"),
        ("sparo-coca_ViT-B-32", "cannot read coca_ViT-B-32 because it is a CoCa model"),
        ("sparo-nonsense", "unknown model 'sparo-nonsense': OpenCLIP has no model config"),
    ],
)  # fmt: skip
def test_models_that_cannot_be_derived_fail_in_one_short_line(name: str, message: str) -> None:
    for make in (open_clip.create_model, open_clip.get_tokenizer):
        with pytest.raises(ValueError) as error:
            make(name)
        assert message in str(error.value)
        assert len(str(error.value)) < 300 and "\n" not in str(error.value)
    assert open_clip.get_model_config(name) is None  # OpenCLIP's public reader is untouched


def test_tokenizer_and_preprocessing_are_the_bases() -> None:
    tokenizer, base_tokenizer = (open_clip.get_tokenizer(n) for n in ("sparo-ViT-S-32", "ViT-S-32"))
    assert torch.equal(tokenizer(["a photo of a cat"]), base_tokenizer(["a photo of a cat"]))
    vision = {"image_size": 256, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32}
    small = {"vision_cfg": vision, "text_cfg": {"layers": 2, "width": 64, "heads": 2}}
    model, _, preprocess = open_clip.create_model_and_transforms("sparo-ViT-B-32-256", **small)
    _, _, base_preprocess = open_clip.create_model_and_transforms("ViT-B-32-256", **small)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8))
    assert type(model) is SparoCLIP
    assert torch.equal(preprocess(image), base_preprocess(image))
    assert preprocess(image).shape == (3, 256, 256)


def test_sparo_cfg_keys_are_overridable() -> None:
    tiny = {"num_slots": 8, "slot_dim": 16, "reduce_depth": 0, "slot_weight": "softmax"}
    model = open_clip.create_model(
        "sparo-ViT-S-32",
        embed_dim=128,
        sparo_cfg=tiny,
        vision_cfg={"layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
        text_cfg={"layers": 2, "width": 64, "heads": 2},
    )
    assert model.sparo_cfg == SparoCfg(**tiny) and len(model.transformer.resblocks) == 2
    with pytest.raises(ValueError, match="embed_dim=4096 must equal"):
        open_clip.create_model("sparo-ViT-S-32", sparo_cfg={"num_slots": 8})


def meta_params(model_cfg: dict, cls: type) -> int:
    """Parameters of ``cls`` built from ``model_cfg`` on the meta device; a ``custom_text`` base
    (SigLIP, ...) is OpenCLIP's CustomTextCLIP, as its factory builds it."""
    if model_cfg.get("custom_text"):
        cls = CustomTextCLIP
    cfg = {key: value for key, value in model_cfg.items() if key != "custom_text"}
    with torch.device("meta"):
        return sum(p.numel() for p in cls(**cfg).parameters())


@pytest.mark.parametrize("name", ["ViT-B-16-quickgelu", "ViT-H-14", "ViT-S-16-alt"])
def test_derived_models_have_at_most_their_bases_parameters(name: str) -> None:
    """ViT-S-16-alt is the closest call (0.998 of its base)."""
    derived = open_clip.get_model_config(f"sparo-{name}")
    assert meta_params(derived, SparoCLIP) <= meta_params(open_clip.get_model_config(name), CLIP)


@pytest.mark.slow
def test_every_derived_model_has_at_most_its_bases_parameters() -> None:
    for name in derived_names():
        derived = open_clip.get_model_config(name)
        base = open_clip.get_model_config(baseline_name(name))
        assert meta_params(derived, SparoCLIP) <= meta_params(base, CLIP), name


def test_quick_gelu_reaches_the_derived_towers() -> None:
    with torch.device("meta"):
        model = SparoCLIP(**open_clip.get_model_config("sparo-ViT-B-16-quickgelu"))
    assert isinstance(model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    assert isinstance(model.transformer.resblocks[0].mlp.gelu, QuickGELU)


def shrunk(model_cfg: dict, patches: int) -> dict:
    """``model_cfg`` with its kind-specific options and tiny sizes (8 slots of 8), images of
    ``patches`` x ``patches`` patches."""
    cfg = copy.deepcopy(model_cfg)
    image_size = cfg["vision_cfg"]["patch_size"] * patches
    cfg["vision_cfg"].update(layers=3, width=64, head_width=32, image_size=image_size)
    cfg["text_cfg"].update(layers=3, width=64, heads=2, vocab_size=1000)
    cfg["sparo_cfg"].update(num_slots=8, slot_dim=8)
    cfg["embed_dim"] = 64
    return cfg


def texts(cfg: dict, lengths: list[int]) -> torch.Tensor:
    """Token ids that end as the pool type expects: the largest id (argmax) or ``eos_id``
    (eos) at the end of the text, else nothing; padding (0) after it."""
    text_cfg = cfg["text_cfg"]
    pool_type, context = text_cfg.get("pool_type", "argmax"), text_cfg["context_length"]
    ids = torch.zeros(len(lengths), context, dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(3, 990, (length,))
        if pool_type == "argmax":
            ids[row, length - 1] = 999
        elif pool_type == "eos":
            ids[row, length - 1] = text_cfg["eos_id"]
    return ids


KINDS = [  # one derived config per kind of OpenCLIP tower option, and image patches per side
    ("sparo-ViT-B-16-quickgelu", 4),  # QuickGELU
    ("sparo-ViT-L-14-CLIPA-336", 5),  # no ln_pre, avg pool, bidirectional text pooled 'last'
    ("sparo-ViT-H-14-worldwide", 3),  # text pooled at an 'eos' id
    ("sparo-ViT-M-16-alt", 4),  # layer scale
    ("sparo-ViT-B-32-256", 8),  # the real image size: 256 px, patch 32
]


@pytest.mark.parametrize(("name", "patches"), KINDS)
def test_derived_models_of_each_kind_embed_and_train(name: str, patches: int) -> None:
    torch.manual_seed(0)
    cfg = shrunk(open_clip.get_model_config(name), patches)
    model = SparoCLIP(**cfg)
    size = cfg["vision_cfg"]["image_size"]
    images, tokens = torch.randn(3, 3, size, size), texts(cfg, [4, 9, 2])
    image_features, text_features, logit_scale = model(images, tokens)
    for features in (image_features, text_features):
        assert features.shape == (3, 64) and torch.isfinite(features).all()
        assert torch.allclose(features.norm(dim=-1), torch.ones(3), atol=1e-5)
    # the read-out sees the text up to its end and nothing after it
    attn = model.encode_text_slots(tokens).attn  # (B, L, N)
    assert attn[1, :, :9].sum(-1).allclose(torch.ones(8)) and not attn[1, :, 9:].any()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = ClipLoss()(image_features, text_features, logit_scale)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    for key in (
        "visual.sparo.key.weight",
        "text_sparo.key.weight",
        "transformer.resblocks.0.mlp.c_fc.weight",
    ):
        assert not torch.equal(before[key], model.state_dict()[key]), key


@pytest.mark.slow
def test_sparo_vit_b_16_quickgelu_at_full_size_embeds_and_trains() -> None:
    torch.manual_seed(0)
    model = open_clip.create_model("sparo-ViT-B-16-quickgelu")
    base = open_clip.create_model("ViT-B-16-quickgelu")
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in base.parameters())
    tokens = open_clip.get_tokenizer("sparo-ViT-B-16-quickgelu")(["a cat", "two dogs on grass"])
    image_features, text_features, logit_scale = model(torch.randn(2, 3, 224, 224), tokens)
    for features in (image_features, text_features):
        assert features.shape == (2, 4096) and torch.isfinite(features).all()
        assert torch.allclose(features.norm(dim=-1), torch.ones(2), atol=1e-5)
    ClipLoss()(image_features, text_features, logit_scale).backward()
    assert model.visual.sparo.key.weight.grad.abs().sum() > 0
    assert model.text_sparo.key.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("pool_type", ["first", "none"])
def test_other_text_pool_types_read_the_text_up_to_its_padding(pool_type: str) -> None:
    """No OpenCLIP config pools ``first`` or ``none``; a derived model still reads them."""
    torch.manual_seed(0)
    cfg = shrunk(open_clip.get_model_config("sparo-ViT-B-32"), 2)
    cfg["text_cfg"]["pool_type"] = pool_type
    tokens = texts(cfg, [5, 3])
    attn = SparoCLIP(**cfg).encode_text_slots(tokens).attn  # (B, L, N)
    assert attn[0, :, :5].sum(-1).allclose(torch.ones(8)) and not attn[0, :, 5:].any()
    assert attn[1, :, :3].sum(-1).allclose(torch.ones(8)) and not attn[1, :, 3:].any()


OWN_TOWERS = ["ViT-B-32", "ViT-B-16-quickgelu", "ViT-L-14-CLIPA-336", "ViT-H-14-worldwide"]


def test_openclip_transformer_towers_are_supported() -> None:
    for name in OWN_TOWERS:
        assert sparo_support(open_clip.get_model_config(name)) is None, name


def test_resnet_and_coca_are_refused_with_their_reason() -> None:
    assert "ResNet" in sparo_support(open_clip.get_model_config("RN50"))
    assert "CoCa" in sparo_support(open_clip.get_model_config("coca_ViT-B-32"))
    vit = open_clip.get_model_config("ViT-B-32")
    pooled = {**vit, "vision_cfg": {**vit["vision_cfg"], "attentional_pool": True}}
    assert "attentional pooler" in sparo_support(pooled)
    with_cls = {**vit, "text_cfg": {**vit["text_cfg"], "embed_cls": True}}
    assert "class token" in sparo_support(with_cls)


def test_timm_vit_towers_are_supported_and_other_trunks_and_hf_towers_refused() -> None:
    for name in ("ViT-B-16-SigLIP", "EVA02-B-16", "PE-Core-B-16"):
        assert sparo_support(open_clip.get_model_config(name)) is None, name
    assert "not a ViT-family" in sparo_support(open_clip.get_model_config("convnext_base"))
    assert "Hugging Face" in sparo_support(open_clip.get_model_config("xlm-roberta-base-ViT-B-32"))


def test_a_custom_text_base_derives_a_clip_config() -> None:
    """SigLIP's own text transformer is built through ``custom_text``; its twin is a CLIP."""
    base = open_clip.get_model_config("ViT-B-16-SigLIP")
    assert base.get("custom_text")
    derived = derive_config(base)
    assert "custom_text" not in derived
    assert derived["vision_cfg"] == base["vision_cfg"] and derived["text_cfg"] == base["text_cfg"]
