"""``sparo demo``: the whole pipeline on the synthetic world, a plain CLIP against its SPARO twin.

Steps, each reused when its outputs exist (so an interrupted demo continues where it stopped):
generate the data (``sparo generate``); train ``ViT-Ti-8-64`` and ``sparo-ViT-Ti-8-64`` with
``torchrun -m training.main`` on the same data, budget and seeds; evaluate both on every test set
with ``sparo eval``; choose slots for each task on the validation split with ``sparo select`` and
evaluate them on the test split with ``sparo eval --slots``; draw slot pictures with
``sparo visualize``; write ``report.md`` and ``results.json``. An earlier report is kept under a
new name, never overwritten.

``--models`` adds the paper's controls (``gap-``, ``bottleneck-``, ``codebook-ViT-Ti-8-64``) to
the two models, trained and evaluated the same way and reported side by side (the ablation)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..cli import main as sparo
from .clip_report import TASK_METRICS, write_report
from .runner import BASELINE, MODELS, SMOKE_SCALE, SPARO, Budget, Demo, run_demo

CONTROLS = ("gap-ViT-Ti-8-64", "bottleneck-ViT-Ti-8-64", "codebook-ViT-Ti-8-64")


@dataclass(frozen=True, kw_only=True)
class ClipBudget(Budget):
    """The CLIP demo's budget."""

    warmup: int  # steps


FULL = ClipBudget(
    train_samples=4800, shard_size=300, eval_samples=250, epochs=2, batch_size=32, processes=2,
    lr=1e-3, warmup=40, seeds=(0, 1),
)  # fmt: skip
BUDGETS: dict[str, Budget] = {
    "full": FULL,
    "smoke": replace(
        FULL, **SMOKE_SCALE, warmup=2,
        datasets=("wds/synth_color", "wds/synth_retrieval", "sugar_crepe/swap_att"),
    ),
}  # fmt: skip


