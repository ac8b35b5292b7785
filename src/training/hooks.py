"""The SPARO side of one open_clip_train run.

open_clip_train has no extension points, so :class:`SparoRun` replaces, for the duration of the
run, names that ``open_clip_train.main`` looks up when it calls them:

- ``parse_args``: keeps the run's ``args`` (open_clip_train later fills in the run name, rank and
  resume checkpoint on that same object) and installs the ``--model-kwargs`` config;
- ``create_model_and_transforms``: right after OpenCLIP builds the model, before DDP, the
  optimizer and ``--resume``: ``--max-params``, ``--init-from-clip``, the run folder's model
  config and the ``--log-slot-stats`` hooks;
- ``create_loss``: the loss stops the run at its first non-finite value (``loss_check``,
  read at the log steps and after each epoch, before its checkpoint);
- ``train_one_epoch``: marks the run as started, tells the loss check and the statistics which
  epoch runs (handing the statistics open_clip_train's TensorBoard writer), calls the
  ``train_one_epoch`` it replaced, then has the loss check read the epoch's losses.

A start that fails before training (a bad flag, ``--max-params``, a model that cannot be built)
removes the run folder open_clip_train made for it, so the corrected command can run under the
same ``--name``; a folder that existed before is left as it was. A run that fails later records
the failure in its folder; if it saved no checkpoint, a rerun under the same ``--name`` reuses
the folder (``open_clip_sparo.util.run_folder``).
"""

from __future__ import annotations

import difflib
import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import open_clip_train.main
import open_clip_train.params
import open_clip_train.train
import torch
from open_clip import factory
from open_clip_train.distributed import broadcast_object, is_master
from torch import nn

from open_clip_sparo import SparoCLIP
from open_clip_sparo.derive import baseline_name
from open_clip_sparo.io.init_from_clip import init_from_clip, load_clip_state_dict
from open_clip_sparo.io.pretrained import resolve_pretrained
from open_clip_sparo.util.run_folder import failed_without_checkpoint, record_failure, set_aside

from .loss_check import FiniteLossCheck
from .model_config import merged_model_config
from .patching import patched, upstream_call
from .run_config import run_config, write_run_config
from .slot_stats import SlotStatsLogger


@dataclass(frozen=True)
class SparoOptions:
    """The SPARO flags of a run (``None``: flag not given)."""

    max_params: int | None = None
    model_kwargs: dict[str, Any] | None = None
    init_from_clip: str | None = None  # a path, a pretrained tag of the baseline or hf-hub:ID
    log_slot_stats: int | None = None


class SparoRunError(ValueError):
    """A SPARO flag stops the run; the message says why and what to do."""


