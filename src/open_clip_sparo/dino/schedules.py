"""DINO's per-step schedules: learning rate, weight decay, teacher momentum and temperature."""

from __future__ import annotations

import math


def cosine_schedule(
    base: float,
    final: float,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: int = 0,
) -> list[float]:
    """One value per step, as DINO's ``cosine_scheduler``: a linear warm-up from 0 to ``base``
    (both included) over ``warmup_epochs``, then a half cosine from ``base`` towards ``final``."""
    total = epochs * steps_per_epoch
    warmup = min(warmup_epochs * steps_per_epoch, total)
    values = [base * i / max(warmup - 1, 1) for i in range(warmup)]
    decay = total - warmup
    values += [
        final + 0.5 * (base - final) * (1 + math.cos(math.pi * i / decay)) for i in range(decay)
    ]
    return values


def teacher_temp_schedule(
    warmup_temp: float, temp: float, warmup_epochs: int, epochs: int
) -> list[float]:
    """One teacher temperature per epoch: linear from ``warmup_temp`` to ``temp`` over
    ``warmup_epochs`` (``warmup_temp`` at epoch 0, ``temp`` at ``warmup_epochs - 1``), then
    ``temp``."""
    warmup = min(warmup_epochs, epochs)
    ramp = [warmup_temp + (temp - warmup_temp) * i / max(warmup - 1, 1) for i in range(warmup)]
    return ramp + [temp] * (epochs - warmup)
