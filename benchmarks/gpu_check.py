"""One command that proves a CUDA GPU (``make gpu-check``): SPARO against OpenCLIP, under 8 minutes.

    python -m benchmarks.gpu_check [--device cuda] [--out DIR] [--docs FILE]
    python -m benchmarks.gpu_check --device cpu --smoke   # every code path at tiny sizes

Each part runs SPARO and its OpenCLIP baseline in the same process (or, for the training runs,
one after the other on the same shards and settings) and reports ratios:

1. the ``make bench`` set (read-out, training step, inference) in fp32 and bf16 autocast;
2. ``torchrun --nproc_per_node 1 -m training.main`` runs (NCCL on CUDA, gloo on CPU) of
   sparo-ViT-B-16 and ViT-B-16 on synthetic shards, per-GPU batch 256, ``--precision
   amp_bf16``, eager and ``--torchcompile``: samples/s, step time, peak memory; every logged
   loss finite; the compiled run's first loss equal to the eager run's within bf16 tolerance;
3. one DINO training step (multi-crop, bf16 autocast) of sparo-ViT-S-16 against ViT-S-16;
4. the finite-loss check: training steps with the check on against off, and against the host
   reading the loss every step.

Writes ``gpu_check-<device>.json`` beside the bench set's result files, re-renders
docs/performance.md from the folder, and exits with status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from open_clip.loss import ClipLoss

from benchmarks import inference, readout, report, train_step
from benchmarks.common import (
    autocast,
    format_ratios,
    parse_device,
    peak_memory,
    result_path,
    run_header,
    summarize,
    tensor_bytes,
    time_interleaved,
    time_ratios,
    write_result,
)
from benchmarks.models import build_pair, make_batch
from benchmarks.shards import write_shards
from open_clip_sparo.dino.augment import default_local_size
from open_clip_sparo.dino.backbone import build_backbone
from open_clip_sparo.dino.configs import get_backbone_cfg
from open_clip_sparo.dino.head import DinoHead
from open_clip_sparo.dino.loss import DinoLoss
from open_clip_sparo.dino.model import DinoModel
from open_clip_sparo.dino.train import LOSS_CAUSES, Trainer, param_groups
from open_clip_sparo.util.loss_watch import NonFiniteLossWatch

BF16_RTOL = 1.6e-2  # torch.testing's relative tolerance for bfloat16
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    """What one gpu-check run measures, at full or smoke size."""

    clip_pair: tuple[str, str]
    dino_pair: tuple[str, str]
    batch: int  # per-GPU batch of the training runs
    steps: int  # training steps of each run
    warmup_steps: int  # first steps left out of the timing (start-up, compilation)
    workers: int  # data loader workers of each training run
    image_size: tuple[int, int]  # JPEG width, height in the shards
    dino_batch: int
    dino_local_crops: int
    dino_out_dim: int
    loss_check_batch: int
    steps_per_call: int  # training steps per timed call of the finite-loss check
    repeats: int
    bench_args: tuple[str, ...]  # extra arguments of the bench set


FULL = Sizes(
    clip_pair=("sparo-ViT-B-16", "ViT-B-16"),
    dino_pair=("sparo-ViT-S-16", "ViT-S-16"),
    batch=256,
    steps=40,
    warmup_steps=15,
    workers=8,
    image_size=(256, 256),  # small JPEGs: the data loader must not be what is timed
    dino_batch=64,
    dino_local_crops=8,
    dino_out_dim=65536,
    loss_check_batch=128,
    steps_per_call=10,
    repeats=10,
    bench_args=(),
)
TINY_PAIR = ("sparo-ViT-Ti-8-64", "ViT-Ti-8-64")
SMOKE = Sizes(
    clip_pair=TINY_PAIR,
    dino_pair=TINY_PAIR,
    batch=4,
    steps=3,
    warmup_steps=1,
    workers=1,
    image_size=(80, 60),
    dino_batch=2,
    dino_local_crops=1,
    dino_out_dim=256,
    loss_check_batch=2,
    steps_per_call=2,
    repeats=1,
    bench_args=("--warmup", "0"),
)
SMOKE_READOUT = (
    *("--batch", "2", "--num-slots", "4", "--slot-dim", "3", "--attn-dim", "8"),
    *("--vision-tokens", "17", "--vision-width", "32", "--text-tokens", "9", "--text-width", "16"),
)
SMOKE_MODELS = ("--pairs", ":".join(TINY_PAIR), "--batch", "2")
LOG_LINE = re.compile(
    r"Data \(t\): ([\d.]+) Batch \(t\): ([\d.]+), ([\d.]+)/s.* Loss: (\S+) \("
)  # open_clip_train's log line, one per step at --log-every-n-steps 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the code paths")
    report.add_output_args(parser)
    return parser.parse_args(argv)


def run_bench_set(args: argparse.Namespace, sizes: Sizes) -> None:
    """The ``make bench`` benchmarks on this device, fp32 and bf16 autocast."""
    common = ["--device", args.device.type, "--out", str(args.out), "--precisions", "fp32"]
    common += ["bf16", *sizes.bench_args, *(["--overwrite"] if args.overwrite else [])]
    smoke = args.smoke
    readout.main([*(SMOKE_READOUT if smoke else ()), *common])
    for benchmark in (train_step, inference):
        benchmark.main([*(SMOKE_MODELS if smoke else ()), *common])


def training_argv(
    model: str, shards: str, logs: Path, name: str, sizes: Sizes, device: torch.device
) -> list[str]:
    """open_clip_train arguments of one timed run: one epoch of ``sizes.steps`` steps."""
    return [
        *("--train-data", shards, "--dataset-type", "webdataset", "--dataset-resampled"),
        *("--train-num-samples", str(sizes.batch * sizes.steps), "--model", model),
        *("--batch-size", str(sizes.batch), "--epochs", "1", "--lr", "5e-4", "--warmup", "10"),
        *("--wd", "0.1", "--precision", "amp_bf16", "--workers", str(sizes.workers)),
        *("--device", device.type, "--dist-backend", "nccl" if device.type == "cuda" else "gloo"),
        *("--logs", str(logs), "--name", name, "--log-every-n-steps", "1", "--seed", "0"),
    ]


def training_run(argv: list[str], record: Path, log: Path) -> dict[str, Any]:
    """One ``torchrun --nproc_per_node 1`` training run: per-step times, losses, peak memory."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    command += ["1", "-m", "benchmarks.training_run", str(record), "--", *argv]
    paths = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"training run failed ({' '.join(argv)}):\n{done.stderr[-4000:]}")
    steps = [
        {"data_seconds": float(d), "step_seconds": float(b), "samples_per_second": float(s),
         "loss": float(loss)}
        for d, b, s, loss in LOG_LINE.findall(log.read_text())
    ]  # fmt: skip
    return {"steps": steps, **json.loads(record.read_text())}


