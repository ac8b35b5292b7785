"""``sparo init-from-clip``: writes a checkpoint OpenCLIP loads, never overwrites, explains."""

from __future__ import annotations

from functools import partial
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


@pytest.mark.slow
def test_a_pretrained_tag_of_the_baseline_is_found_in_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """sparo-ViT-B-32 from ViT-B-32's laion2b_s34b_b79k: random weights in the hub layout
    under the tag's hub id, resolved offline by OpenCLIP's own download code."""
    from hub_utils import use_hub_cache, write_hub_file

    torch.manual_seed(0)
    clip_state = open_clip.create_model("ViT-B-32").state_dict()
    hub_id = open_clip.get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")["hf_hub"].rstrip("/")
    use_hub_cache(monkeypatch, tmp_path / "hub")
    write_hub_file(
        tmp_path / "hub", hub_id, "open_clip_pytorch_model.bin", partial(torch.save, clip_state)
    )
    out = tmp_path / "s.pt"
    argv = ["--model", "sparo-ViT-B-32", "--clip-checkpoint", "laion2b_s34b_b79k"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "tensors copied" in capsys.readouterr().out
    state = torch.load(out)
    kept = [k for k in clip_state if k in state]
    assert len(kept) == len(clip_state) - 2 - 2 * 12  # projections, each tower's 12th block
    assert all(torch.equal(state[k], clip_state[k]) for k in kept)
    assert main([*argv, "--out", str(tmp_path / "other.pt")]) == 0  # a second run: same file
    not_cached = [*argv[:3], "openai", "--out", str(tmp_path / "x.pt")]
    assert cli.main(["init-from-clip", *not_cached]) == 1
    error = capsys.readouterr().err
    assert "the pretrained tag 'openai' of 'ViT-B-32'" in error and "HF_HUB_OFFLINE=1" in error


@pytest.mark.slow
def test_a_timm_tower_model_starts_from_its_pretrained_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """sparo-ViT-B-16-SigLIP from ViT-B-16-SigLIP's webli: a CustomTextCLIP checkpoint (text
    tower under ``text.``) of a timm trunk, every kept tensor copied bit-exactly."""
    from hub_utils import use_hub_cache, write_hub_file

    torch.manual_seed(0)
    clip_state = open_clip.create_model("ViT-B-16-SigLIP").state_dict()
    cfg = open_clip.get_pretrained_cfg("ViT-B-16-SigLIP", "webli")
    use_hub_cache(monkeypatch, tmp_path / "hub")
    write_hub_file(
        tmp_path / "hub",
        cfg["hf_hub"].rstrip("/"),
        "open_clip_pytorch_model.bin",
        partial(torch.save, clip_state),
    )
    out = tmp_path / "s.pt"
    argv = ["--model", "sparo-ViT-B-16-SigLIP", "--clip-checkpoint", "webli", "--out", str(out)]
    assert main(argv) == 0
    assert "tensors copied" in capsys.readouterr().out
    state = torch.load(out)
    as_clip = {key.removeprefix("text."): tensor for key, tensor in clip_state.items()}
    kept = [key for key in as_clip if key in state]
    dropped = {key for key in as_clip if key not in state}
    assert all(torch.equal(state[key], as_clip[key]) for key in kept)
    # the 12th block of each tower, the trunk's attention pool and OpenCLIP's projections
    assert {key.split(".")[0] for key in dropped} == {"visual", "text_projection", "transformer"}
    assert all(".11." in key or "attn_pool" in key or "proj" in key for key in dropped)
    assert not any(key.startswith("visual.trunk.blocks.") and ".11." not in key for key in dropped)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("sparo-RN50", "SPARO cannot read RN50 because its vision tower is a ResNet"),
        ("sparo-nonsense", "OpenCLIP has no model config 'nonsense' to derive it from"),
    ],
)
def test_a_model_without_a_config_is_refused_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture, model: str, message: str
) -> None:
    argv = ["--model", model, "--clip-checkpoint", "openai", "--out", str(tmp_path / "s.pt")]
    with pytest.raises(SystemExit):
        main(argv)
    error = capsys.readouterr().err.splitlines()[-1]
    assert message in error and len(error) < 300
    assert not (tmp_path / "s.pt").exists()


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
