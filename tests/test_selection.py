import json

import open_clip
import pytest
import torch

from open_clip_sparo import select_slots
from open_clip_sparo.selection import read_slots


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return open_clip.create_model("sparo-ViT-Ti-8-64")


@pytest.fixture(scope="module")
def inputs():
    text = open_clip.get_tokenizer("sparo-ViT-Ti-8-64")(["a red square", "a blue circle"])
    return torch.randn(2, 3, 64, 64), text


def test_selection_zeroes_other_slots_and_keeps_unit_norm(model, inputs):
    images, text = inputs
    chosen = [3, 7, 11]
    with select_slots(model, chosen):
        image_slots = model.encode_image_slots(images).slots
        text_features = model.encode_text(text)
        features = model(images, text)[0]
    others = [i for i in range(16) if i not in chosen]
    assert (image_slots[:, others] == 0).all()
    torch.testing.assert_close(text_features.norm(dim=-1), torch.ones(2))
    assert features.shape == (2, 256)


def test_similarity_is_mean_of_selected_cosines(model, inputs):
    images, text = inputs
    image_slots = model.encode_image_slots(images).slots
    text_slots = model.encode_text_slots(text).slots
    cosines = torch.nn.functional.cosine_similarity(image_slots, text_slots, dim=-1)
    with select_slots(model, [5, 0]):
        similarity = (model.encode_image(images) * model.encode_text(text)).sum(-1)
    torch.testing.assert_close(similarity, cosines[:, [0, 5]].mean(-1))


def test_all_slots_equal_no_selection_and_state_is_restored(model, inputs):
    images, _ = inputs
    plain = model.encode_image(images)
    with select_slots(model, range(16)):
        torch.testing.assert_close(model.encode_image(images), plain)
    with select_slots(model, [1]), select_slots(model, [2]):
        pass
    torch.testing.assert_close(model.encode_image(images), plain)
    with pytest.raises(RuntimeError), select_slots(model, [1]):
        raise RuntimeError
    torch.testing.assert_close(model.encode_image(images), plain)


def test_bad_selections_are_rejected(model):
    with pytest.raises(ValueError, match="out of range"), select_slots(model, [16]):
        pass
    with (
        pytest.raises(ValueError, match="no SPARO slots"),
        select_slots(torch.nn.Linear(2, 2), [0]),
    ):
        pass


def test_read_slots(tmp_path):
    (tmp_path / "list.json").write_text("[4, 1]")
    (tmp_path / "select.json").write_text(json.dumps({"slots": [2], "steps": []}))
    (tmp_path / "bad.json").write_text(json.dumps({"slot": [2]}))
    assert read_slots(tmp_path / "list.json") == [4, 1]
    assert read_slots(tmp_path / "select.json") == [2]
    with pytest.raises(ValueError, match="list of slot indices"):
        read_slots(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_slots(tmp_path / "none.json")


def test_slots_file_errors_name_the_file_and_what_it_is(tmp_path):
    (tmp_path / "bad.json").write_text('{"slots": [1, 2')
    with pytest.raises(ValueError, match=r"the slots file .*bad\.json is not valid JSON"):
        read_slots(tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(ValueError, match=r"empty\.json is empty"):
        read_slots(tmp_path / "empty.json")
    with pytest.raises(IsADirectoryError, match=f"slots file {tmp_path} is a folder, not a"):
        read_slots(tmp_path)
