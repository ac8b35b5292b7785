"""Inference throughput: ``encode_image`` and ``encode_text`` of SPARO models against OpenCLIP's.

For each pair ``sparo-X:X`` and encoder: items per second (interleaved runs, inference mode) and
FLOPs, as the ratios SPARO / OpenCLIP.

    python -m benchmarks.inference [--device cuda] [--overwrite]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import (
    add_common_args,
    autocast,
    count_flops,
    format_ratios,
    paired_ratio,
    run_header,
    run_settings,
    start_run,
    summarize,
    time_interleaved,
    write_result,
)
from benchmarks.models import add_model_args, batch_size, build_pair, make_batch

CUDA_BATCH = 256
ENCODERS = ("encode_image", "encode_text")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser, cuda_batch=CUDA_BATCH)
    add_common_args(parser, repeats=5)
    return parser.parse_args(argv)


def make_encode(
    encode: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    device: torch.device,
    precision: str,
    grad_mode: Callable[[], Any] = torch.inference_mode,
) -> Callable[[], None]:
    def step() -> None:
        with grad_mode(), autocast(device, precision):
            encode(inputs)

    return step


def bench_encoder(
    encoder: str,
    pair: tuple[str, str],
    models: dict[str, torch.nn.Module],
    inputs: torch.Tensor,
    precision: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """FLOPs and interleaved throughput of one encoder of both models of a pair."""
    model_name, baseline_name = pair
    steps = {
        name: make_encode(getattr(model.eval(), encoder), inputs, args.device, precision)
        for name, model in models.items()
    }
    # counted under no_grad: torch's FLOP counter decomposes einsum below autocast under
    # inference mode and fails on the mixed dtypes of bf16 autocast (same FLOPs either way)
    flops = {
        name: count_flops(
            make_encode(getattr(model, encoder), inputs, args.device, precision, torch.no_grad)
        )
        for name, model in models.items()
    }
    times, cpu_times = time_interleaved(steps, args.repeats, args.warmup, args.device)
    summaries = {name: summarize(values) for name, values in times.items()}
    return {
        "pair": [model_name, baseline_name],
        "precision": precision,
        "encoder": encoder,
        "flops": flops,
        "seconds": times,
        "cpu_seconds": cpu_times,
        "time": summaries,
        "items_per_second": {name: len(inputs) / s["median"] for name, s in summaries.items()},
        "ratios": {
            "flops": flops[model_name] / flops[baseline_name],
            # above 1: SPARO is faster
            "throughput": paired_ratio(times[baseline_name], times[model_name]),
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path, precisions, skipped = start_run(args, "inference")
    batch = batch_size(args, CUDA_BATCH)
    step = "one encode_image or encode_text call in inference mode, model in eval mode"
    settings = {"batch": batch, **run_settings(args, precisions, skipped, step)}
    results = []
    for pair in args.pairs:
        models = build_pair(pair, args.device)
        images, text = make_batch(models[pair[1]], pair[1], batch, args.device)
        for precision in precisions:
            for encoder, inputs in zip(ENCODERS, (images, text), strict=True):
                result = bench_encoder(encoder, pair, models, inputs, precision, args)
                print(
                    f"inference {encoder} {pair[0]} / {pair[1]} {precision}: "
                    f"{format_ratios(result['ratios'])}"
                )
                results.append(result)
    write_result(path, {**run_header("inference", argv, args.device, settings), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