def compare_training(
    runs: dict[str, dict[str, Any]], model: str, baseline: str, warmup_steps: int
) -> dict[str, Any]:
    """Median step time, samples/s and peak memory of two runs, as ratios ``model / baseline``."""
    timed = {name: run["steps"][warmup_steps:] for name, run in runs.items()}
    step_time = {
        name: summarize([s["step_seconds"] for s in steps]) for name, steps in timed.items()
    }
    throughput = {
        name: summarize([s["samples_per_second"] for s in steps]) for name, steps in timed.items()
    }
    losses = {name: [s["loss"] for s in run["steps"]] for name, run in runs.items()}
    return {
        "pair": [model, baseline],
        "precision": "amp_bf16",
        "step_seconds": step_time,
        "samples_per_second": throughput,
        "data_seconds": {
            name: summarize([s["data_seconds"] for s in steps]) for name, steps in timed.items()
        },
        "peak_bytes": {name: run["peak_bytes"] for name, run in runs.items()},
        "peak_measure": runs[model]["peak_measure"],
        "losses": losses,
        "ratios": {
            "step_time": step_time[model]["median"] / step_time[baseline]["median"],
            "throughput": throughput[model]["median"] / throughput[baseline]["median"],
            "memory": runs[model]["peak_bytes"] / runs[baseline]["peak_bytes"],
            "non_finite_losses": sum(
                not math.isfinite(loss) for values in losses.values() for loss in values
            ),
        },
    }


def run_training(args: argparse.Namespace, sizes: Sizes, work: Path) -> list[dict[str, Any]]:
    """The SPARO model and its baseline, eager then compiled, on the same shards."""
    shards = write_shards(work / "shards", 8, sizes.batch, sizes.image_size)
    model, baseline = sizes.clip_pair
    results = []
    for case, extra in (("training eager", []), ("training compiled", ["--torchcompile"])):
        runs = {}
        for name in (model, baseline):
            run_name = f"{name}-{'compiled' if extra else 'eager'}"
            argv = training_argv(name, shards, work / "logs", run_name, sizes, args.device)
            record, log = work / f"{run_name}.json", work / "logs" / run_name / "out.log"
            runs[name] = training_run([*argv, *extra], record, log)
        result = {"case": case, **compare_training(runs, model, baseline, sizes.warmup_steps)}
        print(f"{case} {model} / {baseline}: {format_ratios(result['ratios'])}")
        results.append(result)
    eager, compiled = results
    difference = max(
        abs(compiled["losses"][name][0] - eager["losses"][name][0]) / abs(eager["losses"][name][0])
        for name in (model, baseline)
    )
    compiled["ratios"]["first_loss_difference"] = difference  # relative, compiled vs eager
    print(f"compiled vs eager, first loss: relative difference {difference:.2e}")
    return results


