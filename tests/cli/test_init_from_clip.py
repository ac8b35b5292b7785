"""``sparo init-from-clip``: writes a checkpoint OpenCLIP loads, never overwrites, explains."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch
from checkpoint_utils import BAD_CHECKPOINTS, bad_checkpoint

from open_clip_sparo import cli
from open_clip_sparo.cli.init_from_clip import main, save_state_dict

MODEL, BASELINE = "sparo-ViT-Ti-8-64", "ViT-Ti-8-64"


@pytest.fixture(scope="module")
def clip_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return open_clip.create_model(BASELINE).state_dict()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_command_writes_a_checkpoint_open_clip_loads(
    clip_state: dict[str, torch.Tensor],
    tmp_path: Path,
    suffix: str,
    capsys: pytest.CaptureFixture,
) -> None:
    save_state_dict(clip_state, tmp_path / "clip.pt")
    out = tmp_path / f"merged{suffix}"
    argv = ["--model", MODEL, "--clip-checkpoint", str(tmp_path / "clip.pt"), "--out", str(out)]
    assert cli.main(["init-from-clip", *argv]) == 0
    printed = capsys.readouterr().out
    assert "tensors copied" in printed and f"--pretrained {out}" in printed

    model = open_clip.create_model(MODEL, pretrained=str(out))
    state = model.state_dict()
    for key in ("visual.transformer.resblocks.2.attn.in_proj_weight", "token_embedding.weight"):
        assert torch.equal(state[key], clip_state[key])
    torch.manual_seed(0)  # the command's default --seed: the same fresh read-outs
    fresh = open_clip.create_model(MODEL).state_dict()
    assert torch.equal(state["text_sparo.queries"], fresh["text_sparo.queries"])


def test_command_never_overwrites(
    clip_state: dict[str, torch.Tensor], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    save_state_dict(clip_state, tmp_path / "clip.pt")
    out = tmp_path / "merged.pt"
    out.write_bytes(b"keep me")
    argv = ["--model", MODEL, "--clip-checkpoint", str(tmp_path / "clip.pt"), "--out", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    with pytest.raises(FileExistsError):
        save_state_dict(clip_state, out)
    assert out.read_bytes() == b"keep me"


def test_command_explains_a_wrong_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sparo_checkpoint = tmp_path / "sparo.pt"
    save_state_dict(open_clip.create_model(MODEL).state_dict(), sparo_checkpoint)
    out = tmp_path / "merged.pt"
    argv = ["--model", MODEL, "--clip-checkpoint", str(sparo_checkpoint), "--out", str(out)]
    assert cli.main(["init-from-clip", *argv]) == 1
    assert "already has SPARO read-outs" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("kind", sorted(BAD_CHECKPOINTS))
def test_command_reads_the_checkpoint_through_the_one_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture, kind: str
) -> None:
    path = bad_checkpoint(tmp_path, kind)
    argv = ["--model", MODEL, "--clip-checkpoint", str(path), "--out", str(tmp_path / "out.pt")]
    assert cli.main(["init-from-clip", *argv]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"sparo init-from-clip: error: CLIP checkpoint {path} ")
    assert BAD_CHECKPOINTS[kind] in error and len(error.splitlines()) == 1
    assert "weights_only" not in error and not (tmp_path / "code-ran").exists()
