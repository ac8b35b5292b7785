import pytest

from open_clip_sparo import SparoCfg


def test_defaults_match_docs_model():
    cfg = SparoCfg()
    assert cfg.to_dict() == {
        "num_slots": 64,
        "slot_dim": 64,
        "attn_dim": None,
        "value_dim": None,
        "num_heads": None,
        "share_kv": True,
        "share_queries": False,
        "slot_repr": "cont",
        "slot_weight": "const",
        "reduce_depth": 1,
    }
    assert cfg.embed_dim == 4096 and cfg.readout_dim == 64


def test_weight_logit_adds_one_readout_dim():
    assert SparoCfg(slot_weight="softmax").readout_dim == 65
    assert SparoCfg(slot_weight="sqrtsoftmax").readout_dim == 65
    assert SparoCfg(slot_weight="norm").readout_dim == 64


def test_round_trip_through_dict():
    cfg = SparoCfg(num_slots=8, slot_dim=4, num_heads=2, share_kv=False, value_dim=16)
    assert SparoCfg.from_dict(cfg.to_dict()) == cfg
    assert SparoCfg.from_dict(None) == SparoCfg()


@pytest.mark.parametrize(
    ("cfg", "key", "hint"),
    [
        ({"num_slots": 0}, "num_slots", ">= 1"),
        ({"slot_dim": -4}, "slot_dim", ">= 1"),
        ({"slot_dim": 4.0}, "slot_dim", "integer"),
        ({"attn_dim": 0}, "attn_dim", ">= 1"),
        ({"value_dim": "64"}, "value_dim", "integer"),
        ({"num_heads": True}, "num_heads", "integer"),
        ({"reduce_depth": -1}, "reduce_depth", ">= 0"),
        ({"share_kv": "yes"}, "share_kv", "true or false"),
        ({"share_queries": 1}, "share_queries", "true or false"),
        ({"slot_repr": "dense"}, "slot_repr", "cont"),
        ({"slot_weight": "uniform"}, "slot_weight", "sqrtsoftmax"),
        ({"num_slots": 12, "num_heads": 5}, "num_heads", r"\[1, 2, 3, 4, 6, 12\]"),
        ({"attn_dim": 32, "value_dim": 16}, "value_dim", "share_kv"),
        ({"num_slot": 4}, "unknown keys", "num_slots"),
    ],
)
def test_invalid_values_name_the_key_and_the_fix(cfg, key, hint):
    with pytest.raises(ValueError, match=key) as err:
        SparoCfg.from_dict(cfg)
    assert err.match(hint)


def test_non_dict_config_is_rejected():
    with pytest.raises(ValueError, match="JSON object"):
        SparoCfg.from_dict([64, 64])
