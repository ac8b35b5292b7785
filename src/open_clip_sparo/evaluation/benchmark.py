"""``sparo eval``: CLIP_benchmark's ``eval`` for SPARO models, optionally on a subset of slots.

Every argument of ``clip_benchmark eval`` works unchanged; in addition:

- models load through :func:`open_clip_sparo.io.loading.load_model` (a CLIP_benchmark model type
  ``sparo`` that exists only inside ``sparo eval``, its default), so registered names with
  ``--pretrained FILE``, ``local-dir:`` folders and training run folders all work;
  ``--pretrained`` defaults to none;
- each result JSON records where its model came from (``provenance``: the checkpoint files with
  their sizes and SHA-256 prefixes, ``sparo_cfg``, versions, command line), and the log names
  the checkpoint;
- ``--slots FILE`` (the ``slots.json`` of ``sparo select``, or a JSON list) restricts every model
  to those slots through :func:`open_clip_sparo.select_slots`; each result JSON records the
  slots used;
- without CUDA, models run in float32 unless ``--amp`` asks for autocast;
- results are never overwritten (``--skip_existing`` skips them, as in CLIP_benchmark);
- datasets are never downloaded: missing files of ``wds/*``, ``sugar_crepe/*``,
  ``mscoco_captions``, ``flickr8k``/``flickr30k`` and ``imagenet1k`` fail first, listed; any
  other dataset fails first when its root is missing or empty.

Fixes for the pinned stack are in :mod:`open_clip_sparo.evaluation.fixes`.
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import inspect
import itertools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import torch
from clip_benchmark import cli
from clip_benchmark import models as benchmark_models
from clip_benchmark.datasets import builder
from clip_benchmark.metrics import linear_probe, zeroshot_classification

from ..io.loading import load_model
from ..io.provenance import describe
from ..selection import read_slots, select_slots
from ..util.files import check_new_files, load_torch_file, refuse_existing
from ..util.metrics import split_doubts, topk_accuracy
from .checks import finite_encodings
from .datasets import check_dataset_files, fill_root
from .fixes import linear_probe_on_cpu

MODEL_TYPE = "sparo"


def build_parser() -> argparse.ArgumentParser:
    """CLIP_benchmark's ``eval`` parser with every argument, plus ``--slots``.

    Call within :func:`registered_model_type`, so that ``sparo`` is a ``--model_type`` choice.
    """
    with mock.patch.object(sys, "argv", ["sparo", "eval"]):
        parser, _ = cli.get_parser_args()
    # argparse has no public way to reach a subcommand's parser
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    eval_parser = subcommands.choices["eval"]
    eval_parser.prog = "sparo eval"
    eval_parser.add_argument(
        "--slots",
        default=None,
        help="evaluate SPARO models on these slots only: the slots.json of `sparo select` or a "
        "JSON list of slot indices",
    )
    eval_parser.add_argument(
        "--amp",
        action="store_true",
        help="mixed precision (autocast); the default with CUDA. Without CUDA the default is "
        "float32: CPU autocast (bfloat16) is many times slower",
    )
    eval_parser.set_defaults(model_type=MODEL_TYPE, pretrained=[""], amp=None, feature_root=None)
    return eval_parser


def default_feature_root(output: str) -> Path:
    """The linear probe's feature cache by default: ``features/`` in the folder of the
    ``--output`` template (its part before the first ``{field}``), not the current folder."""
    folder = Path(output).parent
    fixed = list(itertools.takewhile(lambda part: "{" not in part, folder.parts))
    return Path(*fixed, "features") if fixed else Path("features")


def default_amp(amp: bool | None) -> bool:
    """Mixed precision as asked (``--amp``/``--no_amp``), else only where CUDA runs it: CPU
    autocast computes in bfloat16, many times slower than float32 there."""
    return torch.cuda.is_available() if amp is None else amp


@contextmanager
def registered_model_type(load: Callable[..., tuple[Any, Any, Any]]) -> Iterator[None]:
    """Make ``load`` CLIP_benchmark's model type ``sparo`` (a ``--model_type`` choice)."""
    with mock.patch.dict(benchmark_models.TYPE2FUNC, {MODEL_TYPE: load}):
        benchmark_models.MODEL_TYPES.append(MODEL_TYPE)
        try:
            yield
        finally:
            benchmark_models.MODEL_TYPES.remove(MODEL_TYPE)


