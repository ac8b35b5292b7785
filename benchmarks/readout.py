"""Read-out cost: ``open_clip_sparo.Sparo`` against the naive per-slot-key read-out.

Forward + backward of both on the same parameters and tokens, at ViT-B/16 vision sizes and text
sizes (with a padding mask) by default: FLOPs, time (interleaved runs) and peak memory, each as
the ratio Sparo / naive.

    python -m benchmarks.readout [--device cuda] [--overwrite]
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
    peak_memory,
    run_header,
    run_settings,
    start_run,
    summarize,
    time_interleaved,
    time_ratios,
    write_result,
)
from benchmarks.naive_readout import NaiveSparo
from open_clip_sparo import Sparo


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--num-slots", type=int, default=64)
    parser.add_argument("--slot-dim", type=int, default=64)
    parser.add_argument("--attn-dim", type=int, default=64)
    parser.add_argument("--vision-tokens", type=int, default=197, help="ViT-B/16: 1 + 14 * 14")
    parser.add_argument("--vision-width", type=int, default=768)
    parser.add_argument("--text-tokens", type=int, default=77)
    parser.add_argument("--text-width", type=int, default=512)
    add_common_args(parser, repeats=10)
    return parser.parse_args(argv)


def make_inputs(
    case: str, batch: int, num_tokens: int, width: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encoder tokens, and for text a padding mask after a random caption length."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(batch, num_tokens, width, generator=generator).to(device)
    if case == "vision":
        return tokens, None
    lengths = torch.randint(1, num_tokens + 1, (batch,), generator=generator)
    mask = torch.arange(num_tokens)[None, :] >= lengths[:, None]  # (B, N), True = padding
    return tokens, mask.to(device)


def make_step(
    readout: torch.nn.Module,
    tokens: torch.Tensor,
    mask: torch.Tensor | None,
    grad_slots: torch.Tensor,
    device: torch.device,
    precision: str,
) -> Callable[[], None]:
    """Forward and backward through the read-out, gradients freed afterwards."""
    tokens = tokens.detach().requires_grad_(True)

    def step() -> None:
        with autocast(device, precision):
            slots, _ = readout(tokens, mask)
        slots.backward(grad_slots.to(slots.dtype))
        tokens.grad = None
        readout.zero_grad(set_to_none=True)

    return step


def bench_case(
    case: str, num_tokens: int, width: int, precision: str, args: argparse.Namespace
) -> dict[str, Any]:
    device = args.device
    torch.manual_seed(0)
    sparo = Sparo(
        width, args.num_slots, args.slot_dim, args.attn_dim, args.attn_dim, args.num_slots
    ).to(device)
    naive = NaiveSparo(sparo)
    tokens, mask = make_inputs(case, args.batch, num_tokens, width, device)
    with torch.no_grad(), autocast(device, precision):
        max_abs_diff = (sparo(tokens, mask)[0] - naive(tokens, mask)[0]).abs().max().item()
    grad_slots = torch.randn(args.batch, args.num_slots, args.slot_dim, device=device)
    steps = {
        "sparo": make_step(sparo, tokens, mask, grad_slots, device, precision),
        "naive": make_step(naive, tokens, mask, grad_slots, device, precision),
    }
    flops = {name: count_flops(step) for name, step in steps.items()}
    memory = {name: peak_memory(step, device) for name, step in steps.items()}
    times, cpu_times = time_interleaved(steps, args.repeats, args.warmup, device)
    return {
        "case": case,
        "precision": precision,
        "sizes": {
            "batch": args.batch,
            "tokens": num_tokens,
            "width": width,
            "num_slots": args.num_slots,
            "attn_dim": args.attn_dim,
            "slot_dim": args.slot_dim,
            "padding_mask": mask is not None,
        },
        "max_abs_diff": max_abs_diff,
        "flops": flops,
        "peak_bytes": memory,
        "seconds": times,
        "cpu_seconds": cpu_times,
        "time": {name: summarize(values) for name, values in times.items()},
        "ratios": {
            "flops": flops["sparo"] / flops["naive"],
            "memory": memory["sparo"] / memory["naive"],
            **time_ratios(times, cpu_times, "sparo", "naive"),
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path, precisions, skipped = start_run(args, "readout")
    cases = {
        "vision": (args.vision_tokens, args.vision_width),
        "text": (args.text_tokens, args.text_width),
    }
    step = "forward, backward of a fixed random gradient of the slots"
    settings = run_settings(args, precisions, skipped, step)
    results = []
    for precision in precisions:
        for case, (num_tokens, width) in cases.items():
            result = bench_case(case, num_tokens, width, precision, args)
            print(f"read-out {case} {precision}, Sparo / naive: {format_ratios(result['ratios'])}")
            results.append(result)
    write_result(path, {**run_header("readout", argv, args.device, settings), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
