import json
import os
import subprocess
import sys

import open_clip
import pytest
from open_clip import factory

import open_clip_sparo
from open_clip_sparo import SparoCLIP, registry

SHIPPED = ["sparo-ViT-B-32", "sparo-ViT-B-16", "sparo-ViT-L-14", "sparo-ViT-Ti-8-64", "ViT-Ti-8-64"]
# the paper's controls (docs/model.md), for each size they are trained at
SHIPPED += [
    f"{control}-{size}"
    for control in ("gap", "bottleneck", "codebook")
    for size in ("ViT-B-32", "ViT-B-16", "ViT-Ti-8-64")
]


def test_configs_are_listed_and_well_formed():
    assert sorted(p.stem for p in registry.CONFIG_DIR.glob("*.json")) == sorted(SHIPPED)
    assert set(SHIPPED) <= set(open_clip.list_models())
    for name in SHIPPED:  # OpenCLIP's CLIP route with its own ViT and text transformer
        cfg = open_clip.get_model_config(name)
        assert not {"multimodal_cfg", "custom_text", "init_logit_bias"} & set(cfg), name
        assert "timm_model_name" not in cfg["vision_cfg"] and "patch_size" in cfg["vision_cfg"]
        assert "hf_model_name" not in cfg["text_cfg"], name
    for path in registry.CONFIG_DIR.glob("sparo-*.json"):
        cfg = json.loads(path.read_text())
        sparo = cfg["sparo_cfg"]
        assert cfg["embed_dim"] == sparo["num_slots"] * sparo["slot_dim"], path.name
        baseline = open_clip.get_model_config(path.stem.removeprefix("sparo-"))
        assert (
            cfg["vision_cfg"] == baseline["vision_cfg"] and cfg["text_cfg"] == baseline["text_cfg"]
        )
    for name in ("sparo-ViT-B-32", "sparo-ViT-B-16", "sparo-ViT-L-14"):
        sparo = open_clip.get_model_config(name)["sparo_cfg"]
        assert (sparo["num_slots"], sparo["slot_dim"]) == (64, 64)


def test_register_is_idempotent():
    hook, paths = factory.CLIP, list(factory._MODEL_CONFIG_PATHS)
    open_clip_sparo.register()
    open_clip_sparo.register()
    assert factory.CLIP is hook and factory._MODEL_CONFIG_PATHS == paths


def test_factory_builds_sparo_only_for_sparo_configs():
    model, _, preprocess = open_clip.create_model_and_transforms("sparo-ViT-Ti-8-64")
    assert type(model) is SparoCLIP
    assert preprocess.transforms[0].size == 64
    assert type(open_clip.create_model("ViT-Ti-8-64")) is open_clip.CLIP
    tokenizer = open_clip.get_tokenizer("sparo-ViT-Ti-8-64")
    assert tokenizer(["a red square"]).shape == (1, 32)


def test_custom_text_route_is_refused():
    with pytest.raises(ValueError, match="custom_text"):
        open_clip.create_model("sparo-ViT-Ti-8-64", force_custom_text=True)


@pytest.mark.parametrize("custom_text", [True, False])
def test_coca_route_is_refused(monkeypatch, custom_text):
    """A config with a ``multimodal_cfg`` and custom text takes OpenCLIP's CoCa route: a plain
    one builds a CoCa, a SPARO one fails naming what to remove; without custom text (OpenCLIP's
    CLIP route) it fails the same way."""
    multimodal = {"multimodal_cfg": {"width": 128, "heads": 4, "layers": 1}}
    multimodal |= {"custom_text": True} if custom_text else {}
    plain = {**open_clip.get_model_config("ViT-Ti-8-64"), **multimodal}
    sparo = {**open_clip.get_model_config("sparo-ViT-Ti-8-64"), **multimodal}
    monkeypatch.setitem(factory._MODEL_CONFIGS, "coca-Ti-8-64", plain)
    monkeypatch.setitem(factory._MODEL_CONFIGS, "sparo-coca-Ti-8-64", sparo)
    if custom_text:
        assert type(open_clip.create_model("coca-Ti-8-64")) is open_clip.CoCa
    with pytest.raises(ValueError, match=r"CoCa route.*remove .*`multimodal_cfg`"):
        open_clip.create_model("sparo-coca-Ti-8-64")


def run_python(script: str) -> subprocess.CompletedProcess:
    """``script`` in a fresh process with the automatic registration switched off."""
    env = {**os.environ, "OPEN_CLIP_SPARO_AUTOLOAD": "0"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)


@pytest.mark.slow  # two fresh Python processes
def test_without_the_package_openclip_fails_clearly(tmp_path):
    """Neither imported nor registered automatically (switched off): OpenCLIP's own errors."""
    result = run_python("import open_clip; open_clip.create_model('sparo-ViT-Ti-8-64')")
    assert result.returncode != 0
    assert "Model config for 'sparo-ViT-Ti-8-64' not found" in result.stderr
    open_clip_sparo.save_pretrained(open_clip.create_model("sparo-ViT-Ti-8-64"), tmp_path)
    result = run_python(f"import open_clip; open_clip.create_model('local-dir:{tmp_path}')")
    assert result.returncode != 0
    assert "unexpected keyword argument 'sparo_cfg'" in result.stderr