class _Evaluation:
    """What the CLIP_benchmark hooks of one ``sparo eval`` share: the slot selection, the slots
    of the model being evaluated, and the contexts that keep the selection applied."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.slots: list[int] | None = None
        self.slots_used: list[int] | None = None
        self.provenance: dict[str, Any] | None = None

    def load(
        self, model_name: str, pretrained: str, cache_dir: str | None = None, device: str = "cpu"
    ) -> tuple[torch.nn.Module, Any, Any]:
        loaded = load_model(model_name, pretrained, device=device, cache_dir=cache_dir)
        model = loaded.model
        self.provenance = loaded.provenance()
        print(f"sparo eval: {describe(self.provenance)}")
        name = f"--model {model_name}" + (f" --pretrained {pretrained}" if pretrained else "")
        self.stack.enter_context(finite_encodings(model, name))
        if self.slots is not None:
            self.stack.enter_context(select_slots(model, self.slots))
            self.slots_used = sorted(self.slots)
        elif hasattr(model, "num_slots"):
            self.slots_used = list(range(model.num_slots))
        else:
            self.slots_used = None
        return model, loaded.preprocess, loaded.tokenizer

    def dump(self, result: dict[str, Any], fp: Any, **kwargs: Any) -> None:
        if self.slots_used is not None:
            result = {**result, "slots": self.slots_used}
        result = {**result, "provenance": self.provenance}
        json.dump(result, fp, **kwargs)


def evaluate(argv: list[str]) -> int:
    """``sparo eval`` with the command-line arguments ``argv``."""
    with ExitStack() as stack:
        session = _Evaluation(stack)
        stack.enter_context(registered_model_type(session.load))
        args = build_parser().parse_args(argv)
        args.amp = default_amp(args.amp)
        if args.feature_root is None:
            args.feature_root = str(default_feature_root(args.output))
        if args.slots is not None:
            session.slots = read_slots(args.slots)
            # linear probe caches features per model and dataset: keep slot subsets apart
            args.feature_root = str(Path(args.feature_root) / _slots_key(session.slots))
        check_before_work(args)
        stack.enter_context(_patched_clip_benchmark(session))
        cli.main_eval(args)
    return 0


def planned_runs(args: argparse.Namespace) -> list[argparse.Namespace]:
    """The arguments of each evaluation ``clip_benchmark eval`` would run (models x datasets
    x languages, collections expanded), without running any."""
    runs: list[argparse.Namespace] = []
    with mock.patch.object(cli, "run", lambda run_args: runs.append(copy.copy(run_args))):
        cli.main_eval(copy.copy(args))
    return runs


def output_path(run: argparse.Namespace) -> tuple[str, str]:
    """The result file and task of one planned run, as ``clip_benchmark.cli.run`` names them."""
    dataset = run.dataset.replace("wds/", "", 1)
    task = builder.get_dataset_default_task(dataset) if run.task == "auto" else run.task
    is_file = os.path.isfile(run.pretrained)
    output = run.output.format(
        model=run.model,
        pretrained=os.path.basename(run.pretrained) if is_file else run.pretrained,
        pretrained_full_path=run.pretrained.replace("/", "_") if is_file else run.pretrained,
        task=task,
        dataset=dataset.replace("/", "_"),
        language=run.language,
    )
    return output, task


def check_before_work(args: argparse.Namespace) -> None:
    """Check every evaluation's result path and data set before any model is loaded: each
    filled ``--output`` is new (or skipped with ``--skip_existing``), distinct from the others
    and writable, and each data set has its files."""
    outputs = []
    for run in planned_runs(args):
        output, task = output_path(run)
        if args.skip_existing and os.path.exists(output):
            continue
        outputs.append(output)
        if task != "linear_probe":  # the linear probe's splits are checked when built
            root = fill_root(run.dataset, run.dataset_root)
            check_dataset_files(run.dataset, root, run.split, task, run.annotation_file or None)
    check_new_files(
        outputs,
        "choose another --output (a template such as results/{dataset}_{task}.json gives each "
        "evaluation its own file), remove them, or pass --skip_existing to skip finished "
        "evaluations; nothing was evaluated.",
    )


@contextmanager
def _patched_clip_benchmark(session: _Evaluation) -> Iterator[None]:
    """CLIP_benchmark as ``sparo eval`` runs it, restored on exit.

    ``clip_benchmark.cli.run`` writes the result with the module-level names ``open`` and
    ``json``, builds data sets with ``build_dataset``, and the metrics modules look up
    ``accuracy`` and ``evaluate`` at call time; replacing those names is all it takes.
    """
    with ExitStack() as stack:
        patch = stack.enter_context
        patch(mock.patch.object(cli, "open", _open_new, create=True))
        patch(mock.patch.object(cli, "json", SimpleNamespace(dump=session.dump, load=json.load)))
        patch(mock.patch.object(cli, "build_dataset", _checked_build_dataset))
        patch(mock.patch.object(zeroshot_classification, "accuracy", topk_accuracy))
        patch(mock.patch.object(linear_probe, "accuracy", topk_accuracy))
        probe = functools.partial(_checked_linear_probe, linear_probe.evaluate)
        if not torch.cuda.is_available():
            probe = functools.partial(linear_probe_on_cpu, probe)
        patch(mock.patch.object(linear_probe, "evaluate", probe))
        yield


def _checked_linear_probe(evaluate: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The linear probe, with the parent of its ``feature_root`` created (it creates only the
    last folder; with ``--slots`` that is ``<feature_root>/slots-...``) when it runs, not
    before; then a warning on stderr when its training and test features (as it cached them)
    share images or either set is tiny (:func:`split_doubts`)."""
    bound = inspect.signature(evaluate).bind(*args, **kwargs)
    feature_root = Path(bound.arguments["feature_root"])
    feature_root.parent.mkdir(parents=True, exist_ok=True)
    metrics = evaluate(*args, **kwargs)
    fit, score = (
        load_torch_file(
            feature_root / bound.arguments["model_id"] / f"features_{split}.pt",
            "the linear probe's features",
        )
        for split in ("train", "test")
    )
    for doubt in split_doubts(fit, score, "the training split", "the test split"):
        print(f"sparo eval: warning: linear probe: {doubt}.", file=sys.stderr)
    return metrics


def _checked_build_dataset(dataset_name: str, root: str, **kwargs: Any) -> Any:
    # CLIP_benchmark builds the linear probe's training split without a task, i.e. its default
    task = kwargs.get("task", "zeroshot_classification")
    split = kwargs.get("split", "test")
    check_dataset_files(dataset_name, root, split, task, kwargs.get("annotation_file"))
    return builder.build_dataset(dataset_name=dataset_name, root=root, **kwargs)


def _open_new(file: str, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    """``open`` for CLIP_benchmark's result file: creates its folder, refuses to replace it."""
    if "w" in mode:
        refuse_existing(
            [file],
            "choose another --output, remove it, or pass --skip_existing to skip finished "
            "evaluations.",
        )
    Path(file).parent.mkdir(parents=True, exist_ok=True)
    return open(file, mode.replace("w", "x"), *args, **kwargs)


def _slots_key(slots: Sequence[int]) -> str:
    digest = hashlib.sha1(json.dumps(sorted(slots)).encode()).hexdigest()[:12]
    return f"slots-{len(slots)}-{digest}"
