"""DINO self-distillation for the SPARO and class-token backbones (Caron et al., 2021).

    python -m open_clip_sparo.dino.train --data DATA --backbone sparo-ViT-S-16 ...
    torchrun --nproc_per_node G -m open_clip_sparo.dino.train --data DATA ...

A student (backbone + DINO head) learns to match an EMA teacher's centred, sharpened output on
multi-crop views; DINO's schedules drive the learning rate, weight decay, teacher momentum and
teacher temperature. Under torchrun the student is wrapped in DistributedDataParallel (NCCL on
GPU, gloo on CPU). See docs/dino.md for the design and the ImageNet recipe.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from open_clip.constants import IMAGENET_MEAN, IMAGENET_STD
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..util.errors import run_entry_point
from ..util.files import atomic_save, epoch_checkpoints, require_file, write_json
from ..util.loss_watch import NonFiniteLossWatch
from ..util.run_folder import claim_run_folder, recording_failure
from ..util.stop_signal import logged_stop
from .augment import MultiCrop, default_local_size
from .backbone import build_backbone
from .checkpoint import CONFIG_NAME, LATEST, load_checkpoint
from .configs import backbone_cfg_from_dict, get_backbone_cfg, list_backbones
from .data import TrainData, train_data
from .head import DinoHead
from .loss import DinoLoss
from .model import DinoModel, update_teacher
from .schedules import cosine_schedule, teacher_temp_schedule

log = logging.getLogger("open_clip_sparo.dino.train")
PROG = "python -m open_clip_sparo.dino.train"
PRECISIONS = ("fp32", "amp", "amp_bf16")
# the likely causes of a non-finite DINO loss, with the flags that change them
LOSS_CAUSES = (
    "a learning rate too high (--lr, --warmup-epochs)",
    "temperatures too low (--teacher-temp, --warmup-teacher-temp, --student-temp)",
    "float16 overflow (--precision amp_bf16 or fp32 instead of amp)",
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--data", required=True, help="ImageFolder or WebDataset shards (pattern or folder)")
    add("--train-num-samples", type=int, help="images in the shards (default: sizes.json)")
    add("--backbone", default="sparo-ViT-S-16", help=f"{list_backbones()} or a JSON config")
    add("--output-dir", help="the run folder (default: runs_dino/<backbone>-<time>)")
    add("--resume", help="'latest' (the run's last checkpoint, if any) or a checkpoint file")
    add("--epochs", type=int, default=100)
    add("--batch-size", type=int, default=64, help="images per process")
    add("--workers", type=int, default=8, help="data loading workers per process")
    add("--lr", type=float, default=5e-4, help="peak learning rate at a global batch of 256")
    add("--min-lr", type=float, default=1e-6)
    add("--warmup-epochs", type=int, default=10)
    add("--weight-decay", type=float, default=0.04)
    add("--weight-decay-end", type=float, default=0.4)
    add("--momentum-teacher", type=float, default=0.996, help="start of the EMA schedule (to 1)")
    add("--teacher-temp", type=float, default=0.04)
    add("--warmup-teacher-temp", type=float, default=0.04)
    add("--warmup-teacher-temp-epochs", type=int, default=0)
    add("--student-temp", type=float, default=0.1)
    add("--center-momentum", type=float, default=0.9)
    add("--out-dim", type=int, default=65536, help="K, the number of DINO head outputs")
    add("--head-hidden-dim", type=int, default=2048)
    add("--head-bottleneck-dim", type=int, default=256)
    add(
        "--no-norm-last-layer",
        dest="norm_last_layer",
        action="store_false",
        help="learn the magnitude of the head's last layer (DINO's norm_last_layer=False)",
    )
    add(
        "--head-use-bn",
        action="store_true",
        help="BatchNorm in the head's MLP (DINO's use_bn; SyncBatchNorm under DDP on GPU)",
    )
    add("--freeze-last-layer", type=int, default=1, help="epochs with the last layer frozen")
    add("--clip-grad", type=float, default=3.0, help="max gradient norm; 0 disables")
    add("--global-crop-size", type=int, help="default: the backbone's image size")
    add("--local-crop-size", type=int, help="default: 96/224 of the global size")
    add("--local-crops-number", type=int, default=8)
    add("--global-crops-scale", type=float, nargs=2, default=(0.4, 1.0))
    add("--local-crops-scale", type=float, nargs=2, default=(0.05, 0.4))
    add("--precision", choices=PRECISIONS, help="default: amp on GPU, fp32 on CPU")
    add("--device", choices=("cuda", "cpu"), help="default: cuda if available")
    add("--seed", type=int, default=0)
    add("--save-frequency", type=int, default=10, help="keep epoch_N.pt every N epochs")
    add("--log-every", type=int, default=10, help="steps between log lines")
    argv = list(sys.argv[1:] if argv is None else argv)
    return parser.parse_args(argv[1:] if argv[:1] == ["--"] else argv)


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """What evaluation needs to rebuild the backbone and its preprocessing."""
    backbone = get_backbone_cfg(args.backbone)
    return {
        "backbone": backbone.name,
        "backbone_cfg": backbone.to_dict(),
        "head": {
            "out_dim": args.out_dim,
            "hidden_dim": args.head_hidden_dim,
            "bottleneck_dim": args.head_bottleneck_dim,
            "norm_last_layer": args.norm_last_layer,
            "use_bn": args.head_use_bn,
        },
        "image_size": args.global_crop_size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


def build_student(config: dict[str, Any], seed: int) -> DinoModel:
    """The student network of a run, initialised from ``seed`` (the teacher starts equal)."""
    torch.manual_seed(seed)
    backbone = build_backbone(backbone_cfg_from_dict(config["backbone_cfg"], config["backbone"]))
    return DinoModel(backbone, DinoHead(backbone.output_dim, **config["head"]))


def param_groups(model: DinoModel) -> list[dict[str, Any]]:
    """DINO's two groups: decayed weights, and biases and 1-d parameters without decay; the
    backbone's own ``no_weight_decay()`` names (positional and class embeddings, SPARO queries)
    also go without decay."""
    skip = {f"backbone.{name}" for name in model.backbone.no_weight_decay()}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        plain = name.endswith(".bias") or param.ndim <= 1 or name in skip
        (no_decay if plain else decay).append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def init_distributed(device_name: str | None) -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the torchrun process group when there is one."""
    use_cuda = torch.cuda.is_available() if device_name is None else device_name == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda was given but CUDA is not available; use --device cpu.")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
        return dist.get_rank(), world_size, device
    return 0, 1, device


