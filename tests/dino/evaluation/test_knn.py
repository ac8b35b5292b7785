import json

import pytest
import torch
import torch.nn.functional as F
from dino_utils import fails_with, labelled_folders, one_thread, untrained_checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st

from open_clip_sparo.dino.evaluation.knn import knn_scores, main


def test_knn_scores_are_dinos_weighted_vote():
    torch.manual_seed(0)
    train, labels, queries = torch.randn(30, 8), torch.randint(0, 3, (30,)), torch.randn(4, 8)
    scores = knn_scores(train, labels, queries, num_classes=3, k=5, temperature=0.07, chunk_size=3)
    similarity = F.normalize(queries, dim=-1) @ F.normalize(train, dim=-1).T
    for q in range(4):
        nearest = similarity[q].argsort(descending=True)[:5]
        expected = torch.zeros(3)
        for n in nearest:
            expected[labels[n]] += torch.exp(similarity[q, n] / 0.07)
        torch.testing.assert_close(scores[q], expected)


@settings(max_examples=40, deadline=None)
@given(
    num_train=st.integers(1, 40),
    k=st.integers(1, 12),
    bank_chunk_size=st.integers(1, 17),
    seed=st.integers(0, 2**16),
)
def test_a_memory_bank_read_in_chunks_votes_as_read_whole(num_train, k, bank_chunk_size, seed):
    generator = torch.Generator().manual_seed(seed)
    train, queries = torch.randn(num_train, 6, generator=generator), torch.randn(5, 6)
    labels = torch.randint(0, 4, (num_train,), generator=generator)
    whole = knn_scores(train, labels, queries, 4, k, bank_chunk_size=num_train)
    chunked = knn_scores(
        train, labels, queries, 4, k, chunk_size=2, bank_chunk_size=bank_chunk_size
    )
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)  # sums in another order


def test_knn_classifies_clusters_and_caps_k():
    centres = torch.eye(4) * 10
    train = centres.repeat_interleave(5, 0) + torch.randn(20, 4) * 0.1
    labels = torch.arange(4).repeat_interleave(5)
    scores = knn_scores(train, labels, centres, num_classes=4, k=100)
    assert torch.equal(scores.argmax(1), torch.arange(4))


def test_knn_rejects_k_below_one():
    with pytest.raises(ValueError, match="k must be at least 1"):
        knn_scores(torch.randn(3, 2), torch.zeros(3, dtype=torch.long), torch.randn(1, 2), 1, 0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("knn")
    train, val = labelled_folders(root)
    sparo = untrained_checkpoint(root / "sparo.pt", "sparo-ViT-Ti-8-64")
    class_token = untrained_checkpoint(root / "cls.pt", "ViT-Ti-8-64")
    return root, train, val, sparo, class_token


def _argv(setup, checkpoint, out, *extra):
    _, train, val, _, _ = setup
    return [
        "--checkpoint", str(checkpoint), "--train-data", str(train), "--val-data", str(val),
        "--workers", "0", "--device", "cpu", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("which", [3, 4], ids=["sparo", "class-token"])
def test_knn_command_on_both_backbones(setup, tmp_path, which, capsys):
    out = tmp_path / "knn.json"
    with one_thread():
        assert main(_argv(setup, setup[which], out, "--k", "1", "20")) == 0
    results = json.loads(out.read_text())
    assert results["num_train"] == 24 and results["num_val"] == 12
    assert results["feature_dim"] == (256 if which == 3 else 128)
    assert set(results["knn"]) == {"1", "20"}
    # four colours: even random frozen features find the nearest same-coloured shape
    assert results["knn"]["1"]["top1"] > 50
    (checkpoint,) = results["provenance"]["checkpoint"]
    assert checkpoint["path"] == str(setup[which].resolve()) and len(checkpoint["sha256"]) == 16
    assert (results["provenance"]["sparo_cfg"] is None) == (which == 4)
    fails_with(capsys, main, _argv(setup, setup[which], out), "already exist")


def test_knn_on_selected_slots(setup, tmp_path, capsys):
    slots = tmp_path / "slots.json"
    slots.write_text(json.dumps({"slots": [0, 3, 7]}))
    out = tmp_path / "knn.json"
    with one_thread():
        assert main(_argv(setup, setup[3], out, "--slots", str(slots))) == 0
    assert json.loads(out.read_text())["slots"] == [0, 3, 7]
    argv = _argv(setup, setup[4], tmp_path / "cls.json", "--slots", str(slots))
    fails_with(capsys, main, argv, "no SPARO slots")


def test_k_above_the_memory_size_is_reported_as_that_size(setup, tmp_path, capsys, caplog):
    out = tmp_path / "knn.json"
    with one_thread():
        assert main(_argv(setup, setup[3], out, "--k", "5", "50")) == 0
    assert set(json.loads(out.read_text())["knn"]) == {"5", "24"}  # before: {"5", "50"}
    assert "--k 50 is more than the 24 images of the memory set" in caplog.text
    err = capsys.readouterr().err  # one progress bar per set
    assert "features of --train-data" in err and "features of --val-data" in err
    assert "24/24" in err and "12/12" in err


def test_an_unreadable_checkpoint_is_one_line(setup, tmp_path, capsys):
    random = tmp_path / "random.pt"
    random.write_bytes(b"\x80\x02" + bytes(range(256)) * 4)
    line = fails_with(capsys, main, _argv(setup, random, tmp_path / "o.json"), "not a checkpoint")
    assert "weights_only" not in line
    fails_with(capsys, main, _argv(setup, tmp_path, tmp_path / "o.json"), "neither a DINO")
