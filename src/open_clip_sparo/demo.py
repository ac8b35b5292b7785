"""``sparo demo``: the whole pipeline on the synthetic world, a plain CLIP against its SPARO twin.

Steps, each reused when its outputs exist (so an interrupted demo continues where it stopped):
generate the data (``sparo generate``); train ``ViT-Ti-8-64`` and ``sparo-ViT-Ti-8-64`` with
``torchrun -m training.main`` on the same data, budget and seeds; evaluate both on every test set
with ``sparo eval``; choose slots for each task on the validation split with ``sparo select`` and
evaluate them on the test split with ``sparo eval --slots``; draw slot pictures with
``sparo visualize``; write ``report.md`` and ``results.json``. An earlier report is kept under a
new name, never overwritten.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .cli import main as sparo
from .demo_report import MODELS, SPARO, TASK_METRICS, write_report


@dataclass(frozen=True, kw_only=True)
class Budget:
    """How much data and training one demo run uses (what the CLIP and DINO demos share)."""

    train_samples: int
    shard_size: int  # at least processes x 1 worker shards: open_clip_train asserts it
    eval_samples: int
    epochs: int
    batch_size: int  # per process
    processes: int
    lr: float
    seeds: tuple[int, ...]
    datasets: tuple[str, ...] | None = None  # evaluation sets to use; None: all


@dataclass(frozen=True, kw_only=True)
class ClipBudget(Budget):
    """The CLIP demo's budget."""

    warmup: int  # steps


BUDGETS: dict[str, Budget] = {
    "full": ClipBudget(
        train_samples=4800,
        shard_size=300,
        eval_samples=250,
        epochs=2,
        batch_size=32,
        processes=2,
        lr=1e-3,
        warmup=40,
        seeds=(0, 1),
    ),
    "smoke": ClipBudget(
        train_samples=128,
        shard_size=32,
        eval_samples=24,
        epochs=1,
        batch_size=16,
        processes=2,
        lr=1e-3,
        warmup=2,
        seeds=(0,),
        datasets=("wds/synth_color", "wds/synth_retrieval", "sugar_crepe/swap_att"),
    ),
}


class Demo:
    """One demo folder: ``data/``, ``runs/``, ``eval/``, ``slots/``, ``figures/``, the report."""

    budget: ClipBudget

    def __init__(self, out: Path, budget: Budget) -> None:
        self.out = out
        self.budget = budget
        self.steps_dir = out / "steps"
        self.started = time.monotonic()

    # -- bookkeeping ------------------------------------------------------------------------
    def say(self, message: str) -> None:
        minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
        print(f"[demo {minutes:02d}:{seconds:02d}] {message}", flush=True)

    def step(self, name: str, run: Any) -> dict[str, Any]:
        """Run ``run()`` once: its record (with the time taken) is kept in ``steps/<name>.json``."""
        marker = self.steps_dir / f"{name}.json"
        if marker.exists():
            self.say(f"{name}: done in an earlier run, reused")
            return json.loads(marker.read_text())
        self.say(f"{name} ...")
        start = time.monotonic()
        record = run() or {}
        record["seconds"] = round(time.monotonic() - start, 1)
        self.steps_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(record, indent=2))
        self.say(f"{name}: finished in {record['seconds']:.0f} s")
        return record

    def check(self, code: int, what: str) -> None:
        if code != 0:
            raise RuntimeError(f"{what} failed (exit status {code}); see the output above.")

    def torchrun(self, module: str, run: Path, args: list[str], what: str) -> list[str]:
        """``python -m module args`` on ``budget.processes`` CPU processes under torchrun, one
        thread each; a ``run`` folder left by an interrupted demo is resumed. The command."""
        resume = ["--resume", "latest"] if run.exists() else []
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += ["--nproc_per_node", str(self.budget.processes), "-m", module, *args, *resume]
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
        self.check(subprocess.run(command, env=env).returncode, what)
        return command

    # -- the pipeline -----------------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.out / "data"

    def manifest(self) -> dict[str, Any]:
        """The data manifest, its data sets narrowed to the budget's."""
        manifest = json.loads((self.data / "manifest.json").read_text())
        if self.budget.datasets is not None:
            manifest["datasets"] = {d: manifest["datasets"][d] for d in self.budget.datasets}
        return manifest

    def run_dir(self, model: str, seed: int) -> Path:
        return self.out / "runs" / f"{model}-seed{seed}"

    def generate(self) -> dict[str, Any]:
        b = self.budget
        self.check(
            sparo(
                ["generate", "--out", str(self.data), "--train-samples", str(b.train_samples)]
                + ["--eval-samples", str(b.eval_samples), "--shard-size", str(b.shard_size)]
                + ["--seed", "0"]
            ),
            "sparo generate",
        )
        return {"manifest": str(self.data / "manifest.json")}

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
        self.step("generate", self.generate)
        for seed in self.budget.seeds:
            for model in MODELS:
                self.step(f"train-{model}-seed{seed}", lambda m=model, s=seed: self.train(m, s))
        for seed in self.budget.seeds:
            for model in MODELS:
                self.step(f"eval-{model}-seed{seed}", lambda m=model, s=seed: self.evaluate(m, s))
            for dataset in self.manifest()["datasets"]:
                name = f"select-{dataset.replace('/', '_')}-seed{seed}"
                self.step(name, lambda d=dataset, s=seed: {"slots": str(self.select(d, s))})
            self.step(f"eval-selection-seed{seed}", lambda s=seed: self.evaluate_selection(s))
        self.step("visualize", self.visualize)
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
        return {"report": str(report), "results": str(results)}


def run_demo(
    argv: list[str] | None,
    prog: str,
    description: str | None,
    budgets: dict[str, Budget],
    demo_class: type[Demo],
    default_out: str,
) -> int:
    """The command line shared by the demos: ``--out`` (reused if it exists) and ``--budget``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=default_out, help="demo folder (reused if it exists)")
    parser.add_argument("--budget", default="full", choices=sorted(budgets))
    args = parser.parse_args(argv)
    out = Path(args.out)
    budget = budgets[args.budget]
    settings = out / "budget.json"
    recorded = json.loads(json.dumps(asdict(budget)))  # tuples as JSON lists
    if settings.exists() and json.loads(settings.read_text()) != recorded:
        raise ValueError(
            f"{out} holds a demo run with another budget ({settings}); choose another --out."
        )
    out.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(recorded, indent=2))
    report = demo_class(out, budget).run()
    print(f"report: {report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_demo(argv, "sparo demo", __doc__, BUDGETS, Demo, "runs/demo")
