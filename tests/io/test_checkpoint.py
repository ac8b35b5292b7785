import json

import open_clip
import pytest
import torch

from open_clip_sparo import save_pretrained

TINY = "sparo-ViT-Ti-8-64"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return open_clip.create_model(TINY)


def test_openclip_train_checkpoint_loads_through_pretrained(model, tmp_path):
    path = tmp_path / "epoch_1.pt"
    state = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save({"epoch": 1, "state_dict": state}, path)
    loaded = open_clip.create_model(TINY, pretrained=str(path))
    images = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(loaded.encode_image(images), model.encode_image(images))


def test_local_dir_round_trip(model, tmp_path):
    model.text_sparo.out.bias.data.fill_(0.25)  # a non-default value must survive the trip
    save_pretrained(model, tmp_path / "export")
    config = json.loads((tmp_path / "export" / "open_clip_config.json").read_text())
    assert config["model_cfg"]["sparo_cfg"]["num_slots"] == 16
    # model_cfg keeps the baseline's depths (what the factory rebuilds from); the built ones beside
    reduce_depth = config["model_cfg"]["sparo_cfg"]["reduce_depth"]
    assert config["built_depths"]["vision_layers"] == len(model.visual.transformer.resblocks)
    assert config["built_depths"]["vision_layers"] == (
        config["model_cfg"]["vision_cfg"]["layers"] - reduce_depth
    )
    assert config["built_depths"]["text_layers"] == (
        config["model_cfg"]["text_cfg"]["layers"] - reduce_depth
    )
    loaded = open_clip.create_model(f"local-dir:{tmp_path / 'export'}")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tmp_path / 'export'}")
    assert tokenizer(["hi"]).shape == (1, 32)


def test_shared_queries_save_with_safetensors(tmp_path):
    model = open_clip.create_model(
        TINY, sparo_cfg={"num_slots": 16, "slot_dim": 16, "share_queries": True}
    )
    save_pretrained(model, tmp_path)
    loaded = open_clip.create_model(f"local-dir:{tmp_path}")
    assert loaded.sparo_cfg.share_queries and loaded.text_sparo.queries is None
    torch.testing.assert_close(loaded.visual.sparo.queries, model.visual.sparo.queries)


def test_save_never_overwrites(model, tmp_path):
    save_pretrained(model, tmp_path)
    before = (tmp_path / "open_clip_model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_pretrained(model, tmp_path)
    assert (tmp_path / "open_clip_model.safetensors").read_bytes() == before
    save_pretrained(model, tmp_path, overwrite=True)
