"""open_clip_sparo.state_dict: a checkpoint that does not fit fails saying what to do."""

import json

import open_clip
import pytest
import torch
from fork_utils import fork_config

from open_clip_sparo import cli
from open_clip_sparo.io.loading import load_model

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


# sparo-ViT-Ti-8-64 at half the width: a model of other sizes that no config names
NARROW = {
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 4},
}


def save_checkpoint(path, **overrides):
    torch.save({"state_dict": open_clip.create_model(TINY, **overrides).state_dict()}, path)
    return path


def test_a_checkpoint_of_another_size_names_the_sizes_first_and_its_model(tmp_path):
    path = save_checkpoint(tmp_path / "tiny.pt")
    # before: OpenCLIP's bare `AssertionError: text pos_embed width changed!`
    with pytest.raises(ValueError) as error:
        open_clip.create_model_and_transforms(TINY, pretrained=str(path), **NARROW)
    assert str(error.value).startswith(
        "the checkpoint was trained with other sizes than this model (checkpoint vs model): "
        "visual.conv1.weight (128,3,8,8) vs (64,3,8,8); visual.positional_embedding (65,128) vs "
        "(65,64)"
    )
    assert str(error.value).endswith(
        "Its tensors are those of sparo-ViT-Ti-8-64: load it with --model sparo-ViT-Ti-8-64."
    )


def test_a_checkpoint_of_unregistered_sizes_names_the_sizes_first(tmp_path):
    path = save_checkpoint(tmp_path / "narrow.pt", **NARROW)
    with pytest.raises(ValueError) as error:  # sparo eval, select, export: load_model
        load_model(TINY, str(path))
    message = str(error.value)
    assert message.startswith(
        "the checkpoint was trained with other sizes than this model (checkpoint vs model): "
        "visual.conv1.weight (64,3,8,8) vs (128,3,8,8)"
    )
    assert "Build the model it was trained with (its run's model config; read-outs:" in message


def test_a_non_fork_checkpoint_given_to_convert_fork_names_its_model(tmp_path, capsys):
    config = tmp_path / "fork.json"
    config.write_text(json.dumps(fork_config()))
    path = save_checkpoint(tmp_path / "tiny.pt")
    argv = ["--config", str(config), "--checkpoint", str(path), "--out", str(tmp_path / "out")]
    assert cli.main(["convert-fork", *argv]) == 1
    error = capsys.readouterr().err
    assert error.startswith(
        "sparo convert-fork: error: the checkpoint was trained with other sizes than this model "
        "(checkpoint vs model): visual.conv1.weight (128,3,8,8) vs (64,3,8,8)"
    )
    assert error.endswith("load it with --model sparo-ViT-Ti-8-64.\n")
