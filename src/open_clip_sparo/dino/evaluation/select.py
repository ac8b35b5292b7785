"""Concept selection for a DINO SPARO backbone: the slots that serve k-NN classification best.

    python -m open_clip_sparo.dino.evaluation.select --checkpoint RUN --train-data MEMORY \\
        --val-data SELECTION --out slots.json

The CLIP side's protocol (``sparo select``) with DINO's k-NN as the task: features of both sets
are extracted once and split into slots; a subset's cosine similarities follow exactly from
per-slot dot products and squared norms (as ``select_slots`` renormalises the embedding), so the
greedy search (forward selection by default, or backward elimination) scores every candidate
subset without encoding again. The step with the best top-1 accuracy on ``--val-data`` wins (the
fewest slots on ties). Report it on other images: ``knn --slots slots.json --val-data TEST``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ... import concepts
from ...util.metrics import topk_accuracy
from .features import FrozenFeatures, feature_parser, run_feature_command
from .knn import knn_accuracies, knn_vote


def slot_sums(features: FrozenFeatures, num_slots: int) -> Callable[[int], concepts.SubsetSums]:
    """Per slot: dot products ``(Q, N)`` of the queries with the memory and their squared norms,
    the terms whose sums over a subset give its cosines exactly."""
    val = features.val.unflatten(1, (num_slots, -1)).float()  # (Q, L, V)
    train = features.train.unflatten(1, (num_slots, -1)).float()  # (N, L, V)

    def term(slot: int) -> concepts.SubsetSums:
        q, m = val[:, slot], train[:, slot]
        return concepts.SubsetSums(
            q @ m.T, q.square().sum(-1)[:, None], m.square().sum(-1)[None, :]
        )

    return term


def knn_objective(
    features: FrozenFeatures, k: int, temperature: float
) -> Callable[[concepts.SubsetSums], float]:
    """Top-1 k-NN accuracy (percent) of the queries for a subset's sums."""
    num_classes = features.num_classes

    def value(sums: concepts.SubsetSums) -> float:
        scores = knn_vote(sums.scores(), features.train_labels, num_classes, k, temperature)
        return 100.0 * topk_accuracy(scores, features.val_labels)[0]

    return value


def select_knn_slots(
    features: FrozenFeatures,
    num_slots: int,
    k: int = 20,
    temperature: float = 0.07,
    search: str = "forward",
    max_slots: int | None = None,
) -> tuple[concepts.Step, list[concepts.Step]]:
    """The chosen step and all steps of the search over ``num_slots`` slots of ``features``."""
    if search not in concepts.SEARCHES:
        raise ValueError(f"search must be one of {concepts.SEARCHES}, got {search!r}.")
    term, value = slot_sums(features, num_slots), knn_objective(features, k, temperature)
    if search == "forward":
        steps = concepts.forward_selection(num_slots, term, value, max_slots)
    else:
        steps = concepts.backward_elimination(num_slots, term, value)
    return concepts.best_step(steps), steps


def restrict(features: FrozenFeatures, slots: Sequence[int], num_slots: int) -> FrozenFeatures:
    """``features`` with every slot outside ``slots`` set to zero (k-NN renormalises, as
    ``select_slots`` does)."""
    mask = torch.zeros(num_slots, 1)
    mask[list(slots)] = 1

    def apply(x: torch.Tensor) -> torch.Tensor:
        return (x.unflatten(1, (num_slots, -1)) * mask.to(x)).flatten(1)

    info = {**features.info, "slots": sorted(slots)}
    return FrozenFeatures(
        apply(features.train), features.train_labels, apply(features.val), features.val_labels, info
    )


def select_on_memory(
    features: FrozenFeatures, num_slots: int, k: int = 20, temperature: float = 0.07, seed: int = 0
) -> dict[str, Any]:
    """Slots chosen without the validation images (a seeded half of the training (memory) set
    queries the other half), and the k-NN accuracies of the validation images on them against
    the whole memory."""
    memory, queries = concepts.split_items(len(features.train), 0.5, seed)
    inner = FrozenFeatures(
        features.train[memory],
        features.train_labels[memory],
        features.train[queries],
        features.train_labels[queries],
        {},
    )
    chosen, _ = select_knn_slots(inner, num_slots, k, temperature)
    selected = knn_accuracies(restrict(features, chosen.slots, num_slots), [k], temperature)
    (on_chosen,) = selected.values()  # one k, maybe lowered to the memory's size
    return {"slots": list(chosen.slots), "selection_top1": chosen.value, **on_chosen}


def main(argv: Sequence[str] | None = None) -> int:
    parser = feature_parser("open_clip_sparo.dino.evaluation.select", __doc__)
    parser.add_argument("--k", type=int, default=20, help="neighbours of the k-NN objective")
    parser.add_argument("--temperature", type=float, default=0.07)
    parser.add_argument("--search", choices=concepts.SEARCHES, default="forward")
    parser.add_argument("--max-slots", type=int, help="forward search: stop after this many")

    def check(args: argparse.Namespace) -> None:
        if args.slots:
            parser.error("--slots restricts evaluation; select searches over all slots.")
        if not args.out:
            parser.error("--out is required: where to write slots.json.")

    def evaluate(args: argparse.Namespace, features: FrozenFeatures) -> dict[str, Any]:
        num_slots = features.info["num_slots"]
        if num_slots is None:
            raise ValueError(
                f"{args.checkpoint} has a class-token backbone ({features.info['backbone']}); "
                "slot selection needs a SPARO backbone."
            )
        chosen, steps = select_knn_slots(
            features, num_slots, args.k, args.temperature, args.search, args.max_slots
        )
        (all_slots,) = knn_accuracies(features, [args.k], args.temperature).values()
        all_slots = all_slots["top1"]
        return {
            "slots": list(chosen.slots),
            "task": "knn",
            "metric": "top1",
            "k": args.k,
            "temperature": args.temperature,
            "protocol": {
                "search": args.search,
                "max_slots": args.max_slots,
                "choice": "step with the best top-1 k-NN accuracy on --val-data; fewest slots "
                "on ties",
                "memory": args.train_data,
                "selection": args.val_data,
            },
            "selection": {"all_slots": all_slots, "selected": chosen.value},
            "steps": [
                {"slots": list(s.slots), "changed": s.changed, "top1": s.value} for s in steps
            ],
        }

    return run_feature_command(parser, argv, evaluate, check)


if __name__ == "__main__":
    sys.exit(main())
