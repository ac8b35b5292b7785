import numpy as np
import open_clip
import pytest
import torch
from benchmark_data import (
    save_nan_model,
    save_tiny_model,
    synthetic_image,
    write_sugar_crepe,
    write_wds_classification,
)
from PIL import Image

from open_clip_sparo import cli
from open_clip_sparo.evaluation.slot_pictures import SlotView, overlay, slot_view
from open_clip_sparo.evaluation.slot_pictures import visualize as main
from open_clip_sparo.io.loading import LoadedModel, load_model

MODEL = "sparo-ViT-Ti-8-64"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    _, path = save_tiny_model(root / "tiny.pt")
    synthetic_image(1, size=100).save(root / "a.png")
    synthetic_image(2, size=64).save(root / "b.jpg")
    return path, load_model(MODEL, str(path)), [root / "a.png", root / "b.jpg"]


def test_slot_view(tiny):
    _, loaded, images = tiny
    image = loaded.preprocess(Image.open(images[0]))
    view = slot_view(loaded, image, "a red square")
    assert view.tokens == ["<start_of_text>", "a", "red", "square", "<end_of_text>"]
    assert view.image.shape == (64, 64, 3)
    assert view.grid == (8, 8)
    assert view.image_attn.shape == (16, 65)
    torch.testing.assert_close(view.image_attn.sum(-1), torch.ones(16))
    assert view.text_attn.shape == (16, 5)  # the read-out attends up to the end of text
    torch.testing.assert_close(view.text_attn.sum(-1), torch.ones(16))
    ranked = view.ranked_slots()
    assert sorted(ranked) == list(range(16))
    assert (view.agreement[ranked].diff() <= 0).all()
    assert (view.agreement.abs() <= 1 + 1e-6).all()


def test_overlay_is_red_on_the_attended_patch_and_grey_elsewhere():
    attn = torch.zeros(1, 1 + 16)
    attn[0, 1 + 6] = 1.0  # patch row 1, column 2 of a 4 x 4 grid
    image = np.random.default_rng(0).uniform(size=(32, 32, 3))
    view = SlotView(image, "", [], torch.zeros(1), attn, torch.zeros(1, 0), (4, 4))
    picture = overlay(view, 0)
    attended = picture[8:16, 16:24]
    assert (attended[..., 0] > 0.7).all() and (attended[..., 1:] < 0.3).all()
    rest = picture.copy()
    rest[8:16, 16:24] = 0
    np.testing.assert_allclose(rest[..., 0], rest[..., 1])
    np.testing.assert_allclose(rest[..., 1], rest[..., 2])


def test_images_and_captions(tiny, tmp_path):
    path, _, images = tiny
    captions = ["a red square on a field", "a white box in the middle of a blurry background"]
    argv = ["visualize", "--model", MODEL, "--pretrained", str(path), "--top_slots", "3"]
    argv += ["--images", *map(str, images), "--captions", *captions]
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["pair_000.png", "pair_001.png", "summary.png"]
    with Image.open(tmp_path / "out" / "pair_000.png") as picture:
        width, height = picture.size
    assert width > 800 and height > 500  # header and three slot rows
    with pytest.raises(FileExistsError, match="already exist"):
        main([*argv[1:], "--out", str(tmp_path / "out")])


@pytest.mark.slow  # the visualize command on whole data sets
@pytest.mark.parametrize("kind", ["sugar_crepe", "classification"])
def test_dataset_samples(tiny, tmp_path, kind):
    path, _, _ = tiny
    if kind == "sugar_crepe":
        root = write_sugar_crepe(tmp_path / "d", "swap_att", [("a red cat", "a cat red")] * 3)
        dataset = ["--dataset", "sugar_crepe/swap_att"]
    else:
        root = write_wds_classification(tmp_path / "d", ["cat", "dog"], per_class=2)
        dataset = ["--dataset", "wds/tiny"]
    argv = ["--model", MODEL, "--pretrained", str(path), *dataset, "--dataset_root", str(root)]
    assert main([*argv, "--num_samples", "2", "--out", str(tmp_path / "out")]) == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "pair_000.png",
        "pair_001.png",
        "summary.png",
    }


def test_bad_arguments(tiny, tmp_path):
    path, _, images = tiny
    argv = ["--model", MODEL, "--pretrained", str(path), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit):  # one caption for two images
        main([*argv, "--images", *map(str, images), "--captions", "a cat"])
    with pytest.raises(SystemExit):  # neither images nor a dataset
        main(argv)
    with pytest.raises(FileNotFoundError, match=r"the image .*none\.png does not exist"):
        main([*argv, "--images", str(tmp_path / "none.png"), "--captions", "a cat"])
    with pytest.raises(IsADirectoryError, match="is a folder, not a file"):
        main([*argv, "--images", str(tmp_path), "--captions", "a cat"])


def test_plain_clip_has_no_slots_to_show(tiny):
    _, loaded, images = tiny
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-Ti-8-64")
    plain = LoadedModel(model, preprocess, loaded.tokenizer, "ViT-Ti-8-64", [])
    with pytest.raises(ValueError, match="not a SPARO model"):
        slot_view(plain, preprocess(Image.open(images[0])), "a cat")


def test_visualize_refuses_a_nan_model_and_empty_counts(tiny, tmp_path, capsys):
    _, _, images = tiny
    nan = save_nan_model(tmp_path / "nan.pt")
    argv = ["visualize", "--model", MODEL, "--images", str(images[0]), "--captions", "a cat"]
    assert cli.main([*argv, "--pretrained", str(nan), "--out", str(tmp_path / "p")]) == 1
    assert "computes non-finite image embeddings" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    for flag in ("--num_samples", "--top_slots"):
        with pytest.raises(SystemExit) as exit_:
            cli.main([*argv, "--pretrained", str(nan), flag, "0", "--out", str(tmp_path / "q")])
        assert exit_.value.code == 2
        assert f"argument {flag}: must be at least 1, got 0" in capsys.readouterr().err


def test_visualize_checks_its_outputs_before_loading(tiny, tmp_path, capsys):
    path, _, images = tiny
    (tmp_path / "file").write_text("mine")
    argv = ["visualize", "--model", MODEL, "--pretrained", str(path), "--images", str(images[0])]
    assert cli.main([*argv, "--captions", "a", "--out", str(tmp_path / "file" / "p")]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
