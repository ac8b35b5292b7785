"""``sparo select``: choose the slots (concepts) that serve a task best.

This project's protocol (the paper's is not public): encode the dataset once into per-slot
similarities; split its items by seed into a selection part and a report part (or select on a
separate validation split); search slot subsets on the selection part, by greedy forward
selection (default) or backward elimination, maximising the task metric; keep the step with the
best selection metric (the fewest slots on ties); report all slots against that subset on the
report part. The result, ``slots.json``, is accepted by ``sparo eval --slots`` and
:func:`open_clip_sparo.select_slots`.
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from .evaluation import fill_root
from .loading import LoadedModel, add_model_args, load_model
from .similarity import TASKS, SlotSimilarities, SubsetSums, slot_similarities

Term = TypeVar("Term")  # a per-slot term: supports + and -, e.g. SubsetSums
SEARCHES = ("forward", "backward")


@dataclass(frozen=True)
class Step:
    """One step of a subset search: the subset after it, the slot it added or removed (None for
    the starting subset) and the objective's value on the subset."""

    slots: tuple[int, ...]
    changed: int | None
    value: float


def forward_selection(
    num_slots: int,
    slot_term: Callable[[int], Term],
    value: Callable[[Term], float],
    max_slots: int | None = None,
) -> list[Step]:
    """Greedy forward selection: add, one at a time, the slot that maximises ``value`` of the
    summed terms of the chosen slots (the lowest index on ties); one step per added slot."""
    chosen: list[int] = []
    total: Term | None = None
    steps = []
    for _ in range(min(max_slots or num_slots, num_slots)):
        best = None
        for slot in (s for s in range(num_slots) if s not in chosen):
            candidate = slot_term(slot) if total is None else total + slot_term(slot)
            score = value(candidate)
            if best is None or score > best[0]:
                best = (score, slot, candidate)
        score, slot, total = best
        chosen.append(slot)
        steps.append(Step(tuple(sorted(chosen)), slot, score))
    return steps


def backward_elimination(
    num_slots: int,
    slot_term: Callable[[int], Term],
    value: Callable[[Term], float],
    min_slots: int = 1,
) -> list[Step]:
    """Backward elimination: from all slots, remove, one at a time, the slot whose removal
    maximises ``value`` (the lowest index on ties); the first step is the full set."""
    kept = list(range(num_slots))
    total = _sum_terms(kept, slot_term)
    steps = [Step(tuple(kept), None, value(total))]
    while len(kept) > max(min_slots, 1):
        best = None
        for slot in kept:
            candidate = total - slot_term(slot)
            score = value(candidate)
            if best is None or score > best[0]:
                best = (score, slot, candidate)
        score, slot, total = best
        kept.remove(slot)
        steps.append(Step(tuple(kept), slot, score))
    return steps


def best_step(steps: Sequence[Step]) -> Step:
    """The step with the highest value, the one with the fewest slots on ties."""
    return max(steps, key=lambda step: (step.value, -len(step.slots)))


def values_along(
    steps: Sequence[Step], slot_term: Callable[[int], Term], value: Callable[[Term], float]
) -> list[float]:
    """``value`` of every step's subset under other terms (e.g. the report part), updating the
    sum along the chain of steps instead of recomputing it."""
    values = []
    total = _sum_terms(steps[0].slots, slot_term)
    previous = set(steps[0].slots)
    for step in steps:
        current = set(step.slots)
        for slot in current - previous:
            total = total + slot_term(slot)
        for slot in previous - current:
            total = total - slot_term(slot)
        previous = current
        values.append(value(total))
    return values


