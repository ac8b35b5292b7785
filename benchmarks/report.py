"""Check the performance targets and render ``docs/performance.md`` from the results.

Reads every ``<benchmark>-<device>.json`` in the results folder; every number on the page comes
from those files. Exits with status 1 when a target is missed.

    python -m benchmarks.report [--results DIR] [--docs FILE]
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR

DOCS_PATH = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
BENCHMARKS = ("readout", "train_step", "inference", "data_pipeline", "applications", "gpu_check")
MIB = 2**20


@dataclass(frozen=True)
class Target:
    """``ratios[metric] <= limit`` (``>=`` when ``at_least``) for every result of ``benchmark``
    whose ``key`` is ``value``."""

    label: str
    benchmark: str
    key: str
    value: Any
    metric: str
    limit: float
    at_least: bool = False

    @property
    def bound(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.limit}"

    def met(self, value: float) -> bool:
        return value >= self.limit if self.at_least else value <= self.limit


GPU_PAIR = "sparo-ViT-B-16 / ViT-B-16"


TARGETS = (
    Target(
        "read-out FLOPs, Sparo / naive, vision sizes", "readout", "case", "vision", "flops", 0.04
    ),
    *(
        Target(
            f"train step {metric}, sparo-ViT-B-16 / ViT-B-16",
            "train_step",
            "pair",
            ["sparo-ViT-B-16", "ViT-B-16"],
            metric,
            limit,
        )
        for metric, limit in (("time", 0.92), ("flops", 0.92), ("memory", 1.0))
    ),
    *(
        Target(f"{case}, {GPU_PAIR}: {label}", "gpu_check", "case", case, metric, limit, at_least)
        for case in ("training eager", "training compiled")
        for label, metric, limit, at_least in (
            ("step time", "step_time", 0.93, False),
            ("samples/s", "throughput", 1.07, True),
            ("peak memory", "memory", 1.0, False),
            ("non-finite losses", "non_finite_losses", 0, False),
        )
    ),
    Target(
        "training data, samples/s, project / open_clip_train pipeline",
        "data_pipeline",
        "image_size",
        [500, 375],
        "throughput",
        0.98,
        at_least=True,
    ),
    Target(
        "concept selection, ImageNet zero-shot (50,000 images, forward to 64 slots): minutes",
        "applications",
        "items",
        50_000,
        "minutes",
        15,
    ),
    Target(
        "concept selection, ImageNet zero-shot (50,000 images, forward to 64 slots): GiB",
        "applications",
        "items",
        50_000,
        "total_gib",
        8,
    ),
    Target(
        "DINO k-NN, 1,280,000-item memory bank: GiB",
        "applications",
        "items",
        1_280_000,
        "total_gib",
        4,
    ),
    Target(
        "training compiled: first loss against eager (relative difference, bf16 tolerance)",
        "gpu_check",
        "case",
        "training compiled",
        "first_loss_difference",
        0.016,
    ),
    Target(
        "DINO step, sparo-ViT-S-16 / ViT-S-16: non-finite losses",
        "gpu_check",
        "case",
        "DINO step",
        "non_finite_losses",
        0,
    ),
    Target(
        "finite-loss check, on / off: step time",
        "gpu_check",
        "case",
        "finite-loss check",
        "time",
        1.02,
    ),
)


@dataclass(frozen=True)
class Check:
    """One target against one measured result; ``value`` is None when nothing matched."""

    target: Target
    device: str = "-"
    precision: str = "-"
    value: float | None = None

    @property
    def status(self) -> str:
        if self.value is None:
            return "not measured"
        return "met" if self.target.met(self.value) else "missed"


def load_runs(results_dir: Path) -> list[dict[str, Any]]:
    """Every result file in the folder, in benchmark then device order."""
    runs = []
    for benchmark in BENCHMARKS:
        for path in sorted(results_dir.glob(f"{benchmark}-*.json")):
            run = json.loads(path.read_text())
            run["file"] = _display_path(path)
            runs.append(run)
    return runs


def _display_path(path: Path) -> str:
    path = path.resolve()
    root = DOCS_PATH.parents[1]
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def check_targets(runs: list[dict[str, Any]]) -> list[Check]:
    checks = []
    for target in TARGETS:
        matched = [
            Check(
                target,
                run["machine"]["device"],
                result.get("precision", "-"),
                _median(result, target),
            )
            for run in runs
            if run["benchmark"] == target.benchmark
            for result in run["results"]
            if result[target.key] == target.value
        ]
        checks += matched or [Check(target)]
    return checks


def _median(result: dict[str, Any], target: Target) -> float:
    ratios = result.get("ratios", {})
    value = ratios[target.metric] if target.metric in ratios else result[target.metric]
    return value["median"] if isinstance(value, dict) else value


def _ratio(value: float | dict[str, float]) -> str:
    if isinstance(value, dict):
        return f"{value['median']:.3f} [{value['min']:.3f}, {value['max']:.3f}]"
    return f"{value:.4f}" if value < 0.1 else f"{value:.3f}"


def _cpu_time_ratio(result: dict[str, Any]) -> str:
    return _ratio(result["ratios"]["cpu_time"]) if "cpu_time" in result["ratios"] else "-"


def _seconds(summary: dict[str, float]) -> str:
    scale, unit = (1e3, "ms") if summary["median"] < 1 else (1.0, "s")
    median, low, high = (summary[k] * scale for k in ("median", "min", "max"))
    return f"{_digits(median)} {unit} [{_digits(low)}, {_digits(high)}]"


def _digits(value: float) -> str:
    """Three significant digits, never in exponent notation."""
    return f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}" if value else "0"


def _gflops(flops: int) -> str:
    return f"{flops / 1e9:.2f}"


def _mib(num_bytes: int) -> str:
    return f"{num_bytes / MIB:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _machine(run: dict[str, Any]) -> list[str]:
    machine, settings = run["machine"], run["settings"]
    where = machine.get("gpu", machine["cpu"])
    lines = [
        f"Measured {run['created']} on {where} ({machine['usable_cores']} usable cores, "
        f"{machine['torch_threads']} torch threads; {machine['platform']}), torch "
        f"{machine['torch']}, open_clip {machine['open_clip']}, device `{machine['device']}`; "
        f"`{run['command']}`, {settings['repeats']} timed runs of each side after "
        f"{settings['warmup']} warm-up, from `{run['file']}`.",
    ]
    if machine.get("load_average"):
        loads = ", ".join(f"{load:.2f}" for load in machine["load_average"])
        lines.append(f"Load average (1, 5, 15 min) as the run ended: {loads}.")
    for precision, reason in settings.get("skipped_precisions", {}).items():
        lines.append(f"{precision} not measured: {reason}.")
    return [" ".join(lines), ""]


def _readout_section(run: dict[str, Any]) -> list[str]:
    rows = []
    for r in run["results"]:
        sizes = r["sizes"]
        shape = f"{sizes['batch']} x {sizes['tokens']} x {sizes['width']}"
        shape += ", padding mask" if sizes["padding_mask"] else ""
        rows.append(
            [
                r["case"],
                r["precision"],
                f"{shape}; L={sizes['num_slots']}, a={sizes['attn_dim']}",
                *_cost_cells(r, "sparo", "naive"),
            ]
        )
    header = [
        "case",
        "precision",
        "tokens (B x N x width)",
        "GFLOPs Sparo / naive",
        "FLOP ratio",
        "time Sparo / naive",
        "time ratio",
        "CPU-time ratio",
        "peak MiB Sparo / naive",
        "memory ratio",
    ]
    return [
        "## Read-out: `Sparo` against the naive read-out",
        "",
        "Forward and backward (gradients for tokens and parameters) of `open_clip_sparo.Sparo` and "
        "of `benchmarks/naive_readout.py`, which computes the same function (checked in each run) "
        "with keys and values for every token and slot, on the same parameters and tokens. Peak "
        "memory: allocated during the step, inputs and parameters excluded.",
        "",
        *_machine(run),
        *_table(header, rows),
        "",
    ]


def _cost_cells(r: dict[str, Any], model: str, baseline: str) -> list[str]:
    """FLOPs, time and peak memory of both sides, each followed by its ratio."""
    return [
        f"{_gflops(r['flops'][model])} / {_gflops(r['flops'][baseline])}",
        _ratio(r["ratios"]["flops"]),
        f"{_seconds(r['time'][model])} / {_seconds(r['time'][baseline])}",
        _ratio(r["ratios"]["time"]),
        _cpu_time_ratio(r),
        f"{_mib(r['peak_bytes'][model])} / {_mib(r['peak_bytes'][baseline])}",
        _ratio(r["ratios"]["memory"]),
    ]


def _train_step_section(run: dict[str, Any]) -> list[str]:
    rows = []
    for r in run["results"]:
        model, baseline = r["pair"]
        rows.append(
            [
                f"{model} / {baseline}",
                r["precision"],
                *_cost_cells(r, model, baseline),
            ]
        )
    header = [
        "pair",
        "precision",
        "GFLOPs",
        "FLOP ratio",
        "time per step",
        "time ratio",
        "CPU-time ratio",
        "peak MiB",
        "memory ratio",
    ]
    return [
        "## Training step: SPARO models against OpenCLIP's",
        "",
        f"Forward, OpenCLIP's `ClipLoss` and backward at batch {run['settings']['batch']}. Peak "
        "memory: parameters and buffers plus the peak a step allocates on top of them.",
        "",
        *_machine(run),
        *_table(header, rows),
        "",
    ]


def _inference_section(run: dict[str, Any]) -> list[str]:
    rows = []
    for r in run["results"]:
        model, baseline = r["pair"]
        per_second = r["items_per_second"]
        rows.append(
            [
                f"{model} / {baseline}",
                f"`{r['encoder']}`",
                r["precision"],
                f"{per_second[model]:.3g} / {per_second[baseline]:.3g}",
                _ratio(r["ratios"]["throughput"]),
                _ratio(r["ratios"]["flops"]),
            ]
        )
    header = ["pair", "encoder", "precision", "items/s", "throughput ratio", "FLOP ratio"]
    return [
        "## Inference throughput",
        "",
        f"One `encode_image` or `encode_text` call at batch {run['settings']['batch']}, "
        "inference mode, eval mode; throughput ratio above 1 means SPARO is faster.",
        "",
        *_machine(run),
        *_table(header, rows),
        "",
    ]


def _data_pipeline_section(run: dict[str, Any]) -> list[str]:
    rows = []
    for r in run["results"]:
        rates = r["samples_per_second"]
        rows.append(
            [
                f"{r['image_size'][0]} x {r['image_size'][1]}",
                str(r["samples"]),
                str(r["batch"]),
                str(r["workers"]),
                f"{rates['project']['median']:.3g} / {rates['open_clip_train']['median']:.3g}",
                _ratio(r["ratios"]["throughput"]),
            ]
        )
    header = ["JPEG size", "samples", "batch", "workers", "samples/s", "throughput ratio"]
    return [
        "## Training data: the project's pipeline against open_clip_train's",
        "",
        "Both built from a run's arguments, the project's by `training.data` (what "
        "`training.main` trains on: broken data counted and skipped, the seeded sample shuffle, "
        "passes repeated), open_clip_train's by its own `get_wds_dataset`, each reading one epoch "
        "of the same synthetic WebDataset shards through OpenCLIP's 224 px training transform "
        "and tokenizer; the two alternate, each epoch timed from building the data to its last "
        "batch (loader start-up included). Throughput ratio above 1 means the project's "
        "pipeline is faster.",
        "",
        *_machine(run),
        *_table(header, rows),
        "",
    ]


def _applications_section(run: dict[str, Any]) -> list[str]:
    settings = run["settings"]
    rows, previous = [], {}
    for r in run["results"]:
        case = r["case"]
        work = (
            f"{r['queries']:,} queries"
            if "queries" in r
            else f"{r['candidates']:,} candidate subsets"
        )
        growth = "-"
        if case in previous:
            items, seconds = previous[case]
            growth = f"x{r['items'] / items:.3g} items: x{r['seconds'] / seconds:.3g} time"
        previous[case] = (r["items"], r["seconds"])
        rows.append(
            [
                case,
                f"{r['items']:,}",
                work,
                f"{_digits(r['seconds'])} s",
                growth,
                _mib(r["input_bytes"]),
                _mib(r["peak_bytes"]),
                f"{r['total_gib']:.2f}",
                f"{r['load_average'][0]:.2f}",
            ]
        )
    header = [
        "case",
        "items",
        "work",
        "time",
        "growth",
        "inputs MiB",
        "peak MiB",
        "total GiB",
        "load",
    ]
    return [
        "## Applications at real shapes",
        "",
        f"Synthetic features at the real shapes: per-slot features of {settings['num_slots']} "
        f"slots of {settings['slot_dim']}; zero-shot classification against "
        f"{settings['classes']:,} classes, retrieval with {settings['captions_per_image']} "
        "captions per image (its captions grow with its images, so its (captions, images) "
        "scores grow with the square of the items); greedy forward search to "
        f"{settings['max_slots']} slots as "
        "`sparo select` runs it. DINO k-NN: k = 20 over a memory bank of "
        f"{settings['feature_dim']}-d features, {settings['queries']:,} queries, "
        f"{settings['classes']:,} classes. Each case builds its inputs, then times one call; "
        f"peak MiB is what that call adds: {settings['peak_measure']}; total GiB is inputs and "
        "peak. Load: the machine's 1-minute load average as the call ended (above its "
        f"{run['machine']['usable_cores']} usable cores, processes were waiting for a core).",
        "",
        *_machine(run),
        *_table(header, rows),
        "",
    ]


def _gpu_check_section(run: dict[str, Any]) -> list[str]:
    results = {r["case"]: r for r in run["results"]}
    training_rows = []
    for case in ("training eager", "training compiled"):
        r = results[case]
        model, baseline = r["pair"]
        ratios = r["ratios"]
        training_rows.append(
            [
                case,
                f"{model} / {baseline}",
                f"{r['samples_per_second'][model]['median']:.4g} / "
                f"{r['samples_per_second'][baseline]['median']:.4g}",
                _ratio(ratios["throughput"]),
                f"{_seconds(r['step_seconds'][model])} / {_seconds(r['step_seconds'][baseline])}",
                _ratio(ratios["step_time"]),
                f"{_mib(r['peak_bytes'][model])} / {_mib(r['peak_bytes'][baseline])}",
                _ratio(ratios["memory"]),
                str(ratios["non_finite_losses"]),
            ]
        )
    dino, check = results["DINO step"], results["finite-loss check"]
    model, baseline = dino["pair"]
    sizes = run["settings"]["sizes"]
    compiled = results["training compiled"]
    return [
        "## GPU check: training runs, DINO, the finite-loss check",
        "",
        f"`torchrun --nproc_per_node 1 -m training.main` runs on synthetic shards "
        f"({sizes['image_size'][0]} x {sizes['image_size'][1]} JPEGs), per-GPU batch "
        f"{sizes['batch']}, `--precision amp_bf16`, {sizes['steps']} steps of which the first "
        f"{sizes['warmup_steps']} are not timed (start-up, compilation); samples/s and step "
        "time are medians of open_clip_train's per-step log, peak memory is "
        f"{compiled['peak_measure']}.",
        "",
        *_machine(run),
        *_table(
            [
                "run",
                "pair",
                "samples/s",
                "throughput ratio",
                "step time",
                "step-time ratio",
                "peak MiB",
                "memory ratio",
                "non-finite losses",
            ],
            training_rows,
        ),
        "",
        f"Compiled against eager, the first step's loss: relative difference "
        f"{compiled['ratios']['first_loss_difference']:.2e} (bf16 tolerance 1.6e-2).",
        "",
        f"DINO step (student forward and backward, teacher forward, EMA update, bf16 autocast) "
        f"of {model} / {baseline} at batch {dino['batch']}, crops {dino['crops']}: time "
        f"{_seconds(dino['time'][model])} / {_seconds(dino['time'][baseline])}, ratio "
        f"{_ratio(dino['ratios']['time'])}; peak MiB {_mib(dino['peak_bytes'][model])} / "
        f"{_mib(dino['peak_bytes'][baseline])}, ratio {_ratio(dino['ratios']['memory'])}; "
        f"non-finite losses: {dino['ratios']['non_finite_losses']}.",
        "",
        f"The finite-loss check ({check['model']}, batch {check['batch']}, "
        f"{check['steps_per_call']} training steps per timed call, bf16 autocast): on / off "
        f"{_ratio(check['ratios']['time'])}; the host reading the loss every step / off "
        f"{_ratio(check['ratios']['host_read_time'])}.",
        "",
    ]


SECTIONS = {
    "readout": _readout_section,
    "train_step": _train_step_section,
    "inference": _inference_section,
    "data_pipeline": _data_pipeline_section,
    "applications": _applications_section,
    "gpu_check": _gpu_check_section,
}

METHOD = """## How the figures are measured

