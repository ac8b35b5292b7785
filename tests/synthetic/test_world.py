import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from open_clip_sparo.synthetic.world import (
    ALL_PAIRS,
    HELD_OUT_PAIRS,
    NEGATIVE_KINDS,
    SEEN_PAIRS,
    Scene,
    SceneObject,
    hard_negative,
    render,
    sample_scene,
)


def test_held_out_pairs_are_excluded_from_seen_pairs():
    assert not set(SEEN_PAIRS) & HELD_OUT_PAIRS
    assert set(SEEN_PAIRS) | HELD_OUT_PAIRS == set(ALL_PAIRS)
    assert len({shape for _, shape in HELD_OUT_PAIRS}) == len(HELD_OUT_PAIRS)


def test_caption_names_every_attribute():
    scene = Scene(
        (
            SceneObject("red", "circle", "large", "left"),
            SceneObject("blue", "cross", "small", "right"),
        )
    )
    assert scene.caption() == "a large red circle on the left and a small blue cross on the right"


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32), num_objects=st.sampled_from([1, 2]))
def test_scenes_are_deterministic_and_valid(seed, num_objects):
    first = sample_scene(random.Random(seed), SEEN_PAIRS, num_objects)
    assert first == sample_scene(random.Random(seed), SEEN_PAIRS, num_objects)
    assert len(first.objects) == num_objects
    assert all(obj.pair in SEEN_PAIRS for obj in first.objects)
    if num_objects == 2:
        assert {obj.position for obj in first.objects} == {"left", "right"}
        assert first.objects[0].pair != first.objects[1].pair
    image = render(first, random.Random(seed))
    assert image.size == (64, 64)
    assert image.tobytes() == render(first, random.Random(seed)).tobytes()


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32), kind=st.sampled_from(NEGATIVE_KINDS))
def test_hard_negatives_differ_from_the_caption_in_the_named_way(seed, kind):
    rng = random.Random(seed)
    scene = sample_scene(rng, ALL_PAIRS, 1 if kind == "add_obj" else 2)
    negative = hard_negative(scene, kind, rng)
    if negative is None:  # e.g. swapping two equal colours changes nothing
        field = "color" if kind == "swap_att" else "shape"
        assert getattr(scene.objects[0], field) == getattr(scene.objects[1], field)
        return
    caption = scene.caption()
    assert negative != caption
    if kind in ("swap_att", "swap_obj"):
        assert sorted(negative.split()) == sorted(caption.split())
    elif kind in ("replace_att", "replace_obj"):
        changed = [a for a, b in zip(caption.split(), negative.split(), strict=True) if a != b]
        assert len(changed) == 1
    else:
        assert negative.startswith(caption + " and ")


def test_unknown_negative_kind():
    scene = sample_scene(random.Random(0), SEEN_PAIRS, 2)
    with pytest.raises(ValueError, match="swap_att"):
        hard_negative(scene, "replace_rel", random.Random(0))