def resolve_args(args: argparse.Namespace, device: torch.device) -> None:
    """Fill the defaults that depend on the backbone and the device, and check the rest."""
    vision_cfg = get_backbone_cfg(args.backbone).vision_cfg
    patch = vision_cfg.get("patch_size", 16)
    args.global_crop_size = args.global_crop_size or vision_cfg.get("image_size", 224)
    args.local_crop_size = args.local_crop_size or default_local_size(args.global_crop_size, patch)
    for name in ("global_crop_size", "local_crop_size"):
        if getattr(args, name) % patch:
            raise ValueError(
                f"--{name.replace('_', '-')} must be a multiple of the patch size {patch}."
            )
    args.precision = args.precision or ("amp" if device.type == "cuda" else "fp32")
    if args.precision == "amp" and device.type != "cuda":
        raise ValueError("--precision amp (float16) needs a GPU; use amp_bf16 or fp32 on CPU.")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1.")
    args.output_dir = args.output_dir or str(
        Path("runs_dino") / f"{Path(args.backbone).stem}-{time.strftime('%Y_%m_%d-%H_%M_%S')}"
    )


def prepare_run_folder(args: argparse.Namespace, config: dict[str, Any]) -> Path:
    """Claim the run folder (the run-folder rule): a new run writes its config and arguments, a
    resumed one must have the same config."""
    run = Path(args.output_dir)
    resumed = claim_run_folder(
        run,
        CONFIG_NAME,
        config,
        continuing=args.resume is not None,
        adopt=True,
        what="run folder",
        fix="pass --resume latest to continue it with its own --backbone, head and crop sizes, "
        "or choose another --output-dir.",
    )
    if not resumed:
        write_json(run / "params.json", vars(args))
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """The exit status; bad input is one line ``<prog>: error: ...`` on stderr and 1. SIGTERM
    (e.g. SLURM preemption) is logged with how to resume, then ends the run (143)."""
    with logged_stop(PROG):
        return run_entry_point(PROG, _main, argv)


def _main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    rank, world_size, device = init_distributed(args.device)
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format="%(asctime)s %(message)s",
        force=True,
    )
    try:
        return train(args, rank, world_size, device)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class Schedules:
    """DINO's schedules: one value per step, and the teacher temperature per epoch."""

    lr: list[float]
    weight_decay: list[float]
    momentum: list[float]
    teacher_temp: list[float]

    @classmethod
    def from_args(cls, args: argparse.Namespace, steps: int, world_size: int) -> Schedules:
        lr_peak = args.lr * args.batch_size * world_size / 256  # DINO's linear scaling rule
        return cls(
            lr=cosine_schedule(lr_peak, args.min_lr, args.epochs, steps, args.warmup_epochs),
            weight_decay=cosine_schedule(
                args.weight_decay, args.weight_decay_end, args.epochs, steps
            ),
            momentum=cosine_schedule(args.momentum_teacher, 1.0, args.epochs, steps),
            teacher_temp=teacher_temp_schedule(
                args.warmup_teacher_temp,
                args.teacher_temp,
                args.warmup_teacher_temp_epochs,
                args.epochs,
            ),
        )


