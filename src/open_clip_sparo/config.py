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
    """Sizes and options of the SPARO read-out (docs/model.md): the one validator of a
    ``sparo_cfg``, and (:meth:`tower`) the one place its per-tower defaults resolve.

    ``None`` sizes resolve per tower: ``attn_dim`` to the tower's head width, ``value_dim`` to
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
        _check_choice("slot_repr", self.slot_repr, SLOT_REPRS)
        _check_choice("slot_weight", self.slot_weight, SLOT_WEIGHTS)
        if self.num_heads is not None:
            _check_heads(self.num_slots, self.num_heads)
        if self.attn_dim is not None:
            _check_value_dim(self.share_kv, self.value_dim, self.attn_dim)

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

    def tower(self, tower: str, width: int, head_width: int, layers: int) -> TowerSizes:
        """The read-out sizes for a tower of token ``width``, attention heads of ``head_width``
        and ``layers`` blocks (before ``reduce_depth``), with the ``None`` sizes resolved:
        ``attn_dim`` to ``head_width``, ``value_dim`` to ``attn_dim``, ``num_heads`` to
        ``num_slots``. Checks what needs the tower."""
        if self.reduce_depth >= layers:
            raise ValueError(
                f"sparo_cfg.reduce_depth={self.reduce_depth} must be below {tower}.layers="
                f"{layers}; lower reduce_depth."
            )
        attn_dim = self.attn_dim or head_width
        value_dim = self.value_dim or attn_dim
        _check_value_dim(self.share_kv, value_dim, attn_dim, tower)
        return TowerSizes(
            width=width,
            layers=layers - self.reduce_depth,
            attn_dim=attn_dim,
            value_dim=value_dim,
            num_heads=self.num_heads or self.num_slots,
        )


@dataclass(frozen=True)
class TowerSizes:
    """What :meth:`SparoCfg.tower` resolves for one tower: its token ``width``, the ``layers``
    it keeps, and the read-out's per-head ``attn_dim``, ``value_dim`` and ``num_heads``."""

    width: int
    layers: int
    attn_dim: int
    value_dim: int
    num_heads: int


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """The option ``name`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"sparo_cfg.{name}={value!r} is unknown; use one of {list(choices)}.")


def _check_heads(num_slots: int, num_heads: int) -> None:
    """``num_heads`` key/value heads must divide ``num_slots`` slots."""
    if num_slots % num_heads:
        raise ValueError(
            f"sparo_cfg.num_heads={num_heads} does not divide num_slots={num_slots}; choose "
            f"num_heads among the divisors of num_slots {_divisors(num_slots)} (or null for one "
            "head per slot)."
        )


def _check_value_dim(
    share_kv: bool, value_dim: int | None, attn_dim: int, tower: str | None = None
) -> None:
    """With ``share_kv`` the keys are the values, so ``value_dim`` must equal ``attn_dim``."""
    if share_kv and value_dim is not None and value_dim != attn_dim:
        where = f"the {tower} tower's " if tower else ""
        raise ValueError(
            f"sparo_cfg.value_dim={value_dim} differs from {where}attn_dim={attn_dim}, but "
            "share_kv=true uses the keys as values; set share_kv to false, drop value_dim or "
            "make it equal attn_dim."
        )


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"sparo_cfg.{name} must be an integer >= {minimum}, got {value!r}.")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