def dino_trainer(backbone_name: str, sizes: Sizes, device: torch.device) -> Trainer:
    """A DINO trainer as ``dino.train`` builds one: student, EMA teacher, loss, AdamW."""
    torch.manual_seed(0)
    backbone = build_backbone(get_backbone_cfg(backbone_name))
    student = DinoModel(backbone, DinoHead(backbone.output_dim, sizes.dino_out_dim)).to(device)
    teacher = copy.deepcopy(student).requires_grad_(False).eval()
    return Trainer(
        student=student,
        teacher=teacher,
        dino_loss=DinoLoss(sizes.dino_out_dim).to(device),
        optimizer=torch.optim.AdamW(param_groups(student)),
        scaler=None,
        precision="amp_bf16",
        clip_grad=3.0,
    )


def run_dino(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    """One DINO step (2 global + local crops, bf16 autocast) of each backbone."""
    model, baseline = sizes.dino_pair
    vision_cfg = get_backbone_cfg(model).vision_cfg
    global_size = vision_cfg.get("image_size", 224)
    local_size = default_local_size(global_size, vision_cfg.get("patch_size", 16))
    crops = [torch.randn(sizes.dino_batch, 3, global_size, global_size, device=args.device)] * 2
    crops += [torch.randn(sizes.dino_batch, 3, local_size, local_size, device=args.device)] * (
        sizes.dino_local_crops
    )
    trainers = {name: dino_trainer(name, sizes, args.device) for name in (model, baseline)}
    losses: dict[str, list[float]] = {name: [] for name in trainers}

    def step(name: str) -> Callable[[], None]:
        def run() -> None:
            loss = trainers[name].step(crops, 5e-4, 0.04, 0.996, 0.04, False)
            losses[name].append(loss)

        return run

    steps = {name: step(name) for name in trainers}
    static = {
        name: tensor_bytes(t.student) + tensor_bytes(t.teacher) for name, t in trainers.items()
    }
    memory = {name: static[name] + peak_memory(steps[name], args.device) for name in steps}
    times, cpu_times = time_interleaved(steps, sizes.repeats, 1, args.device)
    values = {name: [float(loss) for loss in values] for name, values in losses.items()}
    result = {
        "case": "DINO step",
        "pair": [model, baseline],
        "precision": "bf16",
        "batch": sizes.dino_batch,
        "crops": [global_size] * 2 + [local_size] * sizes.dino_local_crops,
        "seconds": times,
        "time": {name: summarize(values) for name, values in times.items()},
        "peak_bytes": memory,
        "losses": values,
        "ratios": {
            **time_ratios(times, cpu_times, model, baseline),
            "memory": memory[model] / memory[baseline],
            "non_finite_losses": sum(
                not math.isfinite(loss) for losses in values.values() for loss in losses
            ),
        },
    }
    print(f"DINO step {model} / {baseline}: {format_ratios(result['ratios'])}")
    return result


def run_loss_check(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    """Training steps (forward, ClipLoss, backward) with the finite-loss check off, on (the
    device-side watch), and with the host reading the loss every step."""
    model_name = sizes.clip_pair[0]
    model = build_pair((model_name, model_name), args.device)[model_name].train()
    images, text = make_batch(model, model_name, sizes.loss_check_batch, args.device)
    loss_fn = ClipLoss()
    watch = NonFiniteLossWatch(sizes.steps_per_call, 0, LOSS_CAUSES)

    def steps(check: str) -> Callable[[], None]:
        def run() -> None:
            for step in range(sizes.steps_per_call):
                with autocast(args.device, "bf16"):
                    loss = loss_fn(*model(images, text))
                if check == "on":
                    watch.watch(loss, step)
                elif check == "host read":
                    math.isfinite(loss.item())
                loss.backward()
                model.zero_grad(set_to_none=True)
            if check == "on":
                watch.check(sizes.steps_per_call - 1, lambda: "nothing saved")

        return run

    modes = {mode: steps(mode) for mode in ("off", "on", "host read")}
    times, cpu_times = time_interleaved(modes, sizes.repeats, 1, args.device)
    result = {
        "case": "finite-loss check",
        "model": model_name,
        "precision": "bf16",
        "batch": sizes.loss_check_batch,
        "steps_per_call": sizes.steps_per_call,
        "seconds": times,
        "time": {name: summarize(values) for name, values in times.items()},
        "ratios": {
            "time": time_ratios(times, cpu_times, "on", "off")["time"],
            "host_read_time": time_ratios(times, cpu_times, "host read", "off")["time"],
        },
    }
    print(f"finite-loss check on / off: {format_ratios(result['ratios'])}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.device = parse_device(args.device)
    sizes = SMOKE if args.smoke else FULL
    path = result_path(args.out, "gpu_check", args.device, args.overwrite)
    run_bench_set(args, sizes)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        results = run_training(args, sizes, Path(work))
    results += [run_dino(args, sizes), run_loss_check(args, sizes)]
    settings = {
        "smoke": args.smoke,
        "repeats": sizes.repeats,
        "warmup": 1,
        "sizes": {k: v for k, v in vars(sizes).items() if k != "bench_args"},
        "step": "see each result's case",
    }
    header = run_header("gpu_check", argv, args.device, settings)
    write_result(path, {**header, "results": results})
    return report.main(["--results", str(args.out), "--docs", str(args.docs)])


if __name__ == "__main__":
    raise SystemExit(main())
