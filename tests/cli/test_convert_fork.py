import json

import open_clip
import pytest
import torch
from checkpoint_utils import BAD_CHECKPOINTS, bad_checkpoint
from fork_utils import (
    VARIANTS,
    build,
    embeddings,
    fork_config,
    fork_embeddings,
    save_fork_training_checkpoint,
    to_fork_layout,
)

from open_clip_sparo import cli


def write_fork_run(tmp_path, fork_cfg):
    """The fork's model config and a training checkpoint of a random model of it; returns the
    model (this project's), the fork's tensors, the config file and the checkpoint."""
    model = build(fork_cfg)
    fork = to_fork_layout(model)
    config = tmp_path / "fork.json"
    config.write_text(json.dumps(fork_cfg))
    checkpoint = save_fork_training_checkpoint(fork, tmp_path / "epoch_1.pt")
    return model, fork, config, checkpoint


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_converts_and_reproduces_the_forks_embeddings(variant, tmp_path, capsys):
    fork_cfg = fork_config(**VARIANTS[variant])
    model, fork, config, checkpoint = write_fork_run(tmp_path, fork_cfg)
    out = tmp_path / "converted"
    argv = ["convert-fork", "--config", str(config), "--checkpoint", str(checkpoint)]
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert f"load it with --model local-dir:{out}" in capsys.readouterr().out
    converted, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    expected = fork_embeddings(model, fork, fork_cfg)
    torch.testing.assert_close(embeddings(converted.eval(), fork_cfg), expected, rtol=0, atol=1e-5)
    size = fork_cfg["vision_cfg"]["image_size"]
    assert preprocess.transforms[1].size == (size, size)
    assert open_clip.get_tokenizer(f"local-dir:{out}").context_length == 16


def test_converted_folder_is_read_by_sparo_commands(tmp_path, capsys):
    _, _, config, checkpoint = write_fork_run(tmp_path, fork_config())
    argv = ["--config", str(config), "--checkpoint", str(checkpoint)]
    assert cli.main(["convert-fork", *argv, "--out", str(tmp_path / "a")]) == 0
    export = ["export", "--model", f"local-dir:{tmp_path / 'a'}", "--out", str(tmp_path / "b")]
    assert cli.main(export) == 0


def test_existing_output_is_refused(tmp_path, capsys):
    _, _, config, checkpoint = write_fork_run(tmp_path, fork_config())
    out = tmp_path / "out"
    out.mkdir()
    argv = ["convert-fork", "--config", str(config), "--checkpoint", str(checkpoint)]
    assert cli.main([*argv, "--out", str(out)]) == 1
    assert "already exist; choose a new --out folder" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_option_without_equivalent_is_refused_by_name(tmp_path, capsys):
    _, _, config, checkpoint = write_fork_run(tmp_path, fork_config())
    config.write_text(json.dumps(fork_config(sparo_type="sem:norm")))
    out = tmp_path / "out"
    argv = ["convert-fork", "--config", str(config), "--checkpoint", str(checkpoint)]
    assert cli.main([*argv, "--out", str(out)]) == 1
    assert "sparo_type='sem:norm' is refused by the fork itself" in capsys.readouterr().err
    assert not out.exists()


def test_checkpoint_of_another_config_names_the_keys(tmp_path, capsys):
    _, _, config, checkpoint = write_fork_run(tmp_path, fork_config(L=16, V=4))
    config.write_text(json.dumps(fork_config()))
    argv = ["convert-fork", "--config", str(config), "--checkpoint", str(checkpoint)]
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "visual.sparo.queries: checkpoint (16, 16) vs model (8, 16)" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", sorted(BAD_CHECKPOINTS))
def test_checkpoint_is_read_through_the_one_reader(tmp_path, capsys, kind):
    config = tmp_path / "fork.json"
    config.write_text(json.dumps(fork_config()))
    path = bad_checkpoint(tmp_path, kind)
    argv = ["--config", str(config), "--checkpoint", str(path), "--out", str(tmp_path / "out")]
    assert cli.main(["convert-fork", *argv]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"sparo convert-fork: error: --checkpoint {path} ")
    assert BAD_CHECKPOINTS[kind] in error and len(error.splitlines()) == 1
    assert "weights_only" not in error and not (tmp_path / "code-ran").exists()
    assert not (tmp_path / "out").exists()
