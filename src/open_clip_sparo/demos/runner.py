"""The runner the CLIP and DINO demos share: a demo folder whose steps run once, are recorded
and are reused by a rerun, and the command line ``--out`` / ``--budget``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..cli import main as sparo
from ..util.files import write_json
from ..util.run_folder import claim_run_folder

BASELINE, SPARO = "ViT-Ti-8-64", "sparo-ViT-Ti-8-64"
MODELS = (BASELINE, SPARO)
# the smoke budgets' scale, shared by both demos (what `make test` runs end to end)
SMOKE_SCALE = {
    "train_samples": 128,
    "shard_size": 32,
    "eval_samples": 24,
    "epochs": 1,
    "batch_size": 16,
    "seeds": (0,),
}


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


class Demo(ABC):
    """The runner both demos share: one demo folder (``data/``, ``runs/``, ``steps/``, ...),
    progress lines, steps recorded once and reused, torchrun, and the synthetic data."""

    budget: Budget
    models: tuple[str, ...] = MODELS  # what the demo trains, in its report's order

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The demo's own command-line options (none by default)."""
        return None

    @classmethod
    def from_args(cls, out: Path, budget: Budget, args: argparse.Namespace) -> Demo:
        return cls(out, budget)

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
        write_json(marker, record)
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

    def generate_and_train(self) -> None:
        """The steps both demos begin with: the data, then every model on every seed."""
        self.step("generate", self.generate)
        for seed in self.budget.seeds:
            for model in self.models:
                self.step(f"train-{model}-seed{seed}", lambda m=model, s=seed: self.train(m, s))

    @abstractmethod
    def train(self, model: str, seed: int) -> dict[str, Any]:
        """Train ``model`` with ``seed`` into :meth:`run_dir`; the step's record."""

    @abstractmethod
    def run(self) -> Path:
        """Every step of the demo; the report's path."""

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
    demo_class.add_arguments(parser)
    args = parser.parse_args(argv)
    out = Path(args.out)
    budget = budgets[args.budget]
    claim_run_folder(
        out,
        "budget.json",
        json.loads(json.dumps(asdict(budget))),  # tuples as JSON lists
        what="demo folder",
        fix="choose another --out (a new folder, or the folder of an earlier demo run with this "
        "--budget to continue it).",
    )
    report = demo_class.from_args(out, budget, args).run()
    print(f"report: {report}")
    return 0
