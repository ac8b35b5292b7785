"""``sparo select``: choose the slots (concepts) that serve a task best.

This project's protocol (the paper's is not public): encode the dataset once into per-slot
similarities; split its items by seed into a selection part and a report part (or select on a
separate validation split); search slot subsets on the selection part, by greedy forward
selection (default) or backward elimination, maximising the task metric; keep the step with the
best selection metric (the fewest slots on ties); report all slots against that subset on the
report part. The result, ``slots.json``, is accepted by ``sparo eval --slots`` and
:func:`open_clip_sparo.select_slots`."""

from __future__ import annotations

import argparse
import functools
import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .. import concepts
from ..concepts.plot import plot_steps
from ..io.loading import LoadedModel, load_model
from ..io.provenance import describe
from ..util.files import atomic_write, check_new_files, write_json
from ..util.metrics import MIN_SPLIT_ITEMS
from .checks import add_model_args, positive_int
from .datasets import check_dataset_files, default_task, fill_root
from .similarity import TASKS, SlotSimilarities, slot_similarities
from .slot_search import SearchTerm


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
    parser.add_argument("--search", default="forward", choices=concepts.SEARCHES)
    parser.add_argument(
        "--max_slots", type=positive_int, default=None, help="forward: stop at this size"
    )
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


def select(argv: list[str]) -> int:
    """``sparo select`` with the command-line arguments ``argv``."""
    args = build_parser().parse_args(argv)
    _check_parts_differ(args)
    out = Path(args.out)
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")
    check_new_files(
        [out, plot],
        "--out is the slots JSON and --plot its PNG (default: --out with .png): give two new, "
        "writable paths; nothing was written.",
    )
    _check_data(args)
    loaded = load_model(args.model, args.pretrained, device=args.device)
    provenance = loaded.provenance()
    print(f"sparo select: {describe(provenance)}")
    selection, report, protocol = _parts(args, _encoder(loaded, args))
    _check_sizes(selection.num_items, report.num_items, protocol)
    metric = args.metric or default_metric(selection.task, args.recall_k)
    available = selection.metrics(recall_k=args.recall_k)
    if metric not in available:
        raise ValueError(
            f"--metric {metric!r} is not a metric of {selection.task}: {list(available)}."
        )

    def objective(part: SlotSimilarities) -> Callable[[concepts.SubsetSums], float]:
        return lambda sums: part.metrics_of(sums.scores(), args.recall_k)[metric]

    steps = _search(args, selection, lambda term: term.value(metric, args.recall_k))
    chosen = concepts.best_step(steps)
    report_values = concepts.values_along(steps, report.slot_sums, objective(report))
    result = {
        "slots": list(chosen.slots),
        "num_slots": selection.num_slots,
        "model": args.model,
        "pretrained": args.pretrained,
        "weights": [str(p) for p in loaded.weights],
        "provenance": provenance,
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
    picture = io.BytesIO()
    plot_steps(result, picture)  # drawn first: the JSON and the PNG are written together or not
    write_json(out, result, overwrite=False)
    try:
        atomic_write(plot, lambda file: file.write(picture.getvalue()), overwrite=False)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    all_slots, selected = (result["report"][k][metric] for k in ("all_slots", "selected"))
    print(
        f"{metric} on the report part: all {selection.num_slots} slots {all_slots:.4f}, "
        f"selected {len(chosen.slots)} slots {selected:.4f}; wrote {out} and {plot}"
    )
    return 0


def _search(
    args: argparse.Namespace, selection: SlotSimilarities, value: Callable[[SearchTerm], float]
) -> list[concepts.Step]:
    num_slots = selection.num_slots
    if args.search == "forward":
        limit = min(args.max_slots or num_slots, num_slots)
        total = sum(num_slots - i for i in range(limit))
    else:
        total = num_slots * (num_slots + 1) // 2
    with tqdm(total=total, desc=f"{args.search} selection") as bar:

        def counted(term: SearchTerm) -> float:
            bar.update()
            return value(term)

        slot_term = functools.partial(SearchTerm, selection)
        if args.search == "forward":
            return concepts.forward_selection(num_slots, slot_term, counted, args.max_slots)
        return concepts.backward_elimination(num_slots, slot_term, counted)


def _check_data(args: argparse.Namespace) -> None:
    """The files of the report part and of the selection part, checked before any model
    loads."""
    task = default_task(args.dataset) if args.task == "auto" else args.task
    annotations = args.annotation_file or None
    parts = [(args.split, args.dataset_root)]
    if args.selection_split is not None or args.selection_dataset_root is not None:
        parts.append(
            (args.selection_split or args.split, args.selection_dataset_root or args.dataset_root)
        )
    for split, root in parts:
        check_dataset_files(args.dataset, fill_root(args.dataset, root), split, task, annotations)


def _check_sizes(selection: int, report: int, protocol: dict[str, Any]) -> None:
    """Refuse a selection part of a single item; warn, with the numbers, under
    :data:`~open_clip_sparo.util.metrics.MIN_SPLIT_ITEMS`."""
    part = protocol["selection"]
    how = (
        f"--selection_fraction {part['fraction']} of --split {part['split']}"
        if "fraction" in part
        else f"--split {part['split']} at {part['root']}"
    )
    where = f"the selection part has {selection} items ({how}), the report part {report}"
    if selection < 2:
        raise ValueError(
            f"slots cannot be chosen from {selection} item: {where}. Use more data, a larger "
            "--selection_fraction or a --selection_split."
        )
    if min(selection, report) < MIN_SPLIT_ITEMS:
        print(
            f"sparo select: warning: {where}; with fewer than {MIN_SPLIT_ITEMS} items the chosen "
            "slots and the reported metric are mostly noise.",
            file=sys.stderr,
        )


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
    selection_items, report_items = concepts.split_items(
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
        options = ("task", "cache_dir", "batch_size", "num_workers", "device", "language")
        options += ("annotation_file", "custom_template_file", "custom_classname_file")
        kwargs = {name: getattr(args, name) for name in options}
        return slot_similarities(loaded, args.dataset, root, split=split, **kwargs)

    return encode
