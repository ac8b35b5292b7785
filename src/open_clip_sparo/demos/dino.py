"""``sparo demo-dino``: DINO on the synthetic world, a class-token ViT against its SPARO twin.

Steps, each reused when its outputs exist (so an interrupted demo continues where it stopped):
generate the data (``sparo generate``); train the backbones ``ViT-Ti-8-64`` and
``sparo-ViT-Ti-8-64`` with ``torchrun -m open_clip_sparo.dino.train`` on the same unlabelled
images, budget and seeds; evaluate each teacher backbone, and for reference the same backbone at
its initialisation, by weighted k-NN (k = 20, T = 0.07) and a linear probe on every synthetic
classification task; write ``report.md`` and ``results.json``. An earlier report is kept under
a new name, never overwritten.

Each task's labelled ``val`` split is the k-NN memory and the probe's training set; its ``test``
split (other images, drawn from another seed) is what is classified. For the SPARO backbone,
slots are also chosen by k-NN accuracy within the ``val`` split (one seeded half queries the
other) and the chosen slots classify the ``test`` split.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..dino import build_student, load_backbone
from ..dino.evaluation import (
    extract_features,
    knn_accuracies,
    linear_probe_accuracies,
    select_on_memory,
)
from ..evaluation import fill_root
from ..util.files import write_json
from .dino_report import write_report
from .runner import MODELS, SMOKE_SCALE, Budget, Demo, run_demo

KNN_K, KNN_TEMPERATURE = 20, 0.07


@dataclass(frozen=True, kw_only=True)
class DinoBudget(Budget):
    """The DINO demo's budget: ``lr`` is DINO's ``--lr``, at a global batch of 256;
    ``eval_samples`` labelled images per task and split."""

    warmup_epochs: int
    momentum_teacher: float
    local_crops: int
    out_dim: int  # K, the DINO head's outputs
    head_hidden_dim: int
    head_bottleneck_dim: int
    head_use_bn: bool  # without it both backbones collapse on this world (docs/dino.md)


FULL = DinoBudget(
    train_samples=3200, shard_size=100, eval_samples=500, epochs=5, batch_size=32, processes=2,
    lr=2e-3, warmup_epochs=1, momentum_teacher=0.99, local_crops=4, out_dim=1024,
    head_hidden_dim=512, head_bottleneck_dim=128, head_use_bn=True, seeds=(0,),
)  # fmt: skip
BUDGETS: dict[str, Budget] = {
    "full": FULL,
    "smoke": replace(
        FULL, **SMOKE_SCALE, warmup_epochs=0, local_crops=2, out_dim=256, head_hidden_dim=64,
        head_bottleneck_dim=32, datasets=("wds/synth_color", "wds/synth_shape"),
    ),
}  # fmt: skip


class DinoDemo(Demo):
    """One DINO demo folder: ``data/``, ``runs/``, ``eval/``, ``figures/``, the report.

    Progress, cached steps, the data and the run folders are the CLIP demo's; the pipeline
    (training, evaluation, report) is DINO's.
    """

    budget: DinoBudget

    def tasks(self) -> list[str]:
        """The classification tasks this budget evaluates."""
        datasets = self.manifest()["datasets"]
        return [d for d, task in datasets.items() if task == "zeroshot_classification"]

    def split(self, dataset: str, split: str) -> str:
        """The shards of ``dataset``'s labelled ``split`` (CLIP_benchmark's ``wds`` layout)."""
        return str(Path(fill_root(dataset, self.manifest()["eval_roots"][split])) / "test")

    def eval_file(self, model: str, seed: int) -> Path:
        return self.out / "eval" / f"{model}-seed{seed}.json"

    def train(self, model: str, seed: int) -> dict[str, Any]:
        b = self.budget
        run = self.run_dir(model, seed)
        steps_per_epoch = b.train_samples // (b.batch_size * b.processes)
        args = [
            "--data", self.manifest()["train"]["shards"], "--backbone", model,
            "--output-dir", str(run), "--epochs", str(b.epochs),
            "--batch-size", str(b.batch_size), "--workers", "1", "--lr", str(b.lr),
            "--warmup-epochs", str(b.warmup_epochs), "--momentum-teacher", str(b.momentum_teacher),
            "--local-crops-number", str(b.local_crops), "--out-dim", str(b.out_dim),
            "--head-hidden-dim", str(b.head_hidden_dim),
            "--head-bottleneck-dim", str(b.head_bottleneck_dim),
            *(["--head-use-bn"] if b.head_use_bn else []),
            "--precision", "fp32", "--device", "cpu", "--seed", str(seed),
            "--save-frequency", str(b.epochs), "--log-every", str(max(1, steps_per_epoch // 5)),
        ]  # fmt: skip
        command = self.torchrun("open_clip_sparo.dino.train", run, args, f"DINO of {model}")
        return {"run": str(run), "command": command}

    def evaluate(self, model: str, seed: int) -> dict[str, Any]:
        """k-NN and linear probe of the trained teacher and of the initial backbone on every
        task, written to ``eval/<model>-seed<seed>.json``."""
        out = self.eval_file(model, seed)
        if out.exists():
            return {"results": str(out)}
        teacher, config = load_backbone(self.run_dir(model, seed), "teacher")
        backbones = {"init": build_student(config, seed).backbone, "dino": teacher}
        results: dict[str, Any] = {stage: {} for stage in backbones}
        for stage, backbone in backbones.items():
            for dataset in self.tasks():
                features = extract_features(
                    backbone, config, self.split(dataset, "val"), self.split(dataset, "test")
                )
                results[stage][dataset] = {
                    "num_train": features.info["num_train"],
                    "num_test": features.info["num_val"],
                    "classes": features.train_labels.unique().numel(),
                    "feature_dim": features.info["feature_dim"],
                    "knn": knn_accuracies(features, [KNN_K], KNN_TEMPERATURE)[str(KNN_K)],
                    "linear_probe": linear_probe_accuracies(features, seed=seed),
                }
                if num_slots := features.info["num_slots"]:
                    results[stage][dataset]["knn_selected"] = select_on_memory(
                        features, num_slots, KNN_K, KNN_TEMPERATURE, seed
                    )
                self.say(
                    f"  {model} ({stage}) {dataset}: k-NN "
                    f"{results[stage][dataset]['knn']['top1']:.1f}, linear probe "
                    f"{results[stage][dataset]['linear_probe']['top1']:.1f}"
                )
        write_json(out, results, overwrite=False)
        return {"results": str(out)}

    def run(self) -> Path:
        self.generate_and_train()
        for seed in self.budget.seeds:
            for model in MODELS:
                self.step(f"eval-{model}-seed{seed}", lambda m=model, s=seed: self.evaluate(m, s))
        return Path(self.step("report", self.write_report)["report"])

    def write_report(self) -> dict[str, Any]:
        report, results = write_report(self)
        return {"report": str(report), "results": str(results)}


def main(argv: list[str] | None = None) -> int:
    return run_demo(argv, "sparo demo-dino", __doc__, BUDGETS, DinoDemo, "runs/demo-dino")


if __name__ == "__main__":
    sys.exit(main())