- Each figure compares SPARO with its baseline in one run and is given as the ratio
  SPARO / baseline, so the speed and load of the machine cancel as far as they can.
- Time: the two sides alternate (A B, B A, ...) after warm-up runs; times are wall-clock
  medians and [min, max] over the runs, the time ratio the median and [min, max] of the
  per-round ratios. The CPU-time ratio (CPU runs) is the same over process CPU time, which
  leaves out time spent waiting for cores held by other processes: on a shared machine, run
  with `--threads 1` and read it beside the wall-clock ratio.
- FLOPs: `torch.utils.flop_counter.FlopCounterMode` (matrix products, convolutions and
  attention). Its registry lacks the CPU attention kernel that `F.scaled_dot_product_attention`
  runs on CPU; `benchmarks/common.py` adds it with torch's own attention formulas.
- Peak memory on CUDA: `torch.cuda.max_memory_allocated`. On CPU, PyTorch keeps no allocator
  statistics. For the steps compared as ratios (read-out, training step), the allocation and
  free records of the PyTorch profiler (`profile_memory=True`) are replayed in order; this
  counts the tensor storage PyTorch allocates, as on CUDA, and repeats exactly from run to run.
  The profiler keeps a record of every operator call, which grows with a call of minutes, so
  the applications are measured instead by the process's peak resident memory (Linux
  `VmHWM`, reset just before the call) above its resident memory when the call starts, each
  case in a fresh process that holds only its inputs (no memory freed by earlier work is left
  resident for the call to reuse unseen); this counts all that the call makes resident, the
  C allocator's slack included.
