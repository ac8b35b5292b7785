import json

import pytest
import torch
from benchmark_data import TINY_MODEL, save_tiny_model, write_run_folder

from open_clip_sparo import save_pretrained
from open_clip_sparo.io.loading import load_model, newest_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt")


def assert_same_weights(model, reference, offset=0.0):
    own = model.state_dict()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(own[key], value + offset, msg=key)


def test_name_with_checkpoint_file(tiny):
    model, path = tiny
    loaded = load_model(TINY_MODEL, str(path))
    assert_same_weights(loaded.model, model)
    assert not loaded.model.training
    assert loaded.weights == [path]
    assert loaded.tokenizer(["a cat"]).shape == (1, 32)
    assert loaded.preprocess.transforms[1].size == (64, 64)


@pytest.mark.parametrize("prefix", ["local-dir:", ""])
def test_local_dir(tiny, tmp_path, prefix):
    model, _ = tiny
    save_pretrained(model, tmp_path / "export")
    loaded = load_model(prefix + str(tmp_path / "export"))
    assert_same_weights(loaded.model, model)
    assert {p.name for p in loaded.weights} == {
        "open_clip_config.json",
        "open_clip_model.safetensors",
    }


def test_run_folder_uses_the_newest_epoch(tiny, tmp_path):
    model, _ = tiny
    run = write_run_folder(tmp_path / "run", model, epochs=[1, 2, 10])
    assert newest_checkpoint(run).name == "epoch_10.pt"  # by number, not by name
    loaded = load_model(str(run))
    assert_same_weights(loaded.model, model, offset=10.0)
    assert loaded.weights[-1] == run / "checkpoints" / "epoch_10.pt"


@pytest.mark.parametrize("given", ["epoch_2.pt", "path"])
def test_run_folder_with_a_given_checkpoint(tiny, tmp_path, given):
    model, _ = tiny
    run = write_run_folder(tmp_path / "run", model, epochs=[1, 2, 3])
    checkpoint = str(run / "checkpoints" / "epoch_2.pt") if given == "path" else given
    assert_same_weights(load_model(str(run), checkpoint).model, model, offset=2.0)


def test_run_folder_config_wins_over_the_registered_one(tmp_path):
    """A run trained with --model-kwargs is rebuilt as it was trained, not as registered."""
    import open_clip

    sparo_cfg = {"num_slots": 8, "slot_dim": 32}
    model = open_clip.create_model(TINY_MODEL, sparo_cfg=sparo_cfg)
    run = write_run_folder(tmp_path / "run", model, epochs=[1])
    loaded = load_model(str(run))
    assert (loaded.model.num_slots, loaded.model.slot_dim) == (8, 32)
    assert_same_weights(loaded.model, model, offset=1.0)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no weights given"):
        load_model(TINY_MODEL)
    with pytest.raises(FileNotFoundError, match="neither a file nor a pretrained tag"):
        load_model(TINY_MODEL, str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="not a registered model name"):
        load_model("ViT-Nope")
    with pytest.raises(ValueError, match="unknown model 'sparo-ViT-Nope': OpenCLIP has no model"):
        load_model("sparo-ViT-Nope")
    with pytest.raises(ValueError, match="cannot read RN50 because its vision tower is a ResNet"):
        load_model("sparo-RN50")
    empty_run = tmp_path / "run"
    (empty_run / "checkpoints").mkdir(parents=True)
    (empty_run / "open_clip_config.json").write_text(
        json.dumps({"model_name": TINY_MODEL, "model_cfg": {}, "preprocess_cfg": {}})
    )
    with pytest.raises(FileNotFoundError, match=r"checkpoints/epoch_N\.pt"):
        load_model(str(empty_run))
    with pytest.raises(FileNotFoundError, match=r"epoch_7\.pt"):
        load_model(str(empty_run), "epoch_7.pt")
    (tmp_path / "plain").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a training run folder"):
        load_model(str(tmp_path / "plain"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(f"local-dir:{tmp_path / 'nowhere'}")


def test_local_dir_rejects_pretrained_and_missing_weights(tiny, tmp_path):
    model, path = tiny
    save_pretrained(model, tmp_path / "export")
    with pytest.raises(ValueError, match="carries its own weights"):
        load_model(f"local-dir:{tmp_path / 'export'}", str(path))
    (tmp_path / "export" / "open_clip_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="not a complete OpenCLIP local-dir"):
        load_model(f"local-dir:{tmp_path / 'export'}")


def broken_checkpoints(folder, good):
    """Files given as checkpoints that are not readable ones: name -> path."""
    folder.mkdir(exist_ok=True)
    (folder / "empty.pt").write_bytes(b"")
    (folder / "random.pt").write_bytes(bytes(range(256)) * 8)
    (folder / "truncated.pt").write_bytes(good.read_bytes()[:5000])
    torch.save([1, 2, 3], folder / "list.pt")
    (folder / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    return {p.stem: p for p in folder.iterdir()}


def test_unreadable_checkpoints_are_named_and_never_run(tiny, tmp_path):
    _, good = tiny
    for name, path in broken_checkpoints(tmp_path / "bad", good).items():
        with pytest.raises(ValueError, match=f"the checkpoint {path}") as error:
            load_model(TINY_MODEL, str(path))
        assert "weights_only=False" not in str(error.value), name
    with pytest.raises(IsADirectoryError, match="is a folder, not a file"):
        load_model(TINY_MODEL, str(tmp_path / "bad"))


def test_run_folder_with_a_truncated_newest_checkpoint_names_the_others(tiny, tmp_path):
    model, _ = tiny
    run = write_run_folder(tmp_path / "run", model, epochs=[1, 2])
    newest = run / "checkpoints" / "epoch_2.pt"
    newest.write_bytes(newest.read_bytes()[:4000])
    with pytest.raises(ValueError, match=r"epoch_2\.pt cannot be read.*\['epoch_1.pt'\]"):
        load_model(str(run))
    assert_same_weights(load_model(str(run), "epoch_1.pt").model, model, offset=1.0)


def test_bad_run_config_names_the_file(tiny, tmp_path):
    model, _ = tiny
    run = write_run_folder(tmp_path / "run", model, epochs=[1])
    (run / "open_clip_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"open_clip_config\.json is not valid JSON"):
        load_model(str(run))


def test_a_registered_name_is_never_a_folder_of_that_name(tiny, tmp_path, monkeypatch):
    model, path = tiny
    monkeypatch.chdir(tmp_path)
    save_pretrained(model, tmp_path / TINY_MODEL)
    loaded = load_model(TINY_MODEL, str(path))  # the registered model with those weights
    assert loaded.reference == TINY_MODEL and loaded.weights == [path]
    with pytest.raises(ValueError, match=f"ambiguous.*--model ./{TINY_MODEL}"):
        load_model(TINY_MODEL)
    assert load_model(f"./{TINY_MODEL}").weights[0].parent.resolve() == tmp_path / TINY_MODEL


def test_a_checkpoint_of_another_model_or_given_as_model_is_explained(tiny):
    _, path = tiny
    names = r"visual blocks 3 vs 4; text blocks 3 vs 4\. Its tensors are those of sparo-ViT-Ti-8-64"
    with pytest.raises(ValueError, match=names):
        load_model("ViT-Ti-8-64", str(path))
    with pytest.raises(ValueError, match=f"--model {path} is a file: give a checkpoint as"):
        load_model(str(path))
