"""Measurement helpers shared by the benchmarks: machine facts, FLOPs, peak memory, timing, results.

Every benchmark compares two callables doing the same job (SPARO and its baseline) in one run and
reports ratios, so machine speed and background load cancel as far as they can.

Peak memory is what the measured callable adds, at its peak, to what was held when it started:

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``
  (:func:`peak_memory`).
- CPU, a step of seconds (:func:`peak_memory`): PyTorch keeps no peak statistics for its CPU
  allocator, so the allocation and free events that the PyTorch profiler records with
  ``profile_memory=True`` are replayed in order and their running sum is maximised. This counts
  exactly the tensor storage PyTorch allocates, as ``max_memory_allocated`` does on CUDA, and is
  deterministic, as the SPARO / baseline memory ratios of steps of tens of MiB need. The
  profiler keeps a record of every operator call, so its own memory grows with the call.
- CPU, a call of minutes (:func:`peak_resident`, the applications): the peak resident memory
  (Linux ``VmHWM``, reset just before the call) above the resident memory when the call starts,
  in a fresh process (:func:`in_fresh_process`) that holds nothing but the call's inputs, so no
  memory freed by earlier work is resident to be reused unseen. It costs nothing while the call
  runs, and counts what the call makes resident: tensors, kernel workspaces and the C
  allocator's slack. ``tracemalloc`` does not see PyTorch's allocations at all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import open_clip
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

RESULTS_DIR = Path(__file__).resolve().parent / "results"
Result = TypeVar("Result")
PRECISIONS = ("fp32", "bf16")
aten = torch.ops.aten


def _cpu_attention_flop(
    query_shape: torch.Size,
    key_shape: torch.Size,
    value_shape: torch.Size,
    *args: Any,
    **kwargs: Any,
) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward_flop(
    grad_out_shape: torch.Size,
    query_shape: torch.Size,
    key_shape: torch.Size,
    value_shape: torch.Size,
    *args: Any,
    **kwargs: Any,
) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# torch's FLOP counter knows the CUDA attention kernels but not the CPU kernel that
# F.scaled_dot_product_attention (OpenCLIP's attention) dispatches to; without these entries
# every attention product would count as zero on CPU
CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flop,
}


def add_common_args(parser: argparse.ArgumentParser, repeats: int) -> None:
    """Options every benchmark script takes."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=PRECISIONS,
        help="fp32 and/or bf16 autocast (default: both; on CPU bf16 only where it is native)",
    )
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs of each side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each side first")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's, one per core)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="discard an earlier result file instead of keeping it in history/",
    )


def start_run(args: argparse.Namespace, benchmark: str) -> tuple[Path, list[str], dict[str, str]]:
    """Apply the options of :func:`add_common_args` (``args.device`` becomes a
    ``torch.device``); returns the result file, the precisions to run and the skipped ones."""
    args.device = parse_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    path = result_path(args.out, benchmark, args.device, args.overwrite)
    return (path, *select_precisions(args.precisions, args.device))


def run_settings(
    args: argparse.Namespace, precisions: list[str], skipped: dict[str, str], step: str
) -> dict[str, Any]:
    """How a run measured, as its result file records it; ``step`` says what one timed run is."""
    return {
        "precisions": precisions,
        "skipped_precisions": skipped,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "step": step,
    }


def parse_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device {name}: only cpu and cuda are supported.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available; run with --device cpu.")
    return device


def select_precisions(
    requested: list[str] | None, device: torch.device
) -> tuple[list[str], dict[str, str]]:
    """The precisions to run (``requested``, else fp32 and bf16 autocast) and why any default
    one was left out.

    A CPU without native bf16 matrix products (no AVX512-BF16 or AMX) runs bf16 autocast
    orders of magnitude slower than fp32, too slow to time full models; bf16 is then skipped
    unless asked for with ``--precisions``.
    """
    if requested:
        return list(requested), {}
    if device.type == "cuda":
        return ["fp32", "bf16"], {}
    fp32 = matmul_throughput(torch.float32, device)
    bf16 = matmul_throughput(torch.bfloat16, device)
    if bf16 >= fp32 / 2:
        return ["fp32", "bf16"], {}
    reason = (
        f"no native bf16 matrix products on this CPU: a bf16 matmul ran at {bf16:.2f} GFLOP/s "
        f"against {fp32:.1f} GFLOP/s in fp32; pass --precisions fp32 bf16 to measure it anyway"
    )
    return ["fp32"], {"bf16": reason}


