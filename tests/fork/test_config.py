import open_clip
import pytest
from fork_utils import fork_config, shipped_fork_config

import open_clip_sparo  # noqa: F401  (registers the sparo-* configs)
from open_clip_sparo.fork.config import from_fork_config


@pytest.mark.parametrize("patch_size", [16, 32])
def test_shipped_fork_configs_are_the_shipped_configs(patch_size):
    fork = from_fork_config(shipped_fork_config(patch_size))
    assert fork.model_cfg == open_clip.get_model_config(f"sparo-ViT-B-{patch_size}")
    assert fork.notes == []


def test_options_translate():
    cfg = fork_config(
        L=16, V=4, sparo_attn_dim=20, sparo_value_dim=12, sparo_heads=4, share_kv=False,
        share_queries=True, sparo_type="sqrtsem:softmax", quick_gelu=True, reduce_depth=None,
    )  # fmt: skip
    model_cfg = from_fork_config(cfg).model_cfg
    assert model_cfg["embed_dim"] == 64 and model_cfg["quick_gelu"] is True
    assert model_cfg["sparo_cfg"] == {
        "num_slots": 16, "slot_dim": 4, "attn_dim": 20, "value_dim": 12, "num_heads": 4,
        "share_kv": False, "share_queries": True, "slot_repr": "sqrtsem",
        "slot_weight": "softmax", "reduce_depth": 0,
    }  # fmt: skip


def test_options_the_fork_never_reads_are_noted():
    cfg = fork_config(embed_dim=512, bottleneck_dim=256)
    cfg["vision_cfg"]["global_average_pool"] = True
    notes = from_fork_config(cfg).notes
    assert any(n.startswith("embed_dim=512 replaced by L * V = 64") for n in notes)
    assert any(n.startswith("bottleneck_dim=256 ignored") for n in notes)
    assert any(n.startswith("vision_cfg.global_average_pool=True ignored") for n in notes)


@pytest.mark.parametrize(
    ("options", "tower", "message"),
    [
        ({"sparo_type": "sem:norm"}, {}, "sparo_type='sem:norm' is refused by the fork itself"),
        ({"sparo_type": "cont"}, {}, "sparo_type='cont' is not"),
        ({"use_sparo": False}, {}, "use_sparo is not true"),
        ({"use_codebook": True}, {}, "use_codebook=True"),
        ({"custom_text": True}, {}, "custom_text=True"),
        ({"L": None}, {}, "L is missing"),
        ({"sparo_scale": 2}, {}, "sparo_scale is not a key of the fork's CLIP"),
        ({}, {"vision_cfg": {"input_patchnorm": True}}, "vision_cfg.input_patchnorm=True"),
        ({}, {"vision_cfg": {"attentional_pool": True}}, "vision_cfg.attentional_pool=True"),
        ({}, {"vision_cfg": {"timm_model_name": "vit"}}, "vision_cfg.timm_model_name='vit'"),
        ({}, {"vision_cfg": {"layers": [3, 4, 6, 3]}}, "vision_cfg.layers is a list"),
        ({}, {"text_cfg": {"hf_model_name": "bert"}}, "text_cfg.hf_model_name='bert'"),
        ({}, {"text_cfg": {"embed_cls": True}}, "text_cfg.embed_cls=True"),
        ({}, {"text_cfg": {"proj_type": "none"}}, "text_cfg.proj_type is not a key"),
    ],
)
def test_options_without_an_equivalent_are_refused_by_name(options, tower, message):
    cfg = fork_config(**options)
    for name, keys in tower.items():
        cfg[name].update(keys)
    with pytest.raises(ValueError, match=message) as error:
        from_fork_config(cfg)
    assert "no equivalent here" in str(error.value)


def test_translated_values_are_checked_by_sparo_cfg():
    with pytest.raises(ValueError, match="num_heads=3 does not divide num_slots=8"):
        from_fork_config(fork_config(sparo_heads=3))


@pytest.mark.parametrize(
    ("options", "tower", "message"),
    [
        ({"L": 10**9}, {}, "L=1000000000 (a whole number from 1 to 65536)"),
        ({}, {"vision_cfg": {"width": 10**9}}, "vision_cfg.width=1000000000 (a whole number"),
        ({}, {"vision_cfg": {"layers": -2}}, "vision_cfg.layers=-2 (a whole number from 1"),
        ({}, {"text_cfg": {"heads": 2.5}}, "text_cfg.heads=2.5 (a whole number from 1"),
        ({}, {"vision_cfg": None}, "vision_cfg is null, not a JSON object"),
    ],
)
def test_sizes_are_checked_before_anything_is_built(options, tower, message):
    # before: translated as they are, then SparoCLIP allocated terabytes (L, width) or failed
    # deep in OpenCLIP (layers), or called a null tower an option without equivalent
    cfg = fork_config(**options)
    for name, keys in tower.items():
        cfg[name] = None if keys is None else cfg[name] | keys
    with pytest.raises(ValueError) as error:
        from_fork_config(cfg)
    assert str(error.value).startswith(
        f"the fork config has values no model can be built from: {message}"
    )
    assert str(error.value).endswith(
        "Fix these keys (the fork's model_configs/*.json give real sizes); nothing was built."
    )
