"""ControlCfg: the control_cfg block, its defaults and its errors."""

import pytest

from open_clip_sparo.controls.config import ControlCfg


def test_codebook_defaults_are_the_forks():
    cfg = ControlCfg.from_dict({"kind": "codebook"})
    assert (cfg.num_codes, cfg.temperature) == (16384, 1000.0)
    assert cfg.to_dict() == {"kind": "codebook", "num_codes": 16384, "temperature": 1000.0}
    assert ControlCfg.from_dict({"kind": "gap"}).to_dict() == {"kind": "gap"}


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"kind": "pool"}, "control_cfg.kind='pool' is unknown"),
        ({}, "control_cfg needs `kind`"),
        ({"kind": "gap", "size": 3}, "unknown keys ['size']"),
        ({"kind": "bottleneck"}, "control_cfg.bottleneck_dim must be an integer >= 1"),
        ({"kind": "bottleneck", "bottleneck_dim": 0}, "bottleneck_dim must be an integer"),
        ({"kind": "gap", "bottleneck_dim": 8}, "bottleneck_dim does not apply to kind 'gap'"),
        ({"kind": "bottleneck", "bottleneck_dim": 8, "num_codes": 4}, "num_codes does not"),
        ({"kind": "codebook", "num_codes": True}, "num_codes must be an integer"),
        ({"kind": "codebook", "temperature": 0}, "temperature must be a positive number"),
        ({"kind": "codebook", "temperature": "hot"}, "temperature must be a positive number"),
    ],
)
def test_invalid_configs_name_the_key(cfg, message):
    with pytest.raises(ValueError, match=None) as error:
        ControlCfg.from_dict(cfg)
    assert message in str(error.value)


def test_the_built_kind_must_match():
    with pytest.raises(ValueError, match="a 'gap' control was built"):
        ControlCfg.from_dict({"kind": "codebook"}, "gap")
    with pytest.raises(ValueError, match="JSON object"):
        ControlCfg.from_dict(["gap"])
