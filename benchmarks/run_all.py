"""Run every benchmark, then check the targets and render ``docs/performance.md``.

What ``make bench`` runs. Exits with status 1 when a performance target is missed.

    python -m benchmarks.run_all [--device cuda] [--overwrite]
"""

from __future__ import annotations

import argparse

from benchmarks import inference, readout, report, train_step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    report.add_output_args(parser)
    args = parser.parse_args(argv)
    common = ["--device", args.device, "--out", str(args.out)]
    common += ["--threads", str(args.threads)] if args.threads else []
    common += ["--overwrite"] if args.overwrite else []
    for benchmark in (readout, train_step, inference):
        benchmark.main(common)
    return report.main(["--results", str(args.out), "--docs", str(args.docs)])


if __name__ == "__main__":
    raise SystemExit(main())
