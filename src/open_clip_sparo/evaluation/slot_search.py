"""The greedy slot searches at ImageNet size: each candidate subset (the chosen slots and one
more, or one fewer) is scored from the running sums of the chosen slots in chunks of rows, in
float32, without materialising its scores; the sums are materialised once per accepted slot.

A candidate's metric is computed from rank-equivalent scores: within a row (an image against
the classes, a text against the images, ...) the cosine ``dots / sqrt(row_sq * col_sq)``
orders the columns as ``dots / sqrt(col_sq)`` does, so the row norms are never needed. Memory:
two ``(rows, columns)`` float32 sums (the chosen slots' and the accepted candidate's) and one
chunk of scores; time: one ``(rows, V) x (V, columns)`` product and one top-k per candidate."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..concepts import SubsetSums
from .metrics import hit_rows, row_hits
from .similarity import SlotSimilarities

CHUNK_ELEMENTS = 2**20  # scores of one chunk of rows: 4 MiB in float32


@dataclass(frozen=True, eq=False)
class SearchTerm:
    """The slot subset whose sums are ``base`` (None: the empty subset) with ``slot`` added
    (``sign`` 1) or removed (-1): a term of :func:`open_clip_sparo.concepts.forward_selection`
    and :func:`~open_clip_sparo.concepts.backward_elimination`. ``SearchTerm(part, slot)`` is
    one slot; ``term + SearchTerm(part, slot)`` materialises ``term``'s sums (once) and is the
    candidate with ``slot`` added."""

    part: SlotSimilarities
    slot: int
    base: SubsetSums | None = None
    sign: int = 1

    def __add__(self, other: SearchTerm) -> SearchTerm:
        return SearchTerm(self.part, other.slot, self.sums, other.sign)

    def __sub__(self, other: SearchTerm) -> SearchTerm:
        return SearchTerm(self.part, other.slot, self.sums, -other.sign)

    @functools.cached_property
    def sums(self) -> SubsetSums:
        """The subset's float32 :class:`SubsetSums`."""
        term = self.part.slot_sums(self.slot, torch.float32)
        if self.base is None:
            return term
        return self.base + term if self.sign > 0 else self.base - term

    def value(self, metric: str, recall_k: Sequence[int] = (5,)) -> float:
        """``metric`` of the subset; chunked for metrics that are fractions of hits over rows,
        from the materialised scores for the others (:func:`hit_rows`)."""
        part = self.part
        rows_of = hit_rows(part.task, metric, num_classes=part.texts.shape[0])
        if rows_of is None:
            return part.metrics_of(self.sums.scores(), recall_k)[metric]
        images = part.images[:, self.slot].float()  # (I, V)
        texts = part.texts[:, self.slot].float()  # (C or T, V)
        row_vectors, column_vectors = (images, texts) if rows_of == "images" else (texts, images)
        column_sq = column_vectors.square().sum(-1)  # (columns,)
        base_rows = None
        if self.base is not None:
            # (rows, columns) dots and (columns,) squared norms of the base subset
            transposed = part.task == "zeroshot_retrieval" and rows_of == "images"
            base_rows = self.base.dots.T if transposed else self.base.dots
            base_column_sq = self.base.text_sq if rows_of == "images" else self.base.image_sq
            column_sq = torch.add(base_column_sq.flatten(), column_sq, alpha=self.sign)
        column_scale = column_sq.sqrt().clamp_min(1e-12).reciprocal()  # (columns,)
        step = max(1, CHUNK_ELEMENTS // len(column_vectors))
        hits = 0
        for start in range(0, len(row_vectors), step):
            chunk = row_vectors[start : start + step]
            rows = torch.arange(start, start + len(chunk), device=chunk.device)
            if base_rows is None:
                dots = chunk @ column_vectors.T  # (chunk, columns)
            else:
                base_chunk = base_rows[start : start + step]
                dots = base_chunk.addmm(chunk, column_vectors.T, alpha=self.sign)
            scores = dots.mul_(column_scale)
            hits = hits + row_hits(part.task, metric, scores, rows, part.targets).sum()
        return int(hits) / len(row_vectors)  # one device sync per candidate
