"""The demo's ``report.md`` and ``results.json``: tables, curves and charts from its outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import open_clip
from matplotlib.figure import Figure

from .report import (
    format_cell,
    keep_earlier,
    over_seeds,
    parameter_count,
    publish,
    training_seconds,
)
from .runner import BASELINE, MODELS, SPARO, Demo

SELECTED = SPARO + " + selection"


CHARTS = ("losses.png", "tasks.png")  # the report's own charts (slot pictures are a step's)


# the metric reported per task, as CLIP_benchmark names it
TASK_METRICS = {
    "zeroshot_classification": "acc1",
    "zeroshot_retrieval": "image_retrieval_recall@1",
    "image_caption_selection": "acc",
}


def collect(demo: Demo) -> dict[str, Any]:
    """Per model and data set: the task metric on every seed, its mean and spread."""
    manifest = demo.manifest()
    labels = {model: model for model in demo.models} | {SELECTED: f"{SPARO}-selection"}
    results: dict[str, Any] = {}
    for name, label in labels.items():
        results[name] = {}
        for dataset, task in manifest["datasets"].items():
            metric = TASK_METRICS[task]
            values = []
            for seed in demo.budget.seeds:
                path = demo.result_file(f"{label}-seed{seed}", dataset)
                values.append(json.loads(path.read_text())["metrics"][metric])
            results[name][dataset] = {"task": task, "metric": metric, **over_seeds(values)}
    return results


def provenance(demo: Demo) -> dict[str, Any]:
    """Per trained run, the provenance record ``sparo eval`` wrote with its results."""
    first = next(iter(demo.manifest()["datasets"]))
    return {
        f"{model}-seed{seed}": json.loads(
            demo.result_file(f"{model}-seed{seed}", first).read_text()
        )["provenance"]
        for model in demo.models
        for seed in demo.budget.seeds
    }


def plot_losses(demo: Demo, path: Path) -> None:
    fig = Figure(figsize=(7, 4), layout="tight")
    ax = fig.subplots()
    for index, model in enumerate(demo.models):
        for seed in demo.budget.seeds:
            points = parse_losses(demo.run_dir(model, seed) / "out.log")
            if points:
                ax.plot(
                    *zip(*points, strict=True), color=f"C{index}", label=f"{model} (seed {seed})"
                )
    ax.set_xlabel("epoch")
    ax.set_ylabel("contrastive loss (rank 0 batch)")
    ax.legend()
    fig.savefig(path, dpi=120)


def plot_tasks(results: dict[str, Any], path: Path) -> None:
    datasets = list(next(iter(results.values())))
    fig = Figure(figsize=(11, 4.5), layout="tight")
    ax = fig.subplots()
    width = 0.8 / len(results)
    for index, (model, per_dataset) in enumerate(results.items()):
        means = [per_dataset[d]["mean"] for d in datasets]
        errors = [per_dataset[d]["std"] or 0.0 for d in datasets]
        positions = [i + (index - (len(results) - 1) / 2) * width for i in range(len(datasets))]
        ax.bar(positions, means, width, yerr=errors, label=model, color=f"C{index}")
    ax.set_xticks(
        range(len(datasets)), [d.split("/")[1] for d in datasets], rotation=30, ha="right"
    )
    ax.set_ylabel("task metric (see report)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.savefig(path, dpi=120)


def outcome(results: dict[str, Any], model: str, reference: str) -> str:
    """How ``model`` compares with ``reference`` over the data sets, in words."""
    differences = {
        dataset: entry["mean"] - results[reference][dataset]["mean"]
        for dataset, entry in results[model].items()
    }
    higher = sum(d > 0 for d in differences.values())
    lower = sum(d < 0 for d in differences.values())
    clear = [
        f"{dataset.split('/')[-1]} {100 * difference:+.1f}"
        for dataset, difference in differences.items()
        if results[model][dataset]["std"] is not None
        and abs(difference) > results[model][dataset]["std"] + results[reference][dataset]["std"]
    ]
    text = (
        f"{model} is higher than {reference} on {higher} of {len(differences)} test sets, "
        f"lower on {lower}"
    )
    if len(next(iter(results[model].values()))["per_seed"]) > 1:
        text += f", beyond the spread on {len(clear)}" + (f" ({', '.join(clear)})" if clear else "")
    return text


def write_report(demo: Demo) -> tuple[Path, Path]:
    results = collect(demo)
    figures = demo.out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    keep_earlier(demo.out, CHARTS)
    plot_losses(demo, figures / "losses.png")
    plot_tasks(results, figures / "tasks.png")
    training = training_seconds(demo)
    parameters = {model: parameter_count(model) for model in demo.models}
    num_slots = open_clip.get_model_config(SPARO)["sparo_cfg"]["num_slots"]
    manifest = demo.manifest()
    budget = demo.budget

    controls = [m for m in demo.models if m not in MODELS]
    comparisons = [outcome(results, m, BASELINE) for m in demo.models if m != BASELINE]
    comparisons += [outcome(results, SPARO, control) for control in controls]
    columns = [*demo.models, SELECTED]
    trained = "Both" if len(demo.models) == 2 else f"All {len(demo.models)}"
    lines = [
        "# SPARO demo: a tiny CLIP against its SPARO twin on a synthetic compositional world"
        if not controls
        else "# SPARO ablation: a tiny CLIP, its SPARO twin and the paper's controls on a "
        "synthetic compositional world",
        "",
        f"{trained} models trained on the same {budget.train_samples} synthetic image-caption "
        f"pairs for {budget.epochs} epochs ({budget.processes} processes x batch "
        f"{budget.batch_size}, lr {budget.lr}, seeds {list(budget.seeds)}), then evaluated with "
        f"`sparo eval` (CLIP_benchmark) on unseen test images ({budget.eval_samples} per set). "
        f"Colour-shape pairs held out of training: {', '.join(manifest['held_out_pairs'])}.",
        "",
        f"**Outcome** (means over seeds, table below): {'; '.join(comparisons)}; "
        f"with selected slots against all slots, {outcome(results, SELECTED, SPARO)}. "
        + (
            "With a single seed there is no spread: differences of a few points may be noise."
            if len(budget.seeds) == 1
            else "Cells show mean ± standard deviation over seeds; a difference is beyond the "
            "spread when it exceeds the two standard deviations added."
        ),
        "",
        f"| data set | task (metric) | {' | '.join(columns)} | slots chosen |",
        "| --- | --- |" + " --- |" * len(columns) + " --- |",
    ]
    for dataset, entry in results[BASELINE].items():
        chosen = [
            len(json.loads(demo.slots_file(dataset, seed).read_text())["slots"])
            for seed in demo.budget.seeds
        ]
        cells = " | ".join(format_cell(results[model][dataset], 100) for model in columns)
        lines.append(
            f"| {dataset} | {entry['task']} ({entry['metric']}) | {cells} | "
            f"{', '.join(map(str, chosen))} of {num_slots} |"
        )
    lines += [
        "",
        "Metrics in percent: zero-shot accuracy (`acc1`), recall@1 of the image for its "
        "caption, and image-caption selection accuracy (SugarCrepe layout: the true caption "
        "against one hard negative). Slots were chosen per task on the validation split by "
        "greedy forward selection (`sparo select`, this project's protocol) and evaluated on "
        "the test split.",
        "",
        "| model | parameters | training time (s) |",
        "| --- | --- | --- |",
        *(
            f"| {m} | {parameters[m]:,} | {', '.join(f'{t:.0f}' for t in training[m])} |"
            for m in demo.models
        ),
        "",
        "![training loss](figures/losses.png)",
        "",
        "![per-task results](figures/tasks.png)",
        "",
        "## Slot pictures",
        "",
        "Per slot: its attention over the image patches (red on a greyscale copy of the image) "
        "and over the caption tokens, for the slots that agree best between image and text.",
        "",
        *(
            f"![{p.stem}](figures/{p.name})"
            for p in sorted(figures.glob("*.png"))
            if p.name not in ("losses.png", "tasks.png")
        ),
        "",
    ]
    return publish(
        demo,
        lines,
        {"results": results, "parameters": parameters, "training_seconds": training},
        provenance(demo),
    )


def parse_losses(log: Path) -> list[tuple[float, float]]:
    """``(epoch progress, loss)`` points from open_clip_train's ``out.log``."""
    pattern = re.compile(r"Train Epoch: (\d+) \[\s*(\d+)/(\d+) .*?Contrastive_loss: ([0-9.eE+-]+)")
    points = []
    for line in log.read_text().splitlines():
        if match := pattern.search(line):
            epoch, done, total, loss = match.groups()
            points.append((int(epoch) + int(done) / int(total), float(loss)))
    return points
