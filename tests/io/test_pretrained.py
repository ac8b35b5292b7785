"""io.pretrained: a path, a pretrained tag or an hf-hub: id, found offline in a hub cache."""

from pathlib import Path

import open_clip
import pytest
from hub_utils import use_hub_cache, write_hub_file

from open_clip_sparo.io.pretrained import resolve_pretrained

HUB_ID = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"  # ViT-B-32's laion2b_s34b_b79k
WEIGHTS = "open_clip_pytorch_model.bin"  # OpenCLIP's file name when the tag names none


def test_tags_and_hub_ids_resolve_in_the_hub_cache(tmp_path: Path, monkeypatch) -> None:
    assert open_clip.get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")["hf_hub"] == HUB_ID + "/"
    use_hub_cache(monkeypatch, tmp_path)
    weights = write_hub_file(tmp_path, HUB_ID, WEIGHTS, lambda file: file.write(b"weights"))
    assert resolve_pretrained("ViT-B-32", "laion2b_s34b_b79k") == weights
    assert resolve_pretrained("ViT-B-32", "LAION2B-s34b-b79k") == weights  # OpenCLIP's spelling
    assert resolve_pretrained("ViT-B-32", f"hf-hub:{HUB_ID}") == weights
    assert resolve_pretrained("anything", str(weights)) == weights  # a path is a path


def test_what_cannot_be_resolved_is_named_in_one_line(tmp_path: Path, monkeypatch) -> None:
    use_hub_cache(monkeypatch, tmp_path)
    with pytest.raises(FileNotFoundError) as missing:
        resolve_pretrained("ViT-B-32", "laion2b_s34b_b79k")
    message = str(missing.value)
    assert "'laion2b_s34b_b79k' of ViT-B-32" in message and str(tmp_path) in message
    assert "HF_HUB_OFFLINE=1" in message and "\n" not in message
    with pytest.raises(FileNotFoundError, match=r"hf-hub:org/none is not in the Hugging Face"):
        resolve_pretrained("ViT-B-32", "hf-hub:org/none")
    with pytest.raises(FileNotFoundError, match=r"neither a file nor a pretrained tag of ViT-B-32"):
        resolve_pretrained("ViT-B-32", "no-such-tag")
    with pytest.raises(FileNotFoundError, match=r"\(its tags: none\)"):
        resolve_pretrained("ViT-Ti-8-64", str(tmp_path / "missing.pt"))