class ClipDemo(Demo):
    """One CLIP demo folder: ``data/``, ``runs/``, ``eval/``, ``slots/``, ``figures/``, report."""

    budget: ClipBudget

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--models",
            nargs="+",
            default=list(MODELS),
            choices=[*MODELS, *CONTROLS],
            metavar="MODEL",
            help=f"models to train and compare (default: {' '.join(MODELS)}); both of these and "
            f"any of the controls {', '.join(CONTROLS)}",
        )

    @classmethod
    def from_args(cls, out: Path, budget: Budget, args: argparse.Namespace) -> ClipDemo:
        missing = [m for m in MODELS if m not in args.models]
        if missing:
            raise ValueError(
                f"--models lacks {missing}: the report compares every model with {BASELINE} and "
                f"selects slots of {SPARO}; add them."
            )
        demo = cls(out, budget)  # type: ignore[arg-type]
        demo.models = tuple(dict.fromkeys([*MODELS, *args.models]))  # baseline, SPARO, controls
        return demo

    def train(self, model: str, seed: int) -> dict[str, Any]:
        b, manifest = self.budget, self.manifest()
        run = self.run_dir(model, seed)
        steps_per_epoch = b.train_samples // (b.batch_size * b.processes)
        args = [
            "--", "--model", model, "--train-data", manifest["train"]["shards"],
            "--train-num-samples", str(b.train_samples), "--dataset-type", "webdataset",
            "--batch-size", str(b.batch_size), "--epochs", str(b.epochs), "--lr", str(b.lr),
            "--warmup", str(b.warmup), "--wd", "0.1", "--precision", "fp32", "--device", "cpu",
            "--workers", "1", "--seed", str(seed), "--logs", str(run.parent), "--name", run.name,
            "--log-every-n-steps", str(max(1, steps_per_epoch // 10)), "--save-most-recent",
        ]  # fmt: skip
        if model == SPARO:
            args += ["--log-slot-stats", str(max(1, steps_per_epoch // 2))]
        command = self.torchrun("training.main", run, args, f"training {model}")
        return {"run": str(run), "command": command}

    def sparo_eval(
        self, label: str, run: Path, datasets: list[str], task: str, slots: Path | None = None
    ) -> None:
        """``sparo eval`` of ``run`` on test sets; results in ``eval/<label>/<dataset>.json``."""
        argv = ["eval", "--model", str(run), "--dataset", *datasets, "--task", task]
        argv += ["--dataset_root", self.manifest()["eval_roots"]["test"], "--no_amp"]
        argv += ["--batch_size", "128", "--num_workers", "0", "--quiet", "--skip_existing"]
        argv += [
            "--recall_k",
            "1",
            "5",
            "--output",
            str(self.out / "eval" / label / "{dataset}.json"),
        ]
        if slots is not None:
            argv += ["--slots", str(slots)]
        self.check(sparo(argv), f"sparo eval of {label} on {', '.join(datasets)}")

    def evaluate(self, model: str, seed: int) -> None:
        """Every test set, in one call per task kind (``auto`` cannot tell wds retrieval)."""
        datasets = self.manifest()["datasets"]
        retrieval = [d for d, t in datasets.items() if t == "zeroshot_retrieval"]
        others = [d for d in datasets if d not in retrieval]
        run = self.run_dir(model, seed)
        self.sparo_eval(f"{model}-seed{seed}", run, others, "auto")
        self.sparo_eval(f"{model}-seed{seed}", run, retrieval, "zeroshot_retrieval")

    def evaluate_selection(self, seed: int) -> None:
        """Each test set on the slots chosen for it."""
        for dataset, task in self.manifest()["datasets"].items():
            self.sparo_eval(
                f"{SPARO}-selection-seed{seed}",
                self.run_dir(SPARO, seed),
                [dataset],
                "zeroshot_retrieval" if task == "zeroshot_retrieval" else "auto",
                self.slots_file(dataset, seed),
            )

    def result_file(self, label: str, dataset: str) -> Path:
        """Where ``sparo eval`` writes ``dataset`` (CLIP_benchmark's ``{dataset}`` slug)."""
        return self.out / "eval" / label / f"{dataset.removeprefix('wds/').replace('/', '_')}.json"

    def slots_file(self, dataset: str, seed: int) -> Path:
        return self.out / "slots" / f"seed{seed}" / f"{dataset.replace('/', '_')}.json"

    def select(self, dataset: str, seed: int) -> Path:
        manifest = self.manifest()
        run = self.run_dir(SPARO, seed)
        out = self.slots_file(dataset, seed)
        task = manifest["datasets"][dataset]
        if not out.exists():
            self.check(
                sparo(
                    ["select", "--model", str(run), "--dataset", dataset, "--task", task]
                    + ["--metric", TASK_METRICS[task], "--recall_k", "1"]
                    + ["--dataset_root", manifest["eval_roots"]["test"]]
                    + ["--selection_dataset_root", manifest["eval_roots"]["val"]]
                    + ["--device", "cpu", "--batch_size", "128", "--out", str(out)]
                    + ["--cache_dir", str(self.out / "cache")]
                ),
                f"sparo select on {dataset}",
            )
        return out

    def run(self) -> Path:
        self.generate_and_train()
        for seed in self.budget.seeds:
            for model in self.models:
                self.step(f"eval-{model}-seed{seed}", lambda m=model, s=seed: self.evaluate(m, s))
            for dataset in self.manifest()["datasets"]:
                name = f"select-{dataset.replace('/', '_')}-seed{seed}"
                self.step(name, lambda d=dataset, s=seed: {"slots": str(self.select(d, s))})
            self.step(f"eval-selection-seed{seed}", lambda s=seed: self.evaluate_selection(s))
        self.step("visualize", self.visualize)
        marker = self.steps_dir / "report.json"
        reported = json.loads(marker.read_text()) if marker.exists() else None
        if reported is not None and reported.get("models", list(MODELS)) != list(self.models):
            marker.unlink()  # reported for other models: report again (the earlier one is kept)
        return self.step("report", self.write_report)["report"]

    def visualize(self) -> dict[str, Any]:
        manifest = self.manifest()
        figures = self.out / "figures"
        if not figures.exists():
            self.check(
                sparo(
                    ["visualize", "--model", str(self.run_dir(SPARO, self.budget.seeds[0]))]
                    + ["--dataset", "wds/synth_retrieval", "--task", "zeroshot_retrieval"]
                    + ["--dataset_root", manifest["eval_roots"]["test"], "--num_samples", "3"]
                    + ["--device", "cpu", "--out", str(figures)]
                ),
                "sparo visualize",
            )
        return {"figures": sorted(str(p) for p in figures.glob("*.png"))}

    def write_report(self) -> dict[str, Any]:
        report, results = write_report(self)
        record = {"report": str(report), "results": str(results)}
        return record if self.models == MODELS else {**record, "models": [*self.models]}


def main(argv: list[str] | None = None) -> int:
    return run_demo(argv, "sparo demo", __doc__, BUDGETS, ClipDemo, "runs/demo")
