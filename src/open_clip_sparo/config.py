"""SPARO configuration: the ``sparo_cfg`` block of a model config, validated at construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

SLOT_REPRS = ("cont", "sem", "sqrtsem")
SLOT_WEIGHTS = ("const", "norm", "softmax", "sqrtsoftmax")
# slot weightings that need one extra logit per slot from the read-out
LOGIT_SLOT_WEIGHTS = ("softmax", "sqrtsoftmax")


@dataclass(frozen=True)
class SparoCfg:
    """Sizes and options of the SPARO read-out (docs/model.md).

    ``None`` sizes resolve per tower: ``attn_dim`` to ``width // heads``, ``value_dim`` to
    ``attn_dim`` and ``num_heads`` to ``num_slots``.
    """

    num_slots: int = 64
    slot_dim: int = 64
    attn_dim: int | None = None
    value_dim: int | None = None
    num_heads: int | None = None
    share_kv: bool = True
    share_queries: bool = False
    slot_repr: str = "cont"
    slot_weight: str = "const"
    reduce_depth: int = 1

    def __post_init__(self) -> None:
        for name in ("num_slots", "slot_dim"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("attn_dim", "value_dim", "num_heads"):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, minimum=1)
        _check_int("reduce_depth", self.reduce_depth, minimum=0)
        for name in ("share_kv", "share_queries"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"sparo_cfg.{name} must be true or false, got {getattr(self, name)!r}."
                )
        if self.slot_repr not in SLOT_REPRS:
            raise ValueError(
                f"sparo_cfg.slot_repr={self.slot_repr!r} is unknown; use one of {list(SLOT_REPRS)}."
            )
        if self.slot_weight not in SLOT_WEIGHTS:
            raise ValueError(
                f"sparo_cfg.slot_weight={self.slot_weight!r} is unknown; "
                f"use one of {list(SLOT_WEIGHTS)}."
            )
        if self.num_heads is not None and self.num_slots % self.num_heads:
            raise ValueError(
                f"sparo_cfg.num_heads={self.num_heads} does not divide "
                f"num_slots={self.num_slots}; choose num_heads among the divisors of num_slots "
                f"{_divisors(self.num_slots)} (or null for one head per slot)."
            )
        if (
            self.share_kv
            and None not in (self.value_dim, self.attn_dim)
            and self.value_dim != self.attn_dim
        ):
            raise ValueError(
                f"sparo_cfg.value_dim={self.value_dim} differs from attn_dim={self.attn_dim}, "
                "but share_kv=true uses the keys as values; set share_kv to false or make "
                "value_dim equal attn_dim."
            )

    @classmethod
    def from_dict(cls, cfg: dict[str, Any] | SparoCfg | None) -> SparoCfg:
        """Build from a config dict, rejecting unknown keys with the list of known ones."""
        if cfg is None:
            return cls()
        if isinstance(cfg, SparoCfg):
            return cfg
        if not isinstance(cfg, dict):
            raise ValueError(f"sparo_cfg must be a JSON object (dict), got {type(cfg).__name__}.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ValueError(f"sparo_cfg has unknown keys {unknown}; the known keys are {known}.")
        return cls(**cfg)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def readout_dim(self) -> int:
        """Per-slot output size of the read-out: ``slot_dim`` plus one weight logit if needed."""
        return self.slot_dim + (self.slot_weight in LOGIT_SLOT_WEIGHTS)

    @property
    def embed_dim(self) -> int:
        return self.num_slots * self.slot_dim


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"sparo_cfg.{name} must be an integer >= {minimum}, got {value!r}.")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
