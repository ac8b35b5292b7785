"""What the CLIP and DINO demo reports share: results over seeds, table cells, parameter counts,
training times, and writing a report without losing an earlier one."""

from __future__ import annotations

import json
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import open_clip
import torch

from ..util.files import write_json, write_text
from .runner import Demo


def over_seeds(values: list[float]) -> dict[str, Any]:
    """One result over seeds: every value, their mean and standard deviation (None for one)."""
    return {
        "per_seed": values,
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
    }


def parameter_count(model_name: str) -> int:
    with torch.device("meta"):
        model = open_clip.create_model(model_name, device="meta")
    return sum(p.numel() for p in model.parameters())


def format_cell(entry: dict[str, Any], scale: float = 1.0) -> str:
    """``mean`` (with ``± std`` when several seeds ran) of a result entry, times ``scale``."""
    if entry["std"] is None:
        return f"{scale * entry['mean']:.1f}"
    return f"{scale * entry['mean']:.1f} ± {scale * entry['std']:.1f}"


def training_seconds(demo: Demo) -> dict[str, list[float]]:
    """Per model, the wall time of its training on each seed."""
    return {
        model: [
            json.loads((demo.steps_dir / f"train-{model}-seed{s}.json").read_text())["seconds"]
            for s in demo.budget.seeds
        ]
        for model in demo.models
    }


def publish(
    demo: Demo, lines: list[str], results: dict[str, Any], provenance: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``results.json`` (with the budget and, per trained run, the
    provenance record of the checkpoint evaluated); :func:`keep_earlier` has moved earlier ones
    aside."""
    report, results_path = demo.out / "report.md", demo.out / "results.json"
    write_text(report, "\n".join(lines))
    budget = json.loads((demo.out / "budget.json").read_text())
    write_json(results_path, {"budget": budget, **results, "provenance": provenance})
    return report, results_path


def keep_earlier(out: Path, charts: Sequence[str]) -> None:
    """Move an earlier report of ``out`` aside under the first free index ``N``, so nothing is
    overwritten: ``report.N.md``, ``results.N.json`` and ``figures/<chart>.N.png``, the moved
    report's links pointing to its own charts."""
    report, results = out / "report.md", out / "results.json"
    if not (report.exists() or results.exists()):
        return

    def moved(path: Path, index: int) -> Path:
        return path.with_name(f"{path.stem}.{index}{path.suffix}")

    charts_paths = [out / "figures" / chart for chart in charts]
    index = 1
    while any(moved(p, index).exists() for p in [report, results, *charts_paths]):
        index += 1
    text = report.read_text() if report.exists() else None
    for chart in charts_paths:
        if chart.exists():
            target = moved(chart, index)
            shutil.move(chart, target)
            if text is not None:
                text = text.replace(f"(figures/{chart.name})", f"(figures/{target.name})")
    if text is not None:
        moved(report, index).write_text(text)
        report.unlink()
    if results.exists():
        shutil.move(results, moved(results, index))
    print(f"[demo] kept the earlier report and results as report.{index}.md, results.{index}.json")
