import logging

import open_clip
import pytest
import torch
from fork_utils import (
    VARIANTS,
    build,
    embeddings,
    fork_config,
    fork_embeddings,
    save_fork_training_checkpoint,
    to_fork_layout,
)

from open_clip_sparo.fork.state_dict import from_fork_layout, is_fork_layout
from open_clip_sparo.io.loading import load_model


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fork_tensors_give_the_forks_embeddings(variant, caplog):
    """Loaded through the hook, the fork's tensors give what the fork's formulas give."""
    cfg = fork_config(**VARIANTS[variant])
    original = build(cfg, seed=0)
    fork = to_fork_layout(original)
    assert is_fork_layout(fork) and not is_fork_layout(original.state_dict())
    loaded = build(cfg, seed=1)
    with caplog.at_level(logging.INFO, logger="open_clip_sparo.fork.state_dict"):
        loaded.load_state_dict(fork)
    assert "authors' fork" in caplog.text
    expected = fork_embeddings(original, fork, cfg)
    torch.testing.assert_close(embeddings(loaded, cfg), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(embeddings(loaded, cfg), embeddings(original, cfg), rtol=0, atol=0)


def test_queries_are_ordered_head_major():
    cfg = build(fork_config(sparo_heads=2)).sparo_cfg
    q_emb = torch.arange(2 * 4 * 16.0).reshape(1, 2, 4, 1, 16)
    queries = from_fork_layout({"visual.sparo.q_emb": q_emb}, cfg)["visual.sparo.queries"]
    for head in range(2):
        for s in range(4):
            assert torch.equal(queries[head * 4 + s], q_emb[0, head, s, 0])


def test_bottleneck_projections_are_dropped():
    model = build(fork_config())
    fork = to_fork_layout(model) | {"vision_bottleproj.weight": torch.zeros(64, 32)}
    converted = from_fork_layout(fork, model.sparo_cfg, model.state_dict())
    assert "vision_bottleproj.weight" not in converted


@pytest.mark.parametrize(
    ("trained", "built", "message"),
    [
        ({"share_kv": False}, {}, "visual.sparo.v.weight differs from visual.sparo.k.weight"),
        ({}, {"share_queries": True}, "text_sparo.q_emb differs from visual.sparo.q_emb"),
        ({"L": 16, "embed_dim": 128}, {}, r"visual.sparo.queries: checkpoint \(16, 16\)"),
        ({"sparo_type": "cont:softmax"}, {}, r"visual.sparo.out.weight: checkpoint \(9, 16\)"),
    ],
)
def test_a_checkpoint_of_other_options_names_keys_and_points_to_convert_fork(
    trained, built, message
):
    fork = to_fork_layout(build(fork_config(**trained)))
    model = build(fork_config(**built))
    with pytest.raises(ValueError, match=message) as error:
        model.load_state_dict(fork)
    assert "sparo convert-fork --config FORK.json" in str(error.value)


def test_unknown_read_out_tensors_are_named():
    model = build(fork_config())
    fork = to_fork_layout(model) | {"text_sparo.scale": torch.ones(())}
    with pytest.raises(ValueError, match=r"text_sparo\.scale is not a parameter"):
        model.load_state_dict(fork)


def test_sparo_commands_load_a_fork_checkpoint_of_a_registered_model_as_is(tmp_path):
    """``load_model``, which every ``sparo`` command uses, takes the fork's ``epoch_N.pt``."""
    cfg = fork_config(L=16, V=16, embed_dim=256)  # the fork's twin of sparo-ViT-Ti-8-64
    cfg["vision_cfg"] = {"image_size": 64, "layers": 4, "width": 128, "head_width": 32,
                         "patch_size": 8}  # fmt: skip
    cfg["text_cfg"] = {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4,
                       "layers": 4}  # fmt: skip
    original = build(cfg)
    fork = to_fork_layout(original)
    checkpoint = save_fork_training_checkpoint(fork, tmp_path / "epoch_1.pt")
    loaded = load_model("sparo-ViT-Ti-8-64", str(checkpoint)).model
    expected = fork_embeddings(original, fork, cfg)
    torch.testing.assert_close(embeddings(loaded, cfg), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_checkpoint_is_named_before_any_option_check(value):
    model = build(fork_config())
    fork = to_fork_layout(model)
    assert torch.equal(fork["visual.sparo.v.weight"], fork["visual.sparo.k.weight"])  # share_kv
    damaged = torch.full_like(fork["visual.sparo.k.weight"], value)  # a diverged run's
    fork["visual.sparo.k.weight"] = fork["visual.sparo.v.weight"] = damaged
    # before: "visual.sparo.v.weight differs from visual.sparo.k.weight, so it was trained with
    # share_kv=false" (NaN != NaN)
    with pytest.raises(ValueError) as error:
        model.load_state_dict(fork)
    assert str(error.value).startswith(
        "the checkpoint holds NaN or infinite values in visual.sparo.k.weight, "
        "visual.sparo.v.weight: it was saved by a run that diverged"
    )
    assert "share_kv" not in str(error.value)


def test_a_checkpoint_of_other_tower_sizes_is_told_without_guessing_its_read_out(tmp_path):
    """Its tensors are in the fork's layout, not missing: the size error lists the mismatches
    and does not say the checkpoint has no read-out."""
    path = save_fork_training_checkpoint(to_fork_layout(build(fork_config())), tmp_path / "e.pt")
    with pytest.raises(ValueError, match="other sizes than this model") as error:
        open_clip.create_model("sparo-ViT-Ti-8-64", pretrained=str(path))
    assert "visual.conv1.weight (64,3,8,8) vs (128,3,8,8)" in str(error.value)
    assert "no SPARO read-out" not in str(error.value)
