"""Train SPARO (or any OpenCLIP model) with open_clip_train, plus the SPARO flags::

    python -m training.main [--] <open_clip_train arguments> [SPARO flags]
    torchrun --nproc_per_node G -m training.main -- <open_clip_train arguments> [SPARO flags]

The SPARO flags are taken out of the arguments; the rest go to ``open_clip_train.main.main``
unchanged, with this package's fixes and hooks active, and its return value is the exit status.
(torchrun needs the ``--``: it would read ``--logs`` as an abbreviation of its own ``--log-dir``.)
"""

from __future__ import annotations

import argparse
import logging
import sys

import open_clip_train.main

import open_clip_sparo  # noqa: F401  (registers the sparo-* models with OpenCLIP)
from open_clip_sparo.util.errors import expected_message, run_entry_point
from open_clip_sparo.util.stop_signal import logged_stop
from open_clip_sparo.util.wds_decode import pickles_undecoded

from .compat import pinned_stack_fixes
from .hooks import SparoOptions, SparoRun, SparoRunError
from .model_config import parse_model_kwargs

DEFAULT_SLOT_STATS_EVERY = 100
PROG = "training.main"


def _positive_int(text: str) -> int:
    """An integer >= 1, also written as ``1.5e8``."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value < 1 or not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        add_help=False,
        allow_abbrev=False,  # never read an open_clip_train flag (e.g. --model) as one of ours
    )
    group = parser.add_argument_group(
        "SPARO flags (every other argument goes to open_clip_train unchanged)"
    )
    group.add_argument(
        "--max-params",
        type=_positive_int,
        metavar="N",
        help="abort before training if the model has more than N parameters",
    )
    group.add_argument(
        "--model-kwargs",
        type=parse_model_kwargs,
        metavar="JSON",
        help="JSON object deep-merged into the model config, e.g. "
        """'{"sparo_cfg": {"num_slots": 32, "slot_dim": 128}}'""",
    )
    group.add_argument(
        "--init-from-clip",
        metavar="CHECKPOINT",
        help="start from a plain OpenCLIP checkpoint of the baseline X of sparo-X (a path, a "
        "pretrained tag of X, or hf-hub:ORG/NAME): backbone copied, removed blocks and "
        "projections dropped, read-outs fresh (ignored when resuming)",
    )
    group.add_argument(
        "--log-slot-stats",
        type=_positive_int,
        nargs="?",
        const=DEFAULT_SLOT_STATS_EVERY,
        metavar="N",
        help="log per-slot attention entropy and image-text slot agreement every N steps "
        f"(default {DEFAULT_SLOT_STATS_EVERY})",
    )
    return parser


def split_args(argv: list[str]) -> tuple[SparoOptions, list[str]]:
    """``argv`` -> (SPARO options, open_clip_train arguments); a leading ``--`` is dropped."""
    if argv[:1] == ["--"]:
        argv = argv[1:]
    namespace, train_argv = build_parser().parse_known_args(argv)
    return SparoOptions(**vars(namespace)), train_argv


def main(argv: list[str] | None = None) -> int:
    """The run's exit status; an expected failure (bad input) is one line
    ``training.main: error: ...`` on stderr, also written to the run's ``out.log``, and 1.
    SIGTERM (e.g. SLURM preemption) is logged with how to resume, then ends the run (143).
    Validation shards (open_clip_train's loader) never unpickle their files."""
    with logged_stop(PROG), pickles_undecoded():
        return run_entry_point(PROG, _run, sys.argv[1:] if argv is None else list(argv))


def _run(argv: list[str]) -> int:
    options, train_argv = split_args(argv)
    if {"-h", "--help"} & set(train_argv):
        print(build_parser().format_help())
    try:
        with pinned_stack_fixes(), SparoRun(options).hooks():
            status = open_clip_train.main.main(train_argv)
    except Exception as error:
        if isinstance(error, RuntimeError) and str(error).startswith(
            "Error(s) in loading state_dict"
        ):
            # open_clip_train's --resume loads the checkpoint's state dict into the model
            detail = "; ".join(str(error).splitlines()[:3])
            error = SparoRunError(
                f"the --resume checkpoint does not fit the model: {detail}; resume with the "
                "run's own --model and --model-kwargs, or give a checkpoint of this model."
            )
            _log_to_file(error)
            raise error from None
        _log_to_file(error)
        raise
    return 0 if status is None else status


def _log_to_file(error: BaseException) -> None:
    """Write an expected failure to the run's log file (open_clip_train's ``out.log``), if it
    has one yet, in the line :func:`run_entry_point` gives the console."""
    message = expected_message(error)
    if message is None:
        return
    record = logging.makeLogRecord(
        {"levelno": logging.ERROR, "levelname": "ERROR", "msg": f"{PROG}: error: {message}"}
    )
    for handler in logging.root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


if __name__ == "__main__":
    sys.exit(main())
