"""``--log-slot-stats``: per-slot diagnostics of a SPARO model during training.

Every ``every`` optimizer steps, from the training batch of that step (on the logging rank):

- ``image_attn_entropy`` / ``text_attn_entropy``: per slot, the entropy (nats) of the read-out's
  attention over tokens, averaged over the batch. ``log(N)`` means uniform attention over ``N``
  tokens, 0 means a single token.
- ``slot_agreement``: per slot, the cosine between the image's and its own caption's slot
  vectors, averaged over the batch; its mean over slots is the paired image-text similarity.

They go to the run's log (summary and per-slot values), to ``<run>/slot_stats.jsonl``, and to
TensorBoard and W&B when the run reports there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from open_clip_sparo import SparoCLIP


def attention_entropy(attn: torch.Tensor) -> torch.Tensor:
    """``(B, L, N)`` attention rows -> ``(L,)`` mean entropy per slot; 0 * log 0 counts as 0."""
    attn = attn.float()
    return -torch.xlogy(attn, attn).sum(-1).mean(0)


def slot_agreement(image_slots: torch.Tensor, text_slots: torch.Tensor) -> torch.Tensor:
    """``(B, L, V)`` paired image and text slots -> ``(L,)`` mean cosine per slot."""
    return F.cosine_similarity(image_slots.float(), text_slots.float(), dim=-1).mean(0)


class SlotStatsLogger:
    """Forward hooks on a :class:`SparoCLIP` that log slot statistics every ``every`` steps.

    Steps are counted as open_clip_train counts them: call :meth:`start_epoch` before each
    epoch; every training forward pass with gradients is one batch, ``accum_freq`` of them one
    step. Passes without gradients (evaluation, accumulation caching) are not counted.
    """

    def __init__(
        self,
        model: SparoCLIP,
        every: int,
        run_dir: Path,
        accum_freq: int = 1,
        use_wandb: bool = False,
    ) -> None:
        if every < 1:
            raise ValueError(f"--log-slot-stats takes a step interval >= 1, got {every}.")
        self.every, self.accum_freq = every, accum_freq
        self.path = Path(run_dir) / "slot_stats.jsonl"
        self.use_wandb = use_wandb
        self.writer: Any = None
        self.first_step, self.batches, self.step = 0, 0, None
        self.attn: dict[str, torch.Tensor] = {}
        self.handles = [
            model.register_forward_pre_hook(self._before_forward),
            model.visual.sparo.register_forward_hook(self._keep_attn("image")),
            model.text_sparo.register_forward_hook(self._keep_attn("text")),
            model.register_forward_hook(self._after_forward),
        ]

    def start_epoch(self, epoch: int, steps_per_epoch: int, writer: Any = None) -> None:
        self.first_step, self.batches, self.writer = epoch * steps_per_epoch, 0, writer

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _before_forward(self, module: nn.Module, args: Any) -> None:
        self.step = None
        if not (module.training and torch.is_grad_enabled()):
            return
        step, batch_in_step = divmod(self.batches, self.accum_freq)
        self.batches += 1
        step += self.first_step
        if batch_in_step == 0 and step % self.every == 0:
            self.step = step

    def _keep_attn(self, tower: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: tuple[torch.Tensor, torch.Tensor]) -> None:
            if self.step is not None:
                self.attn[tower] = output[1].detach()  # (B, L, N)

        return hook

    def _after_forward(self, module: SparoCLIP, args: Any, output: Any) -> None:
        if self.step is None:
            return
        image, text = (
            (output["image_features"], output["text_features"])
            if isinstance(output, dict)
            else output[:2]
        )
        slots = (len(image), module.num_slots, module.slot_dim)
        stats = {
            "image_attn_entropy": attention_entropy(self.attn.pop("image")),
            "text_attn_entropy": attention_entropy(self.attn.pop("text")),
            "slot_agreement": slot_agreement(image.detach().view(slots), text.detach().view(slots)),
        }
        self.log(self.step, {name: values.tolist() for name, values in stats.items()})

    def log(self, step: int, stats: dict[str, list[float]]) -> None:
        """Write per-slot ``stats`` of ``step`` to every enabled destination."""
        logging.info(
            f"Slot stats step {step}: "
            + ", ".join(
                f"{name} mean {_mean(values):.4f} (min {min(values):.4f}, max {max(values):.4f})"
                for name, values in stats.items()
            )
        )
        for name, values in stats.items():
            logging.info(f"Slot stats step {step}: {name} per slot: " + _format(values))
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **stats}) + "\n")

        scalars = {f"slots/{name}_mean": _mean(values) for name, values in stats.items()}
        for name, values in stats.items():
            scalars.update({f"slots/{name}/{slot:03d}": v for slot, v in enumerate(values)})
        if self.writer is not None:
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, step)
        if self.use_wandb:
            import wandb  # open_clip_train has checked it is installed

            wandb.log(scalars, step=step)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _format(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)
