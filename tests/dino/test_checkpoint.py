import pytest
import torch
from dino_utils import untrained_checkpoint

from open_clip_sparo.dino.checkpoint import find_checkpoint, load_backbone
from open_clip_sparo.util.files import PARTIAL_SUFFIX, atomic_save


def test_run_folder_resolves_to_its_latest_checkpoint(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for epoch in (2, 10):  # as the training writes them
        atomic_save({"epoch": epoch}, folder / f"epoch_{epoch}.pt")
    assert find_checkpoint(tmp_path / "run") == folder / "epoch_10.pt"
    atomic_save({"epoch": 11}, folder / "epoch_latest.pt")
    assert find_checkpoint(tmp_path / "run") == folder / "epoch_latest.pt"
    assert find_checkpoint(folder / "epoch_2.pt") == folder / "epoch_2.pt"
    assert not list(folder.glob(f"*{PARTIAL_SUFFIX}"))  # no temporary files left behind
    with pytest.raises(FileNotFoundError, match="neither a DINO checkpoint"):
        find_checkpoint(tmp_path)


def test_load_backbone_takes_the_chosen_network(tmp_path):
    path = untrained_checkpoint(tmp_path / "c.pt", "sparo-ViT-Ti-8-64")
    state = torch.load(path, weights_only=False)
    state["teacher"] = {k: v + 1 for k, v in state["teacher"].items()}
    torch.save(state, path)
    teacher, config = load_backbone(path)
    student, _ = load_backbone(path, "student")
    assert config["backbone"] == "sparo-ViT-Ti-8-64"
    torch.testing.assert_close(teacher.sparo.queries, student.sparo.queries + 1)
    with pytest.raises(ValueError, match="network="):
        load_backbone(path, "ema")


def test_foreign_checkpoints_are_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "clip.pt")
    with pytest.raises(ValueError, match="not a checkpoint of"):
        load_backbone(tmp_path / "clip.pt")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"\x80\x02random bytes" * 50, "is not a checkpoint of tensors"),
        (b"PK\x03\x04 cut short", "cannot be read, it is cut short or corrupt"),
    ],
    ids=["empty", "random", "truncated"],
)
def test_unreadable_checkpoints_are_named(tmp_path, content, message):
    path = tmp_path / "c.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        load_backbone(path)
    assert str(path) in str(error.value) and "weights_only" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_backbone(tmp_path / "missing.pt")
