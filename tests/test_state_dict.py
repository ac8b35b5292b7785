"""open_clip_sparo.state_dict: a checkpoint that does not fit fails saying what to do."""

import open_clip
import pytest
import torch

TINY = "sparo-ViT-Ti-8-64"


def test_plain_clip_checkpoint_points_to_init_from_clip(tmp_path):
    path = tmp_path / "clip.pt"
    torch.save({"state_dict": open_clip.create_model("ViT-Ti-8-64").state_dict()}, path)
    with pytest.raises(ValueError, match="init-from-clip"):
        open_clip.create_model(TINY, pretrained=str(path))


def test_other_sizes_are_named(tmp_path):
    path = tmp_path / "small.pt"
    other = open_clip.create_model(TINY, embed_dim=128, sparo_cfg={"num_slots": 8, "slot_dim": 16})
    torch.save({"state_dict": other.state_dict()}, path)
    with pytest.raises(ValueError, match="num_slots=8") as err:
        open_clip.create_model(TINY, pretrained=str(path))
    assert err.match("num_slots=16") and err.match("visual.sparo.queries")
