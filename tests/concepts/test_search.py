"""The subset searches on objectives whose best subsets are known."""

import pytest
import torch

from open_clip_sparo.concepts import (
    Step,
    backward_elimination,
    best_step,
    forward_selection,
    split_items,
    values_along,
)


def test_forward_and_backward_on_an_additive_objective():
    weights = [0.1, 0.5, -0.2, 0.3]
    forward = forward_selection(4, weights.__getitem__, float)
    assert [(s.slots, s.changed) for s in forward] == [
        ((1,), 1),
        ((1, 3), 3),
        ((0, 1, 3), 0),
        ((0, 1, 2, 3), 2),
    ]
    assert [s.value for s in forward] == pytest.approx([0.5, 0.8, 0.9, 0.7])
    assert best_step(forward).slots == (0, 1, 3)
    assert len(forward_selection(4, weights.__getitem__, float, max_slots=2)) == 2
    backward = backward_elimination(4, weights.__getitem__, float)
    assert [(s.slots, s.changed) for s in backward] == [
        ((0, 1, 2, 3), None),
        ((0, 1, 3), 2),
        ((1, 3), 0),
        ((1,), 3),
    ]
    assert best_step(backward).slots == (0, 1, 3)


def test_ties_prefer_low_indices_and_fewer_slots():
    steps = forward_selection(3, lambda slot: 0.0, float)
    assert [s.changed for s in steps] == [0, 1, 2]
    assert best_step(steps).slots == (0,)


def test_values_along_follows_the_chain():
    weights = [1.0, 2.0, 4.0, 8.0]
    steps = [Step((0, 1, 2, 3), None, 0.0), Step((0, 2, 3), 1, 0.0), Step((2, 3), 0, 0.0)]
    assert values_along(steps, weights.__getitem__, float) == [15.0, 13.0, 12.0]
    steps = [Step((3,), 3, 0.0), Step((1, 3), 1, 0.0)]
    assert values_along(steps, weights.__getitem__, float) == [8.0, 10.0]


def test_split_items():
    selection, report = split_items(11, 0.5, seed=3)
    assert sorted(selection.tolist() + report.tolist()) == list(range(11))
    assert len(selection) == 6
    assert torch.equal(split_items(11, 0.5, seed=3)[0], selection)
    assert not torch.equal(split_items(11, 0.5, seed=4)[0], selection)
    with pytest.raises(ValueError, match="two non-empty parts"):
        split_items(1, 0.5, seed=0)
    with pytest.raises(ValueError, match="selection_fraction"):
        split_items(10, 1.0, seed=0)
