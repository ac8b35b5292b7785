import hashlib
import json
import shutil

import huggingface_hub
import open_clip
import pytest
import safetensors.torch
import torch
from autoload_utils import python_json
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


def hub_export(tiny, tmp_path, *extra):
    """``sparo export --hub org/tiny-sparo --dry-run`` of a run folder with open_clip_train's
    ``params.txt`` and one result file; the folder written."""
    model, _ = tiny
    run = write_run_folder(tmp_path / "run", model, epochs=[1, 2])
    (run / "params.txt").write_text("batch_size: 8\nepochs: 2\ntrain_data: /data/{00..09}.tar\n")
    result = tmp_path / "result.json"
    metrics = {"image_retrieval_recall@1": 0.25, "text_retrieval_recall@1": 0.5}
    result.write_text(
        json.dumps({"dataset": "wds/r", "task": "zeroshot_retrieval", "metrics": metrics})
    )
    out = tmp_path / "hub"
    argv = ["--model", str(run), "--out", str(out), "--hub", "org/tiny-sparo"]
    assert main([*argv, "--metrics", str(result), *extra]) == 0
    return out


def test_hub_dry_run_writes_the_folder_and_its_card(tiny, tmp_path):
    out = hub_export(tiny, tmp_path, "--dry-run")
    assert {p.name for p in out.iterdir()} == {
        "open_clip_config.json",
        "open_clip_model.safetensors",
        "README.md",
    }
    card = (out / "README.md").read_text()
    checkpoint = tmp_path / "run" / "checkpoints" / "epoch_2.pt"  # the newest epoch
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
    for expected in (
        "library_name: open_clip",
        f"`{TINY_MODEL}`",
        "16 slots",
        f"`epoch_2.pt` ({checkpoint.stat().st_size} bytes, SHA-256 `{sha}...`)",
        "| train_data | /data/{00..09}.tar |",
        "| wds/r | zeroshot_retrieval | text_retrieval_recall@1 | 0.5000 |",
        'create_model_and_transforms("hf-hub:org/tiny-sparo")',
        "@inproceedings{vani2024sparo,",
    ):
        assert expected in card, expected


def test_hub_push_when_offline_keeps_the_folder_and_says_how(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match=r"not pushed.*hf upload org/tiny-sparo"):
        hub_export(tiny, tmp_path)
    assert (tmp_path / "hub" / "README.md").is_file()


def test_hub_options_need_hub(tiny, tmp_path):
    _, path = tiny
    argv = ["--model", TINY_MODEL, "--pretrained", str(path), "--out", str(tmp_path / "x")]
    with pytest.raises(SystemExit):
        main([*argv, "--dry-run"])


@pytest.mark.slow
def test_published_model_loads_from_the_hub_unnamed(tiny, tmp_path, hooked_python):
    """The dry-run folder as the Hub would serve it (a hub cache): ``hf-hub:`` loads it in a
    process that never imports open_clip_sparo by name, with the checkpoint's weights."""
    out = hub_export(tiny, tmp_path, "--dry-run")
    repo = tmp_path / "cache" / "models--org--tiny-sparo"
    commit = "0" * 40
    shutil.copytree(out, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    loaded = tmp_path / "loaded.safetensors"
    code = (
        "import open_clip, safetensors.torch; "
        "model, _, _ = open_clip.create_model_and_transforms('hf-hub:org/tiny-sparo'); "
        f"safetensors.torch.save_file(model.state_dict(), {str(loaded)!r}); "
        "print('\"' + type(model).__name__ + '\"')"
    )
    env = {"HF_HUB_CACHE": str(tmp_path / "cache")}
    assert python_json(hooked_python, code, env=env) == "SparoCLIP"
    newest = {k: v + 2 for k, v in tiny[0].state_dict().items()}  # epoch 2 of the run
    state = safetensors.torch.load_file(loaded)
    assert state.keys() == newest.keys()
    for key, value in state.items():
        torch.testing.assert_close(value, newest[key], msg=key)


def test_hub_push_failure_keeps_the_folder_and_says_how(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "create_repo", unreachable)
    with pytest.raises(ValueError, match=r"pushing it to org/tiny-sparo failed.*hf upload"):
        hub_export(tiny, tmp_path)
    assert (tmp_path / "hub" / "open_clip_model.safetensors").is_file()


def test_a_fork_checkpoint_is_converted_and_says_so(tmp_path, capsys):
    model = open_clip.create_model(TINY_MODEL)
    torch.save({"state_dict": to_fork_layout(model)}, tmp_path / "fork.pt")
    argv = ["export", "--model", TINY_MODEL, "--pretrained", str(tmp_path / "fork.pt")]
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 0
    assert (
        "Converted a checkpoint of the authors' fork (ankitkv/sparo-clip)"
        in capsys.readouterr().err
    )
