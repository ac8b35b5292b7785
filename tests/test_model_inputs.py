"""Awkward but legal inputs through the model's own tokenizer and preprocess."""

import subprocess
import sys

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

import open_clip_sparo

TINY = "sparo-ViT-Ti-8-64"
CAPTIONS = [
    "",
    "a red square " * 40,  # far longer than the context: truncated, EOS forced at the end
    "une forme rouge à gauche, 赤い四角, ☃ 🙂",
    "   ",
]


def images(preprocess) -> torch.Tensor:
    rng = np.random.default_rng(0)
    pictures = [
        Image.fromarray(rng.integers(0, 255, (37, 91), dtype=np.uint8), mode="L"),  # greyscale
        Image.fromarray(rng.integers(0, 255, (300, 17, 3), dtype=np.uint8)),  # odd size
        Image.fromarray(rng.integers(0, 255, (64, 64, 4), dtype=np.uint8), mode="RGBA"),
        Image.new("RGB", (1, 1)),
    ]
    return torch.stack([preprocess(p) for p in pictures])


@pytest.mark.parametrize("precision", ["fp32", "amp_bf16", "pure_bf16", "pure_fp16"])
def test_edge_inputs_give_finite_embeddings(precision):
    torch.manual_seed(0)
    model_precision = precision if precision.startswith("pure") else "fp32"
    model, _, preprocess = open_clip.create_model_and_transforms(TINY, precision=model_precision)
    tokens = open_clip.get_tokenizer(TINY)(CAPTIONS)
    assert (tokens.argmax(-1) == torch.tensor([1, 31, tokens[2].argmax(), 1])).all()
    pixels = images(preprocess)
    if precision.startswith("pure"):
        pixels = pixels.to(torch.bfloat16 if "bf16" in precision else torch.float16)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "amp_bf16"):
        image_features = model.encode_image(pixels, normalize=True)
        text_features = model.encode_text(tokens, normalize=True)
    for features in (image_features, text_features):
        assert features.shape == (4, 256) and torch.isfinite(features).all()
        torch.testing.assert_close(features.float().norm(dim=-1), torch.ones(4), atol=1e-2, rtol=0)


def run_python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_without_importing_the_package_openclip_fails_clearly(tmp_path):
    result = run_python("import open_clip; open_clip.create_model('sparo-ViT-Ti-8-64')")
    assert result.returncode != 0
    assert "Model config for 'sparo-ViT-Ti-8-64' not found" in result.stderr
    open_clip_sparo.save_pretrained(open_clip.create_model(TINY), tmp_path)
    result = run_python(f"import open_clip; open_clip.create_model('local-dir:{tmp_path}')")
    assert result.returncode != 0
    assert "unexpected keyword argument 'sparo_cfg'" in result.stderr