def split_items(num_items: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random disjoint (selection, report) item indices, ``fraction`` of them for selection."""
    if not 0 < fraction < 1:
        raise ValueError(f"--selection_fraction must be in (0, 1), got {fraction}.")
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed))
    cut = round(num_items * fraction)
    if not 0 < cut < num_items:
        raise ValueError(
            f"{num_items} items cannot be split with fraction {fraction} into two non-empty "
            "parts; use more data or a --selection_split."
        )
    return order[:cut].sort().values, order[cut:].sort().values


def default_metric(task: str, recall_k: Sequence[int]) -> str:
    """The metric maximised unless ``--metric`` says otherwise."""
    return {
        "zeroshot_classification": "acc1",
        "zeroshot_retrieval": f"image_retrieval_recall@{recall_k[0]}",
        "image_caption_selection": "acc",
    }[task]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparo select",
        description="Choose the slots that maximise a task metric (this project's protocol: "
        "greedy search on a selection part, report on a disjoint part).",
    )
    add_model_args(parser)
    parser.add_argument("--dataset", required=True, help="CLIP_benchmark dataset, e.g. wds/x")
    parser.add_argument("--dataset_root", required=True)
    parser.add_argument("--task", default="auto", choices=["auto", *TASKS])
    parser.add_argument("--split", default="test", help="split to report on")
    parser.add_argument(
        "--selection_split",
        default=None,
        help="select on this split (e.g. a validation split) and report on all of --split; "
        "by default --split is divided by --seed",
    )
    parser.add_argument(
        "--selection_dataset_root",
        default=None,
        help="select on the data set at this root (e.g. a validation copy of --dataset_root) "
        "and report on all of --dataset_root; combines with --selection_split",
    )
    parser.add_argument("--selection_fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--search", default="forward", choices=SEARCHES)
    parser.add_argument("--max_slots", type=int, default=None, help="forward: stop at this size")
    parser.add_argument("--metric", default=None, help="CLIP_benchmark metric to maximise")
    parser.add_argument("--recall_k", type=int, nargs="+", default=[5])
    parser.add_argument("--language", default="en")
    parser.add_argument("--annotation_file", default="")
    parser.add_argument("--custom_template_file", default=None)
    parser.add_argument("--custom_classname_file", default=None)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--cache_dir",
        default=str(Path.home() / ".cache" / "open_clip_sparo" / "slot_similarities"),
        help="per-slot similarities are cached here, keyed by model, weights and dataset",
    )
    parser.add_argument("--out", required=True, help="slots.json to write")
    parser.add_argument("--plot", default=None, help="PNG of metric vs slots (default: --out .png)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    _check_parts_differ(args)
    out = Path(args.out)
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")
    existing = [str(p) for p in (out, plot) if p.exists()]
    if existing:
        raise FileExistsError(
            f"{existing} already exist; choose another --out/--plot or remove them."
        )
    loaded = load_model(args.model, args.pretrained, device=args.device)
    selection, report, protocol = _parts(args, _encoder(loaded, args))
    metric = args.metric or default_metric(selection.task, args.recall_k)
    available = selection.metrics(recall_k=args.recall_k)
    if metric not in available:
        raise ValueError(
            f"--metric {metric!r} is not a metric of {selection.task}: {list(available)}."
        )

    def objective(part: SlotSimilarities) -> Callable[[SubsetSums], float]:
        return lambda sums: part.metrics_of(sums.scores(), args.recall_k)[metric]

    steps = _search(args, selection, objective(selection))
    chosen = best_step(steps)
    report_values = values_along(steps, report.slot_sums, objective(report))
    result = {
        "slots": list(chosen.slots),
        "num_slots": selection.num_slots,
        "model": args.model,
        "pretrained": args.pretrained,
        "weights": [str(p) for p in loaded.weights],
        "dataset": args.dataset,
        "dataset_root": args.dataset_root,
        "task": selection.task,
        "metric": metric,
        "protocol": {
            "search": args.search,
            "max_slots": args.max_slots,
            "choice": "step with the best selection metric; fewest slots on ties",
            **protocol,
        },
        "selection": {"all_slots": available},
        "report": {
            "all_slots": report.metrics(recall_k=args.recall_k),
            "selected": report.metrics(chosen.slots, recall_k=args.recall_k),
        },
        "steps": [
            {"slots": list(s.slots), "changed": s.changed, "selection": s.value, "report": value}
            for s, value in zip(steps, report_values, strict=True)
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    plot_steps(result, plot)
    all_slots, selected = (result["report"][k][metric] for k in ("all_slots", "selected"))
    print(
        f"{metric} on the report part: all {selection.num_slots} slots {all_slots:.4f}, "
        f"selected {len(chosen.slots)} slots {selected:.4f}; wrote {out} and {plot}"
    )
    return 0


def plot_steps(result: dict[str, Any], path: Path) -> None:
    """PNG of the metric against the number of slots on both parts, with the choice marked."""
    sizes = [len(step["slots"]) for step in result["steps"]]
    metric = result["metric"]
    fig = Figure(figsize=(7, 4.5), layout="tight")
    ax = fig.subplots()
    ax.plot(sizes, [s["selection"] for s in result["steps"]], "o-", ms=3, label="selection part")
    ax.plot(sizes, [s["report"] for s in result["steps"]], "s-", ms=3, label="report part")
    ax.axhline(
        result["selection"]["all_slots"][metric],
        color="C0",
        ls=":",
        lw=1,
        label="all slots, selection part",
    )
    ax.axhline(
        result["report"]["all_slots"][metric],
        color="C1",
        ls=":",
        lw=1,
        label="all slots, report part",
    )
    ax.axvline(len(result["slots"]), color="0.4", ls="--", lw=1, label="chosen")
    ax.set_xlabel("number of slots")
    ax.set_ylabel(metric)
    title = f"{result['protocol']['search']} selection on {result['dataset']} ({result['task']})"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def _search(
    args: argparse.Namespace, selection: SlotSimilarities, value: Callable[[SubsetSums], float]
) -> list[Step]:
    num_slots = selection.num_slots
    if args.search == "forward":
        limit = min(args.max_slots or num_slots, num_slots)
        total = sum(num_slots - i for i in range(limit))
    else:
        total = num_slots * (num_slots + 1) // 2
    with tqdm(total=total, desc=f"{args.search} selection") as bar:

        def counted(sums: SubsetSums) -> float:
            bar.update()
            return value(sums)

        if args.search == "forward":
            return forward_selection(num_slots, selection.slot_sums, counted, args.max_slots)
        return backward_elimination(num_slots, selection.slot_sums, counted)


def _check_parts_differ(args: argparse.Namespace) -> None:
    """Refuse a selection split and root that are the report's: selecting slots on the data
    they are reported on would overstate the result."""
    if args.selection_split is None and args.selection_dataset_root is None:
        return  # --selection_fraction divides --split into disjoint parts
    split = args.selection_split or args.split
    root = args.selection_dataset_root or args.dataset_root

    def resolved(path: str) -> Path:
        return Path(fill_root(args.dataset, path)).resolve()

    if split == args.split and resolved(root) == resolved(args.dataset_root):
        raise ValueError(
            f"the selection part (--selection_split {split}, --selection_dataset_root {root}) "
            f"is the report part (--split {args.split}, --dataset_root {args.dataset_root}): "
            "slots chosen on the data they are reported on overstate the result. Select on "
            "other data (another --selection_split or --selection_dataset_root, e.g. a "
            "validation split), or pass neither to divide --split by --seed."
        )


def _parts(
    args: argparse.Namespace, encode: Callable[[str, str], SlotSimilarities]
) -> tuple[SlotSimilarities, SlotSimilarities, dict[str, Any]]:
    """The selection and report parts, and how they were made."""
    evaluated = encode(args.split, args.dataset_root)
    if args.selection_split is not None or args.selection_dataset_root is not None:
        split = args.selection_split or args.split
        root = args.selection_dataset_root or args.dataset_root
        selection = encode(split, root)
        return (
            selection,
            evaluated,
            {
                "selection": {"split": split, "root": root, "items": selection.num_items},
                "report": {
                    "split": args.split,
                    "root": args.dataset_root,
                    "items": evaluated.num_items,
                },
            },
        )
    selection_items, report_items = split_items(
        evaluated.num_items, args.selection_fraction, args.seed
    )
    protocol = {
        "selection": {
            "split": args.split,
            "fraction": args.selection_fraction,
            "seed": args.seed,
            "items": len(selection_items),
        },
        "report": {"split": args.split, "items": len(report_items)},
    }
    return evaluated.subset(selection_items), evaluated.subset(report_items), protocol


def _encoder(
    loaded: LoadedModel, args: argparse.Namespace
) -> Callable[[str, str], SlotSimilarities]:
    def encode(split: str, root: str) -> SlotSimilarities:
        return slot_similarities(
            loaded,
            args.dataset,
            root,
            split=split,
            task=args.task,
            cache_dir=args.cache_dir,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            device=args.device,
            language=args.language,
            annotation_file=args.annotation_file,
            custom_template_file=args.custom_template_file,
            custom_classname_file=args.custom_classname_file,
        )

    return encode


def _sum_terms(slots: Sequence[int], slot_term: Callable[[int], Term]) -> Term:
    return functools.reduce(operator.add, map(slot_term, slots))