- Lists of every raw time, FLOP count and byte count, the settings and the machine are in the
  result files.
- Other devices: `make bench BENCH_ARGS="--device cuda"` measures the same figures on a GPU
  (fp32 and bf16 autocast) and adds its result files (`*-cuda.json`) beside the CPU ones; the
  tables above show every result file present.
"""


def render(runs: list[dict[str, Any]], checks: list[Check]) -> str:
    lines = [
        "# Performance",
        "",
        "<!-- generated by `python -m benchmarks.report` (run by `make bench`) from "
        "benchmarks/results/*.json; do not edit by hand -->",
        "",
        "What SPARO costs against the OpenCLIP models it replaces, and what its folded read-out "
        "costs against the naive one, against the targets below.",
        "",
        "## Targets",
        "",
        *_table(
            ["target", "device", "precision", "limit", "measured", ""],
            [
                [
                    c.target.label,
                    c.device,
                    c.precision,
                    c.target.bound,
                    "-" if c.value is None else _ratio(c.value),
                    "**missed**" if c.status == "missed" else c.status,
                ]
                for c in checks
            ],
        ),
        "",
    ]
    if any(c.target.benchmark == "gpu_check" and c.value is None for c in checks):
        lines += [
            "The GPU check's targets are pending: `make gpu-check` measures them on a machine "
            "with a CUDA GPU, and has not run for this page yet.",
            "",
        ]
    for run in runs:
        lines += SECTIONS[run["benchmark"]](run)
    return "\n".join([*lines, METHOD])


def print_checks(checks: list[Check]) -> None:
    for c in checks:
        measured = "" if c.value is None else f" ({c.device}, {c.precision}): {c.value:.4f}"
        print(f"{c.status:12} {c.target.label}{measured} (target {c.target.bound})")


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """``--out``, ``--docs`` and ``--overwrite``: where a benchmark run writes its results."""
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    parser.add_argument("--docs", type=Path, default=DOCS_PATH, help="page to (re)write")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="discard earlier result files instead of keeping them in history/",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--docs", type=Path, default=DOCS_PATH, help="page to (re)write")
    args = parser.parse_args(argv)
    runs = load_runs(args.results)
    if not runs:
        raise SystemExit(f"no results in {args.results}; run the benchmarks first.")
    checks = check_targets(runs)
    args.docs.parent.mkdir(parents=True, exist_ok=True)
    args.docs.write_text(render(runs, checks))
    print(f"wrote {args.docs}")
    print_checks(checks)
    return 1 if any(c.status == "missed" for c in checks) else 0


if __name__ == "__main__":
    raise SystemExit(main())
