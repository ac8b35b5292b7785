"""The picture of a concept search: the metric against the number of slots."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from matplotlib.figure import Figure


def plot_steps(result: dict[str, Any], path: Path | IO[bytes]) -> None:
    """PNG of the metric against the number of slots on both parts, with the choice marked,
    to a file name or an open binary file."""
    sizes = [len(step["slots"]) for step in result["steps"]]
    metric = result["metric"]
    fig = Figure(figsize=(7, 4.5), layout="tight")
    ax = fig.subplots()
    ax.plot(sizes, [s["selection"] for s in result["steps"]], "o-", ms=3, label="selection part")
    ax.plot(sizes, [s["report"] for s in result["steps"]], "s-", ms=3, label="report part")
    for color, part in (("C0", "selection"), ("C1", "report")):
        all_slots = result[part]["all_slots"][metric]
        ax.axhline(all_slots, color=color, ls=":", lw=1, label=f"all slots, {part} part")
    ax.axvline(len(result["slots"]), color="0.4", ls="--", lw=1, label="chosen")
    ax.set_xlabel("number of slots")
    ax.set_ylabel(metric)
    title = f"{result['protocol']['search']} selection on {result['dataset']} ({result['task']})"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
