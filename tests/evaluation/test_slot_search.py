"""The chunked search terms choose the slots, with the values, of the materialised sums."""

from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from open_clip_sparo.concepts import backward_elimination, forward_selection
from open_clip_sparo.evaluation import slot_search
from open_clip_sparo.evaluation.similarity import SlotSimilarities
from open_clip_sparo.evaluation.slot_search import SearchTerm

METRICS = {
    "zeroshot_classification": ["acc1", "acc5", "mean_per_class_recall"],
    "zeroshot_retrieval": [f"{d}_retrieval_recall@{k}" for d in ("image", "text") for k in (1, 3)],
}


def random_part(task, items, columns, num_slots, seed):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(items, num_slots, 4, generator=generator)
    if task == "zeroshot_classification":
        texts = torch.randn(columns, num_slots, 4, generator=generator)
        targets = torch.randint(0, columns, (items,), generator=generator)
    else:
        texts = torch.randn(items * 2, num_slots, 4, generator=generator)
        targets = torch.arange(items).repeat_interleave(2)
    return SlotSimilarities(task, images, texts, targets)


@settings(max_examples=40, deadline=None)
@given(
    task_metric=st.sampled_from([(t, m) for t, ms in METRICS.items() for m in ms]),
    items=st.integers(2, 30),
    columns=st.integers(5, 12),
    num_slots=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    chunk=st.sampled_from([1, 7, 2**20]),
)
def test_searches_match_the_materialised_sums(task_metric, items, columns, num_slots, seed, chunk):
    task, metric = task_metric
    part = random_part(task, items, columns, num_slots, seed)

    def naive(sums):
        return part.metrics_of(sums.scores(), recall_k=(1, 3))[metric]

    def chunked(term):
        return term.value(metric, recall_k=(1, 3))

    def term(slot):
        return SearchTerm(part, slot)

    for search in (forward_selection, backward_elimination):
        expected = search(num_slots, part.slot_sums, naive)
        with mock.patch.object(slot_search, "CHUNK_ELEMENTS", chunk):
            assert search(num_slots, term, chunked) == expected


def test_a_candidate_is_scored_without_its_scores(monkeypatch):
    part = random_part("zeroshot_classification", 40, 6, 3, seed=0)
    monkeypatch.setattr(slot_search, "CHUNK_ELEMENTS", 60)  # 10 images a chunk
    chosen = SearchTerm(part, 2) + SearchTerm(part, 0)
    candidate = chosen + SearchTerm(part, 1)
    assert "sums" not in candidate.__dict__  # nothing (40, 6) was made for the candidate
    assert candidate.value("acc1") == pytest.approx(part.metrics([0, 1, 2])["acc1"])
    assert "sums" not in candidate.__dict__
    removed = chosen + SearchTerm(part, 1) - SearchTerm(part, 0)
    assert removed.value("acc5") == pytest.approx(part.metrics([1, 2])["acc5"])
