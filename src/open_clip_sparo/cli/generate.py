"""``sparo generate``: the synthetic world's training shards and evaluation sets (layout in
:mod:`open_clip_sparo.synthetic`)."""

from __future__ import annotations

import argparse
import json

from .. import synthetic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparo generate",
        description=synthetic.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", required=True, help="folder to write (reused if it holds the same settings)"
    )
    parser.add_argument("--train-samples", type=int, default=20000)
    parser.add_argument(
        "--eval-samples", type=int, default=500, help="images per evaluation set and split"
    )
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("train_samples", "eval_samples", "shard_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    manifest = synthetic.generate(
        args.out, args.train_samples, args.eval_samples, args.shard_size, args.seed
    )
    print(json.dumps(manifest, indent=2))
    return 0
