import json

import pytest
import torch
import torch.nn.functional as F
from dino_utils import one_thread
from open_clip.transformer import VisionTransformer

from open_clip_sparo import select_slots
from open_clip_sparo.dino import build_backbone, get_backbone_cfg, list_backbones
from open_clip_sparo.dino.backbone import ClassTokenViT, SparoViT
from open_clip_sparo.dino.configs import BackboneCfg

PAIRS = [("ViT-S-16", "sparo-ViT-S-16"), ("ViT-B-16", "sparo-ViT-B-16")]
PAIRS += [("ViT-Ti-8-64", "sparo-ViT-Ti-8-64")]


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def sparo() -> SparoViT:
    torch.manual_seed(0)
    return build_backbone(get_backbone_cfg("sparo-ViT-Ti-8-64")).eval()


@pytest.fixture(scope="module")
def class_token() -> ClassTokenViT:
    torch.manual_seed(0)
    return build_backbone(get_backbone_cfg("ViT-Ti-8-64")).eval()


def test_every_sparo_config_has_a_class_token_twin():
    names = list_backbones()
    assert sorted(names) == sorted(name for pair in PAIRS for name in pair)
    for baseline, sparo_name in PAIRS:
        assert get_backbone_cfg(baseline).vision_cfg == get_backbone_cfg(sparo_name).vision_cfg
        assert get_backbone_cfg(baseline).sparo_cfg is None


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("baseline", "sparo_name"), PAIRS)
def test_sparo_backbone_is_at_most_its_baseline_size(baseline, sparo_name):
    with torch.device("meta"):
        base = build_backbone(get_backbone_cfg(baseline))
        sparo = build_backbone(get_backbone_cfg(sparo_name))
    cfg = get_backbone_cfg(sparo_name)
    assert len(sparo.transformer.resblocks) == cfg.vision_cfg["layers"] - 1
    assert len(base.transformer.resblocks) == cfg.vision_cfg["layers"]
    assert _num_params(sparo) <= _num_params(base)
    assert sparo.output_dim == cfg.sparo_cfg["num_slots"] * cfg.sparo_cfg["slot_dim"]
    assert base.output_dim == cfg.vision_cfg["width"]


@pytest.mark.parametrize("size", [64, 32, 24, 48])
def test_sparo_representation_is_unit_norm_concatenated_slots(sparo, size):
    images = torch.randn(3, 3, size, size)
    with torch.no_grad():
        features = sparo(images)
        slots = sparo.forward_slots(images).slots
    assert features.shape == (3, 16 * 16)
    assert slots.shape == (3, 16, 16)
    torch.testing.assert_close(features, slots.flatten(1))
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(3))
    # every slot is a unit vector weighted by sqrt(1 / L)
    torch.testing.assert_close(slots.norm(dim=-1), torch.full((3, 16), 16**-0.5))


def test_sparo_attends_over_all_tokens_of_any_crop(sparo):
    with torch.no_grad():
        attn = sparo.forward_slots(torch.randn(2, 3, 32, 32)).attn
    assert attn.shape == (2, 16, 1 + 4 * 4)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 16))


def test_slot_selection_zeroes_other_slots_and_keeps_unit_norm(sparo):
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), select_slots(sparo, [1, 5]):
        slots = sparo(images).view(2, 16, 16)
    torch.testing.assert_close(slots.flatten(1).norm(dim=-1), torch.ones(2))
    others = [i for i in range(16) if i not in (1, 5)]
    assert torch.all(slots[:, others] == 0)
    torch.testing.assert_close(slots[:, [1, 5]].norm(dim=-1), torch.full((2, 2), 0.5**0.5))


def test_slot_selection_refuses_the_class_token_backbone(class_token):
    with pytest.raises(ValueError, match="no SPARO slots"), select_slots(class_token, [0]):
        pass


def test_class_token_representation_is_the_normalised_class_token(class_token):
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens = class_token.transformer(class_token._embeds(images))
        expected = class_token.ln_post(tokens)[:, 0]
        features = class_token(images)
    assert class_token.proj is None
    assert features.shape == (2, 128)
    torch.testing.assert_close(features, expected)
    assert class_token(torch.randn(1, 3, 32, 32)).shape == (1, 128)


@pytest.mark.parametrize("name", ["ViT-Ti-8-64", "sparo-ViT-Ti-8-64"])
def test_embeddings_at_the_native_size_are_openclips(name):
    backbone = build_backbone(get_backbone_cfg(name))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            backbone._embeds(images), VisionTransformer._embeds(backbone, images)
        )


@pytest.mark.parametrize(("height", "width"), [(32, 32), (24, 40)])
def test_local_crops_see_resampled_position_embeddings(class_token, height, width):
    """Every token of a crop gets its position embedding: the class token its own, the patches
    the 8 x 8 grid of patch embeddings resampled (bicubic, antialiased, as DINO) to the crop's
    grid."""
    grid = (height // 8, width // 8)
    with torch.no_grad():
        x = class_token._embeds(torch.zeros(1, 3, height, width))  # conv1 has no bias: zeros out
        positions = class_token.positional_embedding
        patch_grid = positions[1:].reshape(1, 8, 8, -1).permute(0, 3, 1, 2)  # (1, width, 8, 8)
        resampled = F.interpolate(patch_grid, size=grid, mode="bicubic", antialias=True)
        patches = resampled[0].flatten(1).T  # (gh * gw, width), row-major like the patches
        expected = class_token.ln_pre(
            torch.cat([(class_token.class_embedding + positions[0])[None], patches])
        )
    assert x.shape == (1, 1 + grid[0] * grid[1], 128)
    torch.testing.assert_close(x[0], expected)


def test_backbone_config_from_json(tmp_path):
    cfg = get_backbone_cfg("sparo-ViT-Ti-8-64")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert get_backbone_cfg(path) == cfg
    assert isinstance(build_backbone(get_backbone_cfg(str(path))), SparoViT)


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="unknown DINO backbone"):
        get_backbone_cfg("ViT-Q-16")
    with pytest.raises(FileNotFoundError):
        get_backbone_cfg("missing.json")
    vision = get_backbone_cfg("ViT-Ti-8-64").vision_cfg
    with pytest.raises(ValueError, match="reduce_depth"):
        BackboneCfg(vision, {"num_slots": 4, "slot_dim": 4, "reduce_depth": 4})
    with pytest.raises(ValueError, match="unknown keys"):
        BackboneCfg(vision, {"num_slots": 4, "slots": 3})