def matmul_throughput(dtype: torch.dtype, device: torch.device, size: int = 512) -> float:
    """GFLOP/s of a square matrix product (best of three)."""
    a, b = torch.randn(2, size, size, dtype=dtype, device=device)
    a @ b
    best = math.inf
    for _ in range(3):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def result_path(out_dir: Path, benchmark: str, device: torch.device, overwrite: bool) -> Path:
    """Where a run writes its results. An earlier result file is moved to ``history/`` under
    the time it was measured (printed), unless ``overwrite`` discards it."""
    path = out_dir / f"{benchmark}-{device.type}.json"
    if path.exists() and not overwrite:
        created = json.loads(path.read_text()).get("created", "undated")
        kept = out_dir / "history" / f"{path.stem}-{created.replace(':', '')}.json"
        kept.parent.mkdir(parents=True, exist_ok=True)
        if kept.exists():
            raise SystemExit(f"{path} and {kept} both exist; move one away or pass --overwrite.")
        path.rename(kept)
        print(f"kept the earlier {path.name} as {kept}")
    return path


def write_result(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")


def machine_info(device: torch.device) -> dict[str, Any]:
    """The facts a reader needs to judge where numbers come from."""
    info = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        # 1, 5 and 15 minute load averages as the run ends: how busy the machine was
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_header(
    benchmark: str, argv: list[str] | None, device: torch.device, settings: dict[str, Any]
) -> dict[str, Any]:
    """What every result file starts with: which run, where, with which settings."""
    argv = sys.argv[1:] if argv is None else argv
    return {
        "benchmark": benchmark,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m", f"benchmarks.{benchmark}", *argv]),
        "machine": machine_info(device),
        "settings": settings,
    }


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast (AMP) or plain fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call (matrix products and attention, as ``torch.utils.flop_counter``)."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        fn()
    return counter.get_total_flops()


def peak_memory(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes allocated during one call above those allocated when it starts."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():
        profiler.start()
    try:
        fn()
    finally:
        with _quiet_stderr():
            profiler.stop()
    records = _cpu_memory_records(profiler)
    live = peak = 0
    for record in records:
        live += record.nbytes()
        peak = max(peak, live)
    return peak


def peak_resident(fn: Callable[[], Any]) -> int:
    """Peak resident bytes (RSS) one call adds to this process (Linux); run it in a fresh
    process (:func:`in_fresh_process`), where no freed memory is left resident to reuse."""
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from VmRSS
    start = _status_bytes("VmRSS")
    fn()
    return _status_bytes("VmHWM") - start


def _status_bytes(field: str) -> int:
    """A memory field of ``/proc/self/status`` (given there in KiB), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise SystemExit(f"/proc/self/status has no {field}: peak resident memory needs Linux.")


def in_fresh_process(function: Callable[..., Result], *args: Any) -> Result:
    """``function(*args)`` run in a new Python process (spawned: it inherits no memory from this
    one); ``function`` must be importable, and it and ``args`` picklable."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _cpu_memory_records(profiler: profile) -> list[Any]:
    """The profiler's raw allocation (+bytes) and free (-bytes) records in time order, read as
    torch's own profiler post-processing reads them."""
    events = profiler.profiler.kineto_results.events()
    records = [e for e in events if e.name() == "[memory]" and e.device_type().name == "CPU"]
    return sorted(records, key=lambda e: e.start_ns())


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the profiler's native start/stop banners (written straight to file descriptor 2)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def time_interleaved(
    steps: dict[str, Callable[[], Any]], repeats: int, warmup: int, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and process CPU seconds per call of each step.

    The order alternates every round (A B, B A, ...), so slow drifts in machine load hit both
    sides alike. CPU seconds (CPU device only; empty on CUDA) leave out the time the process
    waits for cores that other processes hold, so their ratio stays stable on a busy machine
    when run with ``--threads 1``.
    """
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names} if device.type == "cpu" else {}
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else reversed(names):
            synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            steps[name]()
            synchronize(device)
            wall[name].append(time.perf_counter() - start)
            if cpu:
                cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def time_ratios(
    wall: dict[str, list[float]], cpu: dict[str, list[float]], numerator: str, denominator: str
) -> dict[str, dict[str, float]]:
    """Paired wall-clock (``time``) and CPU-time (``cpu_time``, if measured) ratios."""
    ratios = {"time": paired_ratio(wall[numerator], wall[denominator])}
    if cpu:
        ratios["cpu_time"] = paired_ratio(cpu[numerator], cpu[denominator])
    return ratios


def format_ratios(ratios: dict[str, float | dict[str, float]]) -> str:
    """One line for the console: ``flops 0.9180, time 0.931 [0.902, 0.955], ...``."""
    parts = []
    for name, value in ratios.items():
        if isinstance(value, dict):
            text = f"{value['median']:.3f} [{value['min']:.3f}, {value['max']:.3f}]"
        else:
            text = f"{value:.4f}"
        parts.append(f"{name.replace('_', ' ')} {text}")
    return ", ".join(parts)


def summarize(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def paired_ratio(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """Median and range of the per-round ratios of two interleaved timings."""
    return summarize([a / b for a, b in zip(numerator, denominator, strict=True)])


def tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)
