import os
import subprocess
import sys

import pytest
from benchmark_data import TINY_MODEL, write_sugar_crepe
from huggingface_hub import constants as hub_constants

from open_clip_sparo.io.loading import load_model
from open_clip_sparo.io.pretrained import (
    PretrainedNotFoundError,
    is_pretrained_tag,
    resolve_pretrained,
)

OPENAI_HUB_ID = "timm/vit_base_patch32_clip_224.openai"  # ViT-B-32's "openai" tag on the hub


def write_hub_file(cache, hub_id, filename, content=b"weights"):
    """One file in the Hugging Face Hub cache layout: models--org--name/snapshots/<rev>/file
    with refs/main naming the revision, as a download leaves it."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    path = repo / "snapshots" / revision / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_a_path_resolves_to_itself(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"x")
    assert resolve_pretrained("ViT-B-32", str(path)) == path


def test_a_tag_resolves_through_the_hub_cache(tmp_path):
    cached = write_hub_file(tmp_path, OPENAI_HUB_ID, "open_clip_pytorch_model.bin")
    assert is_pretrained_tag("ViT-B-32", "openai")
    assert resolve_pretrained("ViT-B-32", "openai", cache_dir=str(tmp_path)) == cached


def test_the_default_cache_is_the_hugging_face_one(tmp_path, monkeypatch):
    """HF_HUB_CACHE, as huggingface_hub read it at import, is where tags are looked up."""
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    cached = write_hub_file(tmp_path, OPENAI_HUB_ID, "open_clip_model.safetensors")
    assert resolve_pretrained("ViT-B-32", "openai") == cached


def test_an_hf_hub_id_resolves_through_the_hub_cache(tmp_path):
    cached = write_hub_file(tmp_path, "org/tiny", "open_clip_model.safetensors")
    assert resolve_pretrained("ViT-B-32", "hf-hub:org/tiny", cache_dir=str(tmp_path)) == cached


def test_an_offline_tag_without_cache_is_one_line(tmp_path):
    with pytest.raises(PretrainedNotFoundError) as error:
        resolve_pretrained("ViT-B-32", "openai", cache_dir=str(tmp_path))
    message = str(error.value)
    assert "\n" not in message
    for part in ("'openai'", OPENAI_HUB_ID, "HF_HUB_OFFLINE", str(tmp_path)):
        assert part in message
    with pytest.raises(PretrainedNotFoundError, match=r"hf-hub:org/none.*HF_HUB_OFFLINE"):
        resolve_pretrained("ViT-B-32", "hf-hub:org/none", cache_dir=str(tmp_path))


def test_neither_a_file_nor_a_tag(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a file nor a pretrained tag"):
        resolve_pretrained(TINY_MODEL, str(tmp_path / "missing.pt"))


def test_load_model_checks_the_tag_first(tmp_path):
    with pytest.raises(PretrainedNotFoundError, match="HF_HUB_OFFLINE"):
        load_model("ViT-B-32", "openai", cache_dir=str(tmp_path))


def test_sparo_eval_offline_tag_ends_in_one_line(tmp_path):
    """`sparo eval` with a tag offline and an empty hub cache: exit 1, one line, no traceback."""
    write_sugar_crepe(tmp_path / "sc", "swap_att", [("a red square", "a blue square")])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    command = [sys.executable, "-m", "open_clip_sparo", "eval", "--model", "ViT-B-32"]
    command += ["--pretrained", "openai", "--dataset", "sugar_crepe/swap_att"]
    command += ["--dataset_root", str(tmp_path / "sc"), "--output", str(tmp_path / "r.json")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("sparo eval: error")]
    assert len(error) == 1
    assert OPENAI_HUB_ID in error[0] and "HF_HUB_OFFLINE" in error[0]
    assert str(tmp_path / "hub") in error[0]
