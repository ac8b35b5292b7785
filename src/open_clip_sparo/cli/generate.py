"""``sparo generate``: the synthetic world as WebDataset training shards and evaluation sets.

Layout under ``--out``::

    train/{000000..}.tar, sizes.json        image-caption shards for open_clip_train
    eval/{val,test}/synth_<name>/...        CLIP_benchmark ``wds/synth_<name>`` sets
    eval/{val,test}/sugar_crepe-<task>/     CLIP_benchmark ``sugar_crepe/<task>`` sets
    manifest.json                           settings, sizes, the datasets and their tasks

Evaluate a split with ``--dataset_root <out>/eval/<split>/{dataset_cleaned}`` (CLIP_benchmark
fills it in with the data set's name, ``wds/`` dropped and ``/`` as ``-``). Everything is
deterministic given ``--seed``; training uses only the seen colour-shape pairs."""

from __future__ import annotations

import argparse
import json

from ..synthetic import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparo generate",
        description=__doc__,
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
    manifest = generate(args.out, args.train_samples, args.eval_samples, args.shard_size, args.seed)
    print(json.dumps(manifest, indent=2))
    return 0
