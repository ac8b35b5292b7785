"""Training-step cost: SPARO models against the OpenCLIP models they replace.

One step is forward, OpenCLIP's ``ClipLoss`` and backward (no optimizer), at the same batch, for
each pair ``sparo-X:X``: time (interleaved runs), FLOPs and peak memory, each as the ratio
SPARO / OpenCLIP, in fp32 and bf16 autocast.

    python -m benchmarks.train_step [--device cuda] [--overwrite]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from open_clip.loss import ClipLoss

from benchmarks.common import (
    add_common_args,
    autocast,
    count_flops,
    format_ratios,
    peak_memory,
    run_header,
    run_settings,
    start_run,
    summarize,
    tensor_bytes,
    time_interleaved,
    time_ratios,
    write_result,
)
from benchmarks.models import add_model_args, batch_size, build_pair, make_batch

CUDA_BATCH = 128


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser, cuda_batch=CUDA_BATCH)
    add_common_args(parser, repeats=5)
    return parser.parse_args(argv)


def make_train_step(
    model: torch.nn.Module,
    images: torch.Tensor,
    text: torch.Tensor,
    device: torch.device,
    precision: str,
) -> Callable[[], None]:
    """Forward, ``ClipLoss`` and backward; gradients are freed afterwards (``set_to_none``)."""
    loss_fn = ClipLoss()

    def step() -> None:
        with autocast(device, precision):
            image_features, text_features, logit_scale = model(images, text)
            loss = loss_fn(image_features, text_features, logit_scale)
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def compare(
    model: str,
    baseline: str,
    steps: dict[str, Callable[[], None]],
    static_bytes: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """FLOPs, peak memory and interleaved time of both steps; ratios are ``model / baseline``.

    Peak memory is the bytes of the model's parameters and buffers plus the peak of what one
    step allocates on top of them (activations, gradients, workspaces).
    """
    flops = {name: count_flops(step) for name, step in steps.items()}
    step_bytes = {name: peak_memory(step, args.device) for name, step in steps.items()}
    memory = {name: static_bytes[name] + step_bytes[name] for name in steps}
    times, cpu_times = time_interleaved(steps, args.repeats, args.warmup, args.device)
    return {
        "flops": flops,
        "static_bytes": static_bytes,
        "step_peak_bytes": step_bytes,
        "peak_bytes": memory,
        "seconds": times,
        "cpu_seconds": cpu_times,
        "time": {name: summarize(values) for name, values in times.items()},
        "ratios": {
            "flops": flops[model] / flops[baseline],
            "memory": memory[model] / memory[baseline],
            **time_ratios(times, cpu_times, model, baseline),
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path, precisions, skipped = start_run(args, "train_step")
    batch = batch_size(args, CUDA_BATCH)
    step = "forward, ClipLoss, backward; gradients set to None after each step"
    settings = {"batch": batch, **run_settings(args, precisions, skipped, step)}
    results = []
    for model_name, baseline_name in args.pairs:
        models = build_pair((model_name, baseline_name), args.device)
        images, text = make_batch(models[baseline_name], baseline_name, batch, args.device)
        static_bytes = {name: tensor_bytes(model) for name, model in models.items()}
        for precision in precisions:
            steps = {
                name: make_train_step(model.train(), images, text, args.device, precision)
                for name, model in models.items()
            }
            result = {"pair": [model_name, baseline_name], "precision": precision}
            result.update(compare(model_name, baseline_name, steps, static_bytes, args))
            print(
                f"train step {model_name} / {baseline_name} {precision}: "
                f"{format_ratios(result['ratios'])}"
            )
            results.append(result)
    write_result(
        path, {**run_header("train_step", argv, args.device, settings), "results": results}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