@dataclass
class Trainer:
    """The state of a DINO run and its training step."""

    student: DinoModel
    teacher: DinoModel
    dino_loss: DinoLoss
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    precision: str
    clip_grad: float
    student_ddp: nn.Module | None = None  # the student as the forward pass runs it
    kept: str = "no checkpoint was written yet"  # the last good checkpoint, for errors
    loss_watch: NonFiniteLossWatch = field(
        default_factory=lambda: NonFiniteLossWatch(1, 0, LOSS_CAUSES)
    )

    def state_dict(self) -> dict[str, Any]:
        return {
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "loss": self.dino_loss.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.dino_loss.load_state_dict(state["loss"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "amp" else torch.bfloat16
        return torch.autocast(device.type, dtype=dtype)

    def step(
        self,
        crops: list[torch.Tensor],
        lr: float,
        weight_decay: float,
        momentum: float,
        teacher_temp: float,
        freeze_last_layer: bool,
        step: int = 0,
    ) -> torch.Tensor:
        """One optimisation step of the student and one EMA step of the teacher; the loss.
        The loss goes to :attr:`loss_watch` as step ``step`` (no device sync): the loop checks
        it at its log steps and before each checkpoint."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.param_groups[0]["weight_decay"] = weight_decay  # the decayed group
        with self.autocast(crops[0].device):
            with torch.no_grad():
                teacher_out = self.teacher(crops[:2])  # (2 * B, K), global crops only
            student_out = (self.student_ddp or self.student)(crops)  # (num_crops * B, K)
            loss = self.dino_loss(student_out, teacher_out, teacher_temp, len(crops))
        self.loss_watch.watch(loss, step)

        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if freeze_last_layer:  # before clipping: a frozen layer's gradient must not count
            for param in self.student.head.last_layer.parameters():
                param.grad = None
        if self.clip_grad > 0:
            nn.utils.clip_grad_norm_(self.student.parameters(), self.clip_grad)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        update_teacher(self.teacher, self.student, momentum)
        return loss.detach()


def train(args: argparse.Namespace, rank: int, world_size: int, device: torch.device) -> int:
    resolve_args(args, device)
    config = run_config(args)
    run = prepare_run_folder(args, config) if rank == 0 else None
    if world_size > 1:
        shared = [run]  # rank 0's folder: a default name holds its clock time
        dist.broadcast_object_list(shared, src=0)
        run = shared[0]
    with recording_failure(run) if rank == 0 else contextlib.nullcontext():
        return _train_in(run, args, config, rank, world_size, device)


def _train_in(
    run: Path,
    args: argparse.Namespace,
    config: dict[str, Any],
    rank: int,
    world_size: int,
    device: torch.device,
) -> int:
    """Train in the claimed run folder ``run``; the exit status."""

    student = build_student(config, args.seed).to(device)
    if args.head_use_bn and world_size > 1 and device.type == "cuda":
        student = nn.SyncBatchNorm.convert_sync_batchnorm(student)  # as DINO; CPU has none
    teacher = copy.deepcopy(student).requires_grad_(False).eval()
    teacher.head.train(args.head_use_bn)  # BatchNorm on the batch's statistics, as DINO's teacher
    trainer = Trainer(
        student=student,
        teacher=teacher,
        dino_loss=DinoLoss(args.out_dim, args.student_temp, args.center_momentum).to(device),
        optimizer=torch.optim.AdamW(param_groups(student)),
        scaler=torch.amp.GradScaler("cuda") if args.precision == "amp" else None,
        precision=args.precision,
        clip_grad=args.clip_grad,
    )
    start_epoch = 0
    resume_from = _resume_path(args, run)
    if resume_from is not None:
        checkpoint = load_checkpoint(resume_from)
        if checkpoint["config"] != config:
            raise ValueError(
                f"{resume_from} was trained with another model config; resume with its own "
                "--backbone, head and crop sizes."
            )
        trainer.load_state_dict(checkpoint)
        start_epoch = checkpoint["epoch"]
        trainer.kept = f"the last good checkpoint is {resume_from}"
        log.info("resumed from %s at epoch %d", resume_from, start_epoch)
    if start_epoch >= args.epochs:
        log.info("the run has already trained %d epochs; nothing to do.", start_epoch)
        return 0
    _check_nothing_overwritten(run, start_epoch)
    if world_size > 1:
        device_ids = [device] if device.type == "cuda" else None  # gloo: no device ids
        trainer.student_ddp = DistributedDataParallel(student, device_ids=device_ids)

    augment = MultiCrop(
        args.global_crop_size,
        args.local_crop_size,
        args.local_crops_number,
        tuple(args.global_crops_scale),
        tuple(args.local_crops_scale),
    )
    data = train_data(
        args.data,
        augment,
        args.batch_size,
        args.workers,
        rank,
        world_size,
        args.seed,
        args.train_num_samples,
    )
    steps = data.steps_per_epoch
    trainer.loss_watch.steps_per_epoch, trainer.loss_watch.rank = steps, rank
    schedules = Schedules.from_args(args, steps, world_size)
    log.info(
        "%s: %d processes x %d images, %d steps an epoch, %d crops of %d and %d px",
        config["backbone"],
        world_size,
        args.batch_size,
        steps,
        augment.num_crops,
        args.global_crop_size,
        args.local_crop_size,
    )

    for epoch in range(start_epoch, args.epochs):
        # every epoch reseeds, so a resumed run repeats the augmentations it would have drawn
        torch.manual_seed(args.seed + 1000 * epoch + rank)
        student.train()
        for i, crops in enumerate(data.batches(epoch)):
            it = epoch * steps + i
            loss = trainer.step(
                [c.to(device, non_blocking=True) for c in crops],
                lr=schedules.lr[it],
                weight_decay=schedules.weight_decay[it],
                momentum=schedules.momentum[it],
                teacher_temp=schedules.teacher_temp[epoch],
                freeze_last_layer=epoch < args.freeze_last_layer,
                step=it,
            )
            if i % args.log_every == 0 or i == steps - 1:
                trainer.loss_watch.check(it, lambda: trainer.kept, distributed=world_size > 1)
                if world_size > 1:
                    dist.all_reduce(loss)
                    loss /= world_size
                record = {
                    "epoch": epoch,
                    "step": it,
                    "loss": loss.item(),
                    "lr": schedules.lr[it],
                    "weight_decay": schedules.weight_decay[it],
                    "momentum": schedules.momentum[it],
                    "teacher_temp": schedules.teacher_temp[epoch],
                }
                if rank == 0:
                    log.info("epoch %d step %d/%d loss %.4f", epoch, i + 1, steps, loss.item())
                    with (run / "log.jsonl").open("a") as f:
                        f.write(json.dumps(record) + "\n")
        trainer.loss_watch.check((epoch + 1) * steps - 1, lambda: trainer.kept, world_size > 1)
        if rank == 0:
            state = {
                "epoch": epoch + 1,
                "config": config,
                **trainer.state_dict(),
                "args": vars(args),
            }
            (run / "checkpoints").mkdir(exist_ok=True)
            atomic_save(state, run / "checkpoints" / LATEST)
            if (epoch + 1) % args.save_frequency == 0 or epoch + 1 == args.epochs:
                atomic_save(state, run / "checkpoints" / f"epoch_{epoch + 1}.pt")
        trainer.kept = f"the last good checkpoint is {run / 'checkpoints' / LATEST}"
        _report_skipped(data, epoch, rank, world_size, device)
    return 0


def _report_skipped(
    data: TrainData, epoch: int, rank: int, world_size: int, device: torch.device
) -> None:
    """Log the training images skipped in ``epoch``, summed over processes (each calls this)."""
    if data.skipped is None:
        return

    def sum_over_ranks(counts: list[int]) -> list[int]:
        summed = torch.tensor(counts, device=device)
        dist.all_reduce(summed)
        return summed.tolist()

    data.skipped.report(epoch, sum_over_ranks if world_size > 1 else None, log=rank == 0)


def _check_nothing_overwritten(run: Path, start_epoch: int) -> None:
    later = [
        path.name
        for epoch, path in epoch_checkpoints(run / "checkpoints").items()
        if epoch > start_epoch
    ]
    latest = run / "checkpoints" / LATEST
    if latest.is_file() and load_checkpoint(latest)["epoch"] > start_epoch:
        later.append(LATEST)
    if later:
        raise FileExistsError(
            f"{run} already has {sorted(later)} past epoch {start_epoch}, which this run would "
            "overwrite; resume from the latest checkpoint or choose another --output-dir."
        )


def _resume_path(args: argparse.Namespace, run: Path) -> Path | None:
    if args.resume is None:
        return None
    if args.resume == "latest":
        latest = run / "checkpoints" / LATEST
        return latest if latest.is_file() else None
    return require_file(
        args.resume, "--resume", "give a checkpoint file (checkpoints/epoch_N.pt) or 'latest'."
    )


if __name__ == "__main__":
    sys.exit(main())