class SparoRun:
    """Applies :class:`SparoOptions` to the open_clip_train run inside :meth:`hooks`."""

    def __init__(self, options: SparoOptions) -> None:
        self.options = options
        self.args: Any = None  # open_clip_train's argparse namespace, once parsed
        self.slot_stats: SlotStatsLogger | None = None
        self.clip_checkpoint: Path | None = None  # --init-from-clip, resolved to a file
        self.loss_check = FiniteLossCheck()
        self.creates_run_dir = False  # whether this start makes the run folder
        self.started = False  # whether the first epoch has begun
        self._stack = ExitStack()

    @contextmanager
    def hooks(self) -> Iterator[None]:
        with self._stack:
            main = open_clip_train.main
            self._stack.enter_context(patched(main, "parse_args", self._parse_args))
            self._stack.enter_context(
                patched(main, "create_model_and_transforms", self._create_model_and_transforms)
            )
            self.loss_check.next_create_loss = main.create_loss
            self._stack.enter_context(patched(main, "create_loss", self.loss_check.create_loss))
            self._next_train_one_epoch = main.train_one_epoch  # e.g. compat's
            self._stack.enter_context(patched(main, "train_one_epoch", self._train_one_epoch))
            try:
                yield
            except BaseException as error:
                self._remove_failed_start()
                if isinstance(error, Exception):
                    self._record_failure(error)
                raise
            finally:
                if self.slot_stats is not None:
                    self.slot_stats.remove()

    def _remove_failed_start(self) -> None:
        """Remove the run folder a start created, if it failed before training began."""
        args = self.args
        if self.started or not self.creates_run_dir or args.name is None or not is_master(args):
            return
        run_dir = Path(args.logs, args.name)
        if run_dir.is_dir() and not list(run_dir.glob("checkpoints/*.pt")):
            for handler in logging.root.handlers:  # out.log is inside
                handler.flush()
            shutil.rmtree(run_dir, ignore_errors=True)

    def _record_failure(self, error: Exception) -> None:
        """Record in the run folder why the run stopped once training began (the run-folder
        rule lets a rerun reuse a failed folder that holds no checkpoint); a start refused
        before training records nothing in a folder that may hold another run."""
        args = self.args
        if not self.started or args.name is None or not is_master(args):
            return
        record_failure(Path(args.logs, args.name), error)

    def _check_model_name(self, args: Any) -> None:
        """A model name OpenCLIP cannot resolve, refused before the run folder is made."""
        if factory.parse_model_name(args.model)[0] is not None:
            return
        try:
            if factory.get_model_config(args.model) is not None:
                return
            problem = f"--model {args.model!r} is no registered model config."
        except ValueError as error:  # a sparo-* name without a config says why
            problem = f"--model: {error}"
        close = difflib.get_close_matches(args.model, open_clip.list_models(), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise SparoRunError(
            f"{problem}{hint} See open_clip.list_models(), or give hf-hub:ORG/NAME or "
            "local-dir:PATH."
        )

    def _check_run_dir(self, args: Any) -> None:
        """Refuse, before anything is written, a --name whose run exists (without --resume
        latest); remember a folder this start will create."""
        if args.logs is None or str(args.logs).lower() == "none":
            return
        if args.name is None:  # open_clip_train names the run by the clock: a new folder
            self.creates_run_dir = True
            return
        run_dir = Path(args.logs, args.name)
        log = run_dir / "out.log"
        if not run_dir.exists():
            self.creates_run_dir = True
        elif args.resume != "latest" and log.exists() and failed_without_checkpoint(run_dir):
            # open_clip_train refuses a run folder with an out.log: keep the failed run's aside
            kept = set_aside(log)
            logging.info(f"{run_dir}: the failed run before saved nothing; its log is now {kept}")
        elif args.resume != "latest" and log.exists():
            raise SparoRunError(
                f"run folder {run_dir} already holds a run (its out.log); add --resume latest to "
                "continue it, or choose another --name (or --logs)."
            )

    def _parse_args(self, *args: Any, **kwargs: Any) -> Any:
        parsed = open_clip_train.params.parse_args(*args, **kwargs)
        self._check_options(parsed)
        return parsed

    def _check_options(self, args: Any) -> None:
        """Apply and check the SPARO flags against open_clip_train's parsed ``args``."""
        if self.options.init_from_clip is not None and args.pretrained:
            raise SparoRunError(
                "--init-from-clip and --pretrained both give starting weights; use one "
                "(--pretrained for a SPARO checkpoint, --init-from-clip for a plain CLIP one)."
            )
        if self.options.model_kwargs:
            try:
                self._stack.enter_context(
                    merged_model_config(args.model, self.options.model_kwargs)
                )
            except ValueError as error:
                raise SparoRunError(str(error)) from error
        self._check_model_name(args)
        if self.options.init_from_clip is not None:
            try:  # resolved before the run folder is made
                self.clip_checkpoint = resolve_pretrained(
                    baseline_name(args.model), self.options.init_from_clip
                )
            except FileNotFoundError as error:
                raise SparoRunError(f"--init-from-clip: {error}") from error
        self._check_run_dir(args)
        self.args = args

    def _create_model_and_transforms(self, model_name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            built = open_clip.create_model_and_transforms(model_name, *args, **kwargs)
        except (AssertionError, RuntimeError, TypeError, ValueError) as error:
            message = self._build_error(model_name, error)
            if message is None:
                raise
            raise SparoRunError(message) from error
        if model_name == self.args.model:  # not the --distill-model
            self._prepare(built[0])
        return built

    def _build_error(self, model_name: str, error: Exception) -> str | None:
        """The message of an error of OpenCLIP's model building in terms of the flags behind
        it, or None to let it through as it is."""
        detail = "; ".join(str(error).strip().splitlines()[:3]) or type(error).__name__
        if str(error).startswith("Error(s) in loading state_dict"):
            return (
                f"--pretrained {self.args.pretrained} does not fit {model_name}: {detail}; give "
                "a checkpoint of this model (or build the model with the checkpoint's sizes)."
            )
        if isinstance(error, SparoRunError):
            return None
        if self.options.model_kwargs and model_name == self.args.model:
            return (
                f"--model-kwargs {json.dumps(self.options.model_kwargs)}: {model_name} cannot "
                f"be built with these sizes: {detail}"
            )
        return detail if isinstance(error, RuntimeError) else None

    def _prepare(self, model: nn.Module) -> None:
        args, options = self.args, self.options
        master = is_master(args)
        count = sum(p.numel() for p in model.parameters())
        if master:
            logging.info(f"{args.model}: {count:,} parameters")
        if options.max_params is not None and count > options.max_params:
            raise SparoRunError(
                f"{args.model} has {count:,} parameters, more than --max-params "
                f"{options.max_params:,}; lower the model's sizes (--model-kwargs) or raise the "
                "limit. Nothing was trained."
            )
        if options.log_slot_stats and isinstance(model, torch.jit.ScriptModule):
            raise SparoRunError(
                "--log-slot-stats hooks into the eager model's read-outs, which a --torchscript "
                "model does not have; drop one of the two flags."
            )
        if options.log_slot_stats and not isinstance(model, SparoCLIP):
            raise SparoRunError(
                f"--log-slot-stats needs a SPARO model, but {args.model} is "
                f"{type(model).__name__}; drop the flag or train a sparo-* model."
            )
        if options.init_from_clip is not None:
            self._init_from_clip(model, master)

        run_dir = Path(args.logs, args.name)
        problem = None
        if master:
            try:
                write_run_config(run_dir, run_config(args.model, model, self._model_cfg(model)))
            except ValueError as error:
                problem = str(error)
        if args.distributed:  # every rank stops, or the others would wait in DDP forever
            problem = broadcast_object(args, problem)
        if problem:
            raise SparoRunError(problem)
        if options.log_slot_stats and master:
            self.slot_stats = SlotStatsLogger(
                model, options.log_slot_stats, run_dir, args.accum_freq, args.wandb
            )

    def _model_cfg(self, model: nn.Module) -> dict[str, Any]:
        """The config the model was built from. SPARO models record it; for plain OpenCLIP
        models it is the registered config (with ``--model-kwargs``)."""
        if isinstance(model, SparoCLIP):
            return model.model_cfg
        args = self.args
        forced = [
            flag
            for flag, value in (
                ("--force-quick-gelu", args.force_quick_gelu),
                ("--force-patch-dropout", args.force_patch_dropout),
                ("--force-image-size", args.force_image_size),
                ("--force-context-length", args.force_context_length),
            )
            if value
        ]
        if forced:
            logging.warning(
                f"the run's open_clip_config.json records {args.model}'s registered config; "
                f"it does not include {', '.join(forced)}: give them again when rebuilding."
            )
        return factory.get_model_config(args.model)

    def _init_from_clip(self, model: nn.Module, master: bool) -> None:
        path = self.clip_checkpoint
        if self.args.resume:  # open_clip_train has resolved --resume latest by now
            if master:
                logging.info(f"--init-from-clip skipped: resuming from {self.args.resume}")
            return
        try:
            report = init_from_clip(model, load_clip_state_dict(path))
        except (FileNotFoundError, ValueError) as error:
            raise SparoRunError(f"--init-from-clip {path}: {error}") from error
        if master:
            logging.info(f"--init-from-clip {path}:\n{report.table()}")

    def _train_one_epoch(self, *args: Any, **kwargs: Any) -> Any:
        self.started = True
        call = upstream_call(open_clip_train.train.train_one_epoch, args, kwargs)
        data, epoch, run_args = call["data"], call["epoch"], call["args"]
        steps_per_epoch = data["train"].dataloader.num_batches // run_args.accum_freq
        self.loss_check.start_epoch(epoch, steps_per_epoch)
        if self.slot_stats is not None:
            self.slot_stats.start_epoch(epoch, steps_per_epoch, call.get("tb_writer"))
        trained = self._next_train_one_epoch(*args, **kwargs)
        self.loss_check.end_epoch()
        return trained
