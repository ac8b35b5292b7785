import json

import pytest
import torch
import torch.nn.functional as F
from dino_utils import fails_with, labelled_folders, one_thread, untrained_checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st

from open_clip_sparo.dino.evaluation.features import FrozenFeatures
from open_clip_sparo.dino.evaluation.knn import knn_scores
from open_clip_sparo.dino.evaluation.knn import main as knn_main
from open_clip_sparo.dino.evaluation.select import (
    main,
    restrict,
    select_knn_slots,
    select_on_memory,
    slot_sums,
)

NUM_SLOTS, SLOT_DIM = 6, 4


def _features(seed: int, informative: int | None = None) -> FrozenFeatures:
    """Random slot features of uneven norms; with ``informative``, only that slot carries the
    label (one direction per class), the others are noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(40) % 4
    prototypes = torch.randn(4, SLOT_DIM, generator=generator) * 3

    def sample(n: int) -> torch.Tensor:
        slots = torch.randn(n, NUM_SLOTS, SLOT_DIM, generator=generator)
        slots = slots * torch.rand(1, NUM_SLOTS, 1, generator=generator) * 2
        if informative is not None:
            slots[:, informative] = prototypes[labels[:n]] + 0.3 * slots[:, informative]
        return slots.flatten(1)

    return FrozenFeatures(sample(40), labels, sample(20), labels[:20], {})


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 1000),
    subset=st.sets(st.integers(0, NUM_SLOTS - 1), min_size=1, max_size=NUM_SLOTS),
)
def test_subset_sums_are_the_cosines_of_the_restricted_embedding(seed, subset):
    """The per-slot terms summed over a subset give exactly the cosines of embeddings whose
    other slots are zero (what select_slots and k-NN's normalisation compute)."""
    features = _features(seed)
    term = slot_sums(features, NUM_SLOTS)
    total = None
    for slot in sorted(subset):
        total = term(slot) if total is None else total + term(slot)
    mask = torch.zeros(NUM_SLOTS, 1)
    mask[sorted(subset)] = 1

    def restrict(x: torch.Tensor) -> torch.Tensor:
        return F.normalize((x.unflatten(1, (NUM_SLOTS, SLOT_DIM)) * mask).flatten(1), dim=-1)

    expected = restrict(features.val) @ restrict(features.train).T
    torch.testing.assert_close(total.scores(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("search", ["forward", "backward"])
def test_search_finds_the_slot_that_carries_the_labels(search):
    features = _features(0, informative=2)
    chosen, steps = select_knn_slots(features, NUM_SLOTS, k=5, search=search)
    assert chosen.slots == (2,)
    assert chosen.value == 100.0
    scores = knn_scores(features.train, features.train_labels, features.val, 4, k=5)
    all_slots = 100.0 * (scores.argmax(1) == features.val_labels).float().mean().item()
    assert chosen.value >= all_slots
    assert len(steps) == NUM_SLOTS


def test_restrict_keeps_only_the_chosen_slots():
    features = _features(0)
    kept = restrict(features, [1, 4], NUM_SLOTS)
    for full, part in ((features.train, kept.train), (features.val, kept.val)):
        full, part = full.unflatten(1, (NUM_SLOTS, -1)), part.unflatten(1, (NUM_SLOTS, -1))
        torch.testing.assert_close(part[:, [1, 4]], full[:, [1, 4]])
        assert part[:, [0, 2, 3, 5]].abs().sum() == 0
    assert kept.info["slots"] == [1, 4]


def test_selection_within_the_memory_finds_the_informative_slot():
    features = _features(1, informative=4)
    result = select_on_memory(features, NUM_SLOTS, k=5, seed=0)
    assert result["slots"] == [4]
    assert result["top1"] == 100.0 and result["selection_top1"] == 100.0


def test_search_rejects_an_unknown_search():
    with pytest.raises(ValueError, match="forward"):
        select_knn_slots(_features(0), NUM_SLOTS, search="random")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    train, val = labelled_folders(root)
    sparo = untrained_checkpoint(root / "sparo.pt", "sparo-ViT-Ti-8-64")
    class_token = untrained_checkpoint(root / "cls.pt", "ViT-Ti-8-64")
    return train, val, sparo, class_token


def _argv(setup, checkpoint, out, *extra):
    train, val, _, _ = setup
    return [
        "--checkpoint", str(checkpoint), "--train-data", str(train), "--val-data", str(val),
        "--workers", "0", "--device", "cpu", "--out", str(out), *extra,
    ]  # fmt: skip


def test_select_command_writes_slots_that_knn_reads(setup, tmp_path, capsys):
    out = tmp_path / "slots.json"
    with one_thread():
        assert main(_argv(setup, setup[2], out, "--k", "5", "--max-slots", "4")) == 0
        result = json.loads(out.read_text())
        assert 1 <= len(result["slots"]) <= 4 and result["num_slots"] == 16
        assert [len(step["slots"]) for step in result["steps"]] == [1, 2, 3, 4]
        best = max(step["top1"] for step in result["steps"])
        assert result["selection"]["selected"] == best
        assert 0 <= result["selection"]["all_slots"] <= 100
        knn_out = tmp_path / "knn.json"
        assert knn_main(_argv(setup, setup[2], knn_out, "--k", "5", "--slots", str(out))) == 0
        assert json.loads(knn_out.read_text())["slots"] == result["slots"]
        fails_with(capsys, main, _argv(setup, setup[2], out), "already exist")


def test_select_refuses_a_class_token_backbone(setup, tmp_path, capsys):
    with one_thread():
        fails_with(capsys, main, _argv(setup, setup[3], tmp_path / "slots.json"), "SPARO backbone")
