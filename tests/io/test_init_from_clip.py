"""init-from-clip: a plain OpenCLIP CLIP checkpoint of the baseline -> a SPARO starting point."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch

from open_clip_sparo.io.init_from_clip import init_from_clip, load_clip_state_dict

MODEL, BASELINE = "sparo-ViT-Ti-8-64", "ViT-Ti-8-64"
READOUTS = ("visual.sparo.", "text_sparo.")


@pytest.fixture(scope="module")
def clip_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return open_clip.create_model(BASELINE).state_dict()


@pytest.fixture
def sparo() -> open_clip.CLIP:
    torch.manual_seed(1)
    return open_clip.create_model(MODEL)


def test_backbone_copied_exactly_removed_block_and_projections_dropped(
    sparo: open_clip.CLIP, clip_state: dict[str, torch.Tensor]
) -> None:
    readouts_before = {
        k: v.clone() for k, v in sparo.state_dict().items() if k.startswith(READOUTS)
    }
    report = init_from_clip(sparo, clip_state)
    state = sparo.state_dict()

    assert set(report.copied) | set(report.new) == set(state)
    assert all(torch.equal(state[k], clip_state[k]) for k in report.copied)
    assert {"logit_scale", "token_embedding.weight", "visual.ln_post.weight"} <= set(report.copied)
    assert "transformer.resblocks.2.mlp.c_fc.weight" in report.copied  # last kept block (of 3)
    # the baseline's 4th block of each tower and the two projections
    assert set(report.dropped) == {
        k
        for k in clip_state
        if k.startswith(("visual.transformer.resblocks.3.", "transformer.resblocks.3."))
    } | {"visual.proj", "text_projection"}
    assert set(report.new) == set(readouts_before)
    assert all(torch.equal(state[k], v) for k, v in readouts_before.items())  # left fresh
    assert report.copied["visual.conv1.weight"] == (128, 3, 8, 8)

    table = report.table().splitlines()
    assert table[0].startswith(f"{len(report.copied)} tensors copied")
    assert len(table) == 2 + len(state) + len(report.dropped)
    assert any(line.split()[:3] == ["dropped", "text_projection", "128x128"] for line in table)
    assert any(line.split()[:2] == ["new", "visual.sparo.queries"] for line in table)


def _with_5_text_blocks(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    extra = {
        k.replace("resblocks.3.", "resblocks.4."): v
        for k, v in state.items()
        if k.startswith("transformer.resblocks.3.")
    }
    return {**state, **extra}


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda s: {**s, "visual.conv1.weight": torch.zeros(128, 3, 16, 16)}, "other shapes"),
        (lambda s: {k: v for k, v in s.items() if k != "ln_final.weight"}, "missing tensors"),
        (lambda s: {**s, "logit_bias": torch.zeros([])}, "does not have: logit_bias"),
        (_with_5_text_blocks, "text tower has 5 blocks"),
        (lambda s: {**s, "text_sparo.queries": torch.zeros(16, 32)}, "already has SPARO"),
    ],
    ids=["shape", "missing", "unexpected", "blocks", "sparo"],
)
def test_checkpoint_of_another_model_is_rejected(
    sparo: open_clip.CLIP, clip_state: dict[str, torch.Tensor], corrupt, message: str
) -> None:
    before = {k: v.clone() for k, v in sparo.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        init_from_clip(sparo, corrupt(clip_state))
    assert all(torch.equal(v, before[k]) for k, v in sparo.state_dict().items())  # untouched


def test_plain_model_is_rejected(clip_state: dict[str, torch.Tensor]) -> None:
    with pytest.raises(ValueError, match="use a sparo-\\* model"):
        init_from_clip(open_clip.create_model(BASELINE), clip_state)


def test_reads_open_clip_train_checkpoints(
    clip_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    ddp_keys = {f"module.{k}": v for k, v in clip_state.items()}
    torch.save({"epoch": 3, "state_dict": ddp_keys}, tmp_path / "epoch_3.pt")
    loaded = load_clip_state_dict(tmp_path / "epoch_3.pt")
    assert loaded.keys() == clip_state.keys()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_clip_state_dict(tmp_path / "nope.pt")


def test_reduce_depth_0_keeps_every_block(clip_state: dict[str, torch.Tensor]) -> None:
    cfg = open_clip.get_model_config(MODEL)
    sparo = open_clip.create_model(MODEL, sparo_cfg={**cfg["sparo_cfg"], "reduce_depth": 0})
    report = init_from_clip(sparo, clip_state)
    assert set(report.dropped) == {"visual.proj", "text_projection"}
    assert "transformer.resblocks.3.mlp.c_fc.weight" in report.copied  # the baseline's last
    state = sparo.state_dict()
    assert all(torch.equal(state[k], clip_state[k]) for k in report.copied)
