"""The applications at real shapes: concept selection and DINO k-NN, time and peak memory as the
number of items grows.

Synthetic features at the real shapes (the timing does not depend on their values):

- concept selection for zero-shot classification (ImageNet: 50,000 images x 1,000 classes,
  64 slots of 64) and for retrieval (COCO: 5,000 images x 25,000 captions), greedy forward
  search as ``sparo select`` runs it (``concepts.forward_selection`` over the running sums of
  ``evaluation.slot_search.SearchTerm``, maximising acc1 or image retrieval recall@5);
- DINO's weighted k-NN (``dino.evaluation.knn.knn_scores``, k = 20) of a set of queries
  against a memory bank of up to 1.28M items (ImageNet's training set), 1,000 classes.

Each case runs at the given numbers of items (by default the real ones and their half and
quarter), each in a fresh process that builds its inputs and then makes one timed call. Peak
memory is what that call adds to the inputs: on CPU the peak resident memory above that before
the call (``benchmarks.common.peak_resident``), on CUDA the peak allocated above it
(``benchmarks.common.peak_memory``). The result file is rewritten after each case, so a
stopped run keeps what it measured; the end of the run renders ``docs/performance.md``.

    python -m benchmarks.applications [--device cuda] [--threads 1] ...
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks import report
from benchmarks.common import (
    in_fresh_process,
    parse_device,
    peak_memory,
    peak_resident,
    result_path,
    run_header,
    write_result,
)
from open_clip_sparo import concepts
from open_clip_sparo.dino.evaluation.knn import knn_scores
from open_clip_sparo.evaluation.similarity import SlotSimilarities
from open_clip_sparo.evaluation.slot_search import SearchTerm

NUM_SLOTS, SLOT_DIM = 64, 64  # sparo-ViT-B-16's read-out
IMAGENET_CLASSES = 1000
CAPTIONS_PER_IMAGE = 5  # COCO
CLASSIFICATION = "concept selection, zero-shot classification"
RETRIEVAL = "concept selection, retrieval"
KNN = "DINO k-NN"
SELECTION_TASKS = {CLASSIFICATION: "zeroshot_classification", RETRIEVAL: "zeroshot_retrieval"}
PEAK_MEASURES = {
    "cpu": "the peak resident memory (VmHWM) above the resident memory before the call, in a "
    "fresh process holding only the inputs",
    "cuda": "torch.cuda.max_memory_allocated above the memory allocated before the call",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--device", default="cpu", help="cpu or cuda (default: cpu)")
    add("--selection-images", type=int, nargs="+", default=[12_500, 25_000, 50_000])
    add("--retrieval-images", type=int, nargs="+", default=[1250, 2500, 5000])
    add("--max-slots", type=int, default=NUM_SLOTS, help="forward search to this many slots")
    add("--memory-bank", type=int, nargs="+", default=[320_000, 640_000, 1_280_000])
    add("--queries", type=int, default=1000, help="k-NN queries")
    add("--feature-dim", type=int, default=384, help="k-NN feature size (ViT-S: 384)")
    add("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    report.add_output_args(parser)
    return parser.parse_args(argv)


def measured(
    fn: Callable[[], Any], inputs: tuple[torch.Tensor, ...], device: torch.device
) -> dict[str, float]:
    """Seconds, the bytes of the inputs, and the peak bytes one call adds to them (CPU: resident,
    CUDA: allocated; :data:`PEAK_MEASURES`)."""
    seconds = []

    def timed() -> None:
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)

    peak = peak_memory(timed, device) if device.type == "cuda" else peak_resident(timed)
    held = sum(t.numel() * t.element_size() for t in inputs)
    return {
        "seconds": seconds[0],
        "minutes": seconds[0] / 60,
        "input_bytes": held,
        "peak_bytes": peak,
        "total_gib": (held + peak) / 2**30,  # inputs and what the call allocates on top
    }


def selection_case(
    task: str, images: int, device: torch.device, max_slots: int
) -> tuple[Callable[[], Any], tuple[torch.Tensor, ...]]:
    """Forward search over the slots of synthetic per-slot features of ``images`` items."""
    generator = torch.Generator().manual_seed(0)
    image_slots = torch.randn(images, NUM_SLOTS, SLOT_DIM, generator=generator)  # (I, L, V)
    if task == "zeroshot_classification":
        texts = torch.randn(IMAGENET_CLASSES, NUM_SLOTS, SLOT_DIM, generator=generator)
        targets = torch.randint(0, IMAGENET_CLASSES, (images,), generator=generator)
        metric = "acc1"
    else:
        captions = images * CAPTIONS_PER_IMAGE
        texts = torch.randn(captions, NUM_SLOTS, SLOT_DIM, generator=generator)
        targets = torch.arange(images).repeat_interleave(CAPTIONS_PER_IMAGE)
        metric = "image_retrieval_recall@5"
    part = SlotSimilarities(task, image_slots.to(device), texts.to(device), targets.to(device))

    def search() -> list[concepts.Step]:
        slot_term = functools.partial(SearchTerm, part)
        value = lambda term: term.value(metric)  # noqa: E731
        return concepts.forward_selection(NUM_SLOTS, slot_term, value, max_slots)

    return search, (part.images, part.texts, part.targets)


def knn_case(
    bank: int, args: argparse.Namespace
) -> tuple[Callable[[], Any], tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(bank, args.feature_dim, generator=generator).to(args.device)
    labels = torch.randint(0, IMAGENET_CLASSES, (bank,), generator=generator).to(args.device)
    queries = torch.randn(args.queries, args.feature_dim, generator=generator).to(args.device)
    run = lambda: knn_scores(train, labels, queries, IMAGENET_CLASSES, k=20)  # noqa: E731
    return run, (train, labels, queries)


def measure_case(case: str, items: int, args: argparse.Namespace) -> dict[str, Any]:
    """One case at ``items`` items, built and measured in this process (a fresh one); the load
    averages (1, 5, 15 minutes) are read as its call ends."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if case == KNN:
        run, inputs = knn_case(items, args)
        work = {"queries": args.queries}
    else:
        run, inputs = selection_case(SELECTION_TASKS[case], items, args.device, args.max_slots)
        work = {"candidates": sum(NUM_SLOTS - i for i in range(min(args.max_slots, NUM_SLOTS)))}
    result = {"case": case, "items": items, **measured(run, inputs, args.device), **work}
    return {**result, "load_average": list(os.getloadavg())}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.device = parse_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)  # as each case's process does
    path = result_path(args.out, "applications", args.device, args.overwrite)
    cases = [
        *((CLASSIFICATION, n) for n in args.selection_images),
        *((KNN, n) for n in args.memory_bank),
        *((RETRIEVAL, n) for n in args.retrieval_images),  # the longest last
    ]
    settings = {
        "repeats": 1,
        "warmup": 0,
        "step": "one forward search / one k-NN scoring of all queries",
        "peak_measure": PEAK_MEASURES[args.device.type],
        "num_slots": NUM_SLOTS,
        "slot_dim": SLOT_DIM,
        "classes": IMAGENET_CLASSES,
        "captions_per_image": CAPTIONS_PER_IMAGE,
        "max_slots": args.max_slots,
        "queries": args.queries,
        "feature_dim": args.feature_dim,
    }
    results = []
    for case, items in cases:
        result = in_fresh_process(measure_case, case, items, args)
        results.append(result)
        print(f"{case}, {items:,} items: {result['seconds']:.1f} s, {result['peak_bytes']:,} B")
        header = run_header("applications", argv, args.device, settings)
        write_result(path, {**header, "results": results})
    return report.main(["--results", str(args.out), "--docs", str(args.docs)])


if __name__ == "__main__":
    raise SystemExit(main())
