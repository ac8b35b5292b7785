"""The synthetic world (coloured shapes and their captions) as WebDataset training shards and
evaluation sets, written by ``sparo generate``.

Layout under ``--out``::

    train/{000000..}.tar, sizes.json        image-caption shards for open_clip_train
    eval/{val,test}/synth_<name>/...        CLIP_benchmark ``wds/synth_<name>`` sets
    eval/{val,test}/sugar_crepe-<task>/     CLIP_benchmark ``sugar_crepe/<task>`` sets
    manifest.json                           settings, sizes, the datasets and their tasks

Evaluate a split with ``--dataset_root <out>/eval/<split>/{dataset_cleaned}`` (CLIP_benchmark
fills it in with the data set's name, ``wds/`` dropped and ``/`` as ``-``). Everything is
deterministic given ``--seed``; training uses only the seen colour-shape pairs."""

from .datasets import generate

__all__ = ["generate"]
