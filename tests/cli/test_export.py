import open_clip
import pytest
import torch
from benchmark_data import TINY_MODEL, save_tiny_model, write_run_folder
from fork_utils import to_fork_layout

from open_clip_sparo import cli
from open_clip_sparo.cli.export import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt")


def encodings(model):
    torch.manual_seed(1)
    images = torch.randn(2, 3, 64, 64)
    tokens = open_clip.get_tokenizer(TINY_MODEL)(["a cat", "two red cars"])
    with torch.no_grad():
        return model.eval().encode_image(images), model.encode_text(tokens)


def test_checkpoint_to_local_dir(tiny, tmp_path):
    model, path = tiny
    out = tmp_path / "export"
    argv = ["export", "--model", TINY_MODEL, "--pretrained", str(path), "--out", str(out)]
    assert cli.main(argv) == 0
    assert {p.name for p in out.iterdir()} == {
        "open_clip_config.json",
        "open_clip_model.safetensors",
    }
    exported, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    for got, expected in zip(encodings(exported), encodings(model), strict=True):
        torch.testing.assert_close(got, expected)
    assert preprocess.transforms[1].size == (64, 64)


def test_run_folder_to_local_dir(tiny, tmp_path):
    model, _ = tiny
    run = write_run_folder(tmp_path / "run", model, epochs=[1, 3])
    assert main(["--model", str(run), "--out", str(tmp_path / "export")]) == 0
    exported = open_clip.create_model(f"local-dir:{tmp_path / 'export'}")
    newest = {k: v + 3 for k, v in model.state_dict().items()}
    for key, value in exported.state_dict().items():
        torch.testing.assert_close(value, newest[key], msg=key)


def test_never_overwrites_unless_asked(tiny, tmp_path):
    _, path = tiny
    argv = ["--model", TINY_MODEL, "--pretrained", str(path), "--out", str(tmp_path)]
    assert main(argv) == 0
    before = (tmp_path / "open_clip_model.safetensors").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="or pass --overwrite to replace them"):
        main(argv)
    assert (tmp_path / "open_clip_model.safetensors").stat().st_mtime_ns == before
    assert main([*argv, "--overwrite"]) == 0


def test_plain_clip_is_refused(tmp_path):
    torch.save(
        {"state_dict": open_clip.create_model("ViT-Ti-8-64").state_dict()}, tmp_path / "p.pt"
    )
    with pytest.raises(ValueError, match="not a SPARO model"):
        main(["--model", "ViT-Ti-8-64", "--pretrained", str(tmp_path / "p.pt"), "--out", "x"])


def test_a_fork_checkpoint_is_converted_and_says_so(tmp_path, capsys):
    model = open_clip.create_model(TINY_MODEL)
    torch.save({"state_dict": to_fork_layout(model)}, tmp_path / "fork.pt")
    argv = ["export", "--model", TINY_MODEL, "--pretrained", str(tmp_path / "fork.pt")]
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 0
    assert (
        "Converted a checkpoint of the authors' fork (ankitkv/sparo-clip)"
        in capsys.readouterr().err
    )
