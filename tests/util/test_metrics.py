"""open_clip_sparo.util.metrics: the one top-k accuracy, the doubts about a fitted score."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from open_clip_sparo.util.metrics import shared_items, split_doubts, topk_accuracy, topk_hits


def test_topk_accuracy():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    target = torch.tensor([1, 2, 2, 1])
    assert topk_accuracy(logits, target, topk=(1, 2, 3)) == [0.5, 0.75, 1.0]
    # the linear probe passes float targets
    assert topk_accuracy(logits, target.float()) == [0.5]
    hits = topk_hits(logits, target, topk=(1, 2))  # the rows behind the accuracies
    assert hits.tolist() == [[True, True], [False, False], [True, True], [False, True]]


@given(
    num_fit=st.integers(1, 80),
    num_score=st.integers(1, 80),
    num_shared=st.integers(0, 80),
    dim=st.sampled_from([8, 64]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=30, deadline=None)
def test_shared_items_counts_the_score_items_that_are_fit_items(
    num_fit, num_score, num_shared, dim, seed
):
    generator = torch.Generator().manual_seed(seed)
    fit = torch.randn(num_fit, dim, generator=generator)
    num_shared = min(num_shared, num_fit, num_score)
    score = torch.randn(num_score, dim, generator=generator)
    chosen = torch.randperm(num_fit, generator=generator)[:num_shared]
    # the same image computed again: rescaled and off by float noise
    score[:num_shared] = fit[chosen] * 1.5 + 1e-7 * torch.randn(
        num_shared, dim, generator=generator
    )
    assert shared_items(fit, score) == num_shared


@given(num_shared=st.integers(1, 60), seed=st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
def test_shared_items_finds_items_off_by_up_to_the_tolerance(num_shared, seed):
    """Items that differ by up to 4e-4 a dim (normalised): one in 8, on average, crosses a side
    of the cells it is looked up in (0.05 wide); before, rounding to 1e-3 missed such pairs."""
    generator = torch.Generator().manual_seed(seed)
    fit = torch.nn.functional.normalize(torch.randn(80, 32, generator=generator), dim=1)
    score = torch.randn(num_shared + 20, 32, generator=generator)
    off = (torch.rand(num_shared, 32, generator=generator) - 0.5) * 8e-4
    score[:num_shared] = 1.5 * (fit[:num_shared] + off)
    assert shared_items(fit, score) == num_shared


def test_split_doubts():
    fit, score = torch.randn(60, 16), torch.randn(60, 16)
    assert split_doubts(fit, score, "--train-data T", "--val-data V") == []
    doubts = split_doubts(fit, fit[:2], "--train-data T", "--val-data T")
    assert doubts[0].startswith("2 of the 2 items of --val-data T are also in --train-data T")
    assert doubts[1] == (
        "--train-data T has 60 items and --val-data T 2: with fewer than 50 the score is mostly "
        "noise"
    )
