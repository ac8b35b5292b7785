"""Golden outputs: seeded models must still give the numbers committed in ``tests/golden/``.

An upstream change (open_clip, torch) or a change of ours that moves an initial weight, an
embedding or an attention map fails here, naming the versions that made the fixture. If the
change is intended, regenerate with ``tests/golden/make_golden.py`` (a reviewed decision).

Tolerance: ``atol=1e-5, rtol=0``. Every compared value is bounded by 1 in magnitude (embeddings
are unit slot vectors times weights of norm 1, attention rows are softmax probabilities), so an
absolute bound is the meaningful one; a relative term would only loosen it for the largest
values. 1e-5 is far above float32 round-off through these models (the same numbers on 1 or 2
threads or in batches of 1, i.e. through other reduction orders, agree to 2e-7) and far below
any real change.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import open_clip
import pytest
import torch
from golden.make_golden import (
    MODELS,
    fixture_path,
    image_batch,
    model_outputs,
    seeded_model,
    weight_sums,
)
from safetensors import safe_open

TOLERANCE = {"atol": 1e-5, "rtol": 0.0}
OUTPUTS = ("image_embedding", "text_embedding", "image_attn", "text_attn")


class Golden(NamedTuple):
    """One model's fixture and what the seeded model computes now."""

    name: str
    stored: dict[str, torch.Tensor]
    metadata: dict[str, str]
    model: torch.nn.Module
    outputs: dict[str, torch.Tensor]

    def made_by(self) -> str:
        made = json.loads(self.metadata["versions"])
        now = {"torch": torch.__version__, "open_clip": open_clip.__version__}
        return f"fixture made with {made}, running {now}"

    def with_versions(self, message: str) -> str:
        """``message`` followed by the versions that made the fixture and those running."""
        return f"{message}\n{self.made_by()}"


@pytest.fixture(scope="module", params=MODELS)
def golden(request) -> Golden:
    name = request.param
    with safe_open(fixture_path(name), framework="pt") as f:
        stored, metadata = {key: f.get_tensor(key) for key in f.keys()}, f.metadata()  # noqa: SIM118
    model = seeded_model(name, int(metadata["seed"]))
    mean, std = json.loads(metadata["mean"]), json.loads(metadata["std"])
    images = image_batch(stored["pixels"], int(metadata["image_size"]), mean, std)
    outputs = model_outputs(model, images, stored["tokens"].long())
    return Golden(name, stored, metadata, model, outputs)


def test_fixture_records_its_inputs_and_versions(golden):
    assert golden.metadata["model"] == golden.name
    assert {"torch", "open_clip", "open_clip_sparo"} <= set(json.loads(golden.metadata["versions"]))
    assert golden.stored["pixels"].dtype == torch.uint8
    assert golden.stored["pixels"].shape[0] == golden.stored["tokens"].shape[0] == 2
    assert set(OUTPUTS) <= set(golden.stored)


def test_tokenizer_gives_the_stored_tokens(golden):
    tokens = open_clip.get_tokenizer(golden.name)(json.loads(golden.metadata["captions"]))
    assert torch.equal(tokens, golden.stored["tokens"].long()), golden.made_by()


def test_seeded_weights_are_unchanged(golden):
    """Per-tensor sums tell a changed initialisation from a changed forward. The sums reach
    4e5 (the token embedding's absolute sum), so they get a relative term too: float64 sums in
    another order differ by ~1e-16 relative, a single moved weight changes a sum by ~1e-2."""
    names, sums = weight_sums(golden.model)
    assert names == json.loads(golden.metadata["weight_names"]), golden.made_by()
    torch.testing.assert_close(
        sums,
        golden.stored["weight_sums"],
        atol=1e-5,
        rtol=1e-9,
        msg=golden.with_versions,
    )


@pytest.mark.parametrize("output", OUTPUTS)
def test_outputs_match_the_golden_numbers(golden, output):
    computed, stored = golden.outputs[output], golden.stored[output]
    assert computed.shape == stored.shape
    torch.testing.assert_close(computed, stored, **TOLERANCE, msg=golden.with_versions)
