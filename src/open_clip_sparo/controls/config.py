"""The ``control_cfg`` block of a control model's config (docs/model.md, "Controls"), validated."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

CONTROL_KINDS = ("gap", "bottleneck", "codebook")
# the keys each kind takes (besides `kind`), and the codebook's defaults: the fork's CLIP defaults
KIND_KEYS = {"gap": (), "bottleneck": ("bottleneck_dim",), "codebook": ("num_codes", "temperature")}
CODEBOOK_DEFAULTS = {"num_codes": 16384, "temperature": 1000.0}


@dataclass(frozen=True)
class ControlCfg:
    """One of the paper's controls: ``kind`` and the sizes that kind takes.

    - ``gap``: image embedding from the mean of all output tokens (class token included);
    - ``bottleneck``: towers project to ``bottleneck_dim``, then a per-tower
      ``Linear(bottleneck_dim -> embed_dim)``;
    - ``codebook``: an FDT-style read-out over ``num_codes`` shared codes of ``embed_dim``
      dims, its logits divided by ``temperature`` (``None`` takes the fork's 16384 and 1000).
    """

    kind: str
    bottleneck_dim: int | None = None
    num_codes: int | None = None
    temperature: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in CONTROL_KINDS:
            raise ValueError(
                f"control_cfg.kind={self.kind!r} is unknown; use one of {list(CONTROL_KINDS)}."
            )
        for name in ("bottleneck_dim", "num_codes", "temperature"):
            if getattr(self, name) is not None and name not in KIND_KEYS[self.kind]:
                raise ValueError(
                    f"control_cfg.{name} does not apply to kind {self.kind!r}; remove it (the "
                    f"keys of {self.kind!r} are {list(KIND_KEYS[self.kind])})."
                )
        if self.kind == "bottleneck":
            _check_int("bottleneck_dim", self.bottleneck_dim)
        if self.kind == "codebook":
            for name, default in CODEBOOK_DEFAULTS.items():
                if getattr(self, name) is None:
                    object.__setattr__(self, name, default)
            _check_int("num_codes", self.num_codes)
            temperature = self.temperature
            if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
                raise ValueError(
                    f"control_cfg.temperature must be a positive number, got {temperature!r}."
                )
            if not temperature > 0:
                raise ValueError(
                    f"control_cfg.temperature must be a positive number, got {temperature!r}."
                )
            object.__setattr__(self, "temperature", float(temperature))

    @classmethod
    def from_dict(cls, cfg: dict[str, Any] | ControlCfg, kind: str | None = None) -> ControlCfg:
        """Build from a config dict, rejecting unknown keys; ``kind``, when given, is the kind
        the caller builds and the config must name."""
        if not isinstance(cfg, ControlCfg):
            if not isinstance(cfg, dict):
                raise ValueError(
                    f"control_cfg must be a JSON object (dict), got {type(cfg).__name__}."
                )
            known = [f.name for f in fields(cls)]
            unknown = sorted(set(cfg) - set(known))
            if unknown:
                raise ValueError(
                    f"control_cfg has unknown keys {unknown}; the known keys are {known}."
                )
            if "kind" not in cfg:
                raise ValueError(f"control_cfg needs `kind`, one of {list(CONTROL_KINDS)}.")
            cfg = cls(**cfg)
        if kind is not None and cfg.kind != kind:
            raise ValueError(f"control_cfg.kind={cfg.kind!r}, but a {kind!r} control was built.")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The keys that apply to this kind (what a saved config holds)."""
        return {k: v for k, v in asdict(self).items() if k == "kind" or k in KIND_KEYS[self.kind]}


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"control_cfg.{name} must be an integer >= 1, got {value!r}; set it in control_cfg."
        )
