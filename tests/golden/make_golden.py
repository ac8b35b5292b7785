"""Write the golden outputs `tests/golden/<model>.safetensors` checked by `tests/test_golden.py`.

For each model, the fixture holds fixed inputs (two small drawn images as ``uint8`` pixels, two
captions and their token ids) and what a model built from a fixed seed
(``torch.manual_seed(SEED)``, then ``open_clip.create_model(name)``) makes of them: the image and
text embeddings, each slot's attention over the image and text tokens, and per-tensor sums of
the weights (to tell a changed initialisation from a changed forward). Weights are never stored.
The metadata records the torch, open_clip and open_clip_sparo versions that produced the file.

Regenerate only when a change of the numbers is intended, e.g. a deliberate change of SPARO's
initialisation or forward, or a new pinned open_clip/torch that moves them for a reason understood
and written down. A regeneration is a reviewed decision: commit the new fixtures on their own,
saying why the numbers moved. A file whose numbers and metadata would not change is left as it
is. Run from the repository root::

    PYTHONPATH=src python tests/golden/make_golden.py
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from safetensors import safe_open
from safetensors.torch import save_file

import open_clip_sparo

GOLDEN_DIR = Path(__file__).parent
MODELS = ("sparo-ViT-Ti-8-64", "sparo-ViT-B-32")
SEED = 0
CAPTIONS = ("a red square on a grey background", "two blue circles")
PIXELS_SIZE = 32  # images are stored at 32 x 32 and upscaled exactly (each pixel repeated)


def fixture_path(name: str) -> Path:
    """The fixture file of model ``name``."""
    return GOLDEN_DIR / f"{name}.safetensors"


def draw_images() -> torch.Tensor:
    """Two ``(3, 32, 32)`` uint8 pictures matching ``CAPTIONS``: a red square, two blue discs."""
    size = PIXELS_SIZE
    images = np.full((2, 3, size, size), 128, dtype=np.uint8)
    images[0, :, 8:24, 8:24] = np.array([220, 30, 30], dtype=np.uint8)[:, None, None]
    rows, cols = np.mgrid[:size, :size]
    for centre_col in (9, 23):
        disc = (rows - 16) ** 2 + (cols - centre_col) ** 2 <= 36
        images[1][:, disc] = np.array([30, 30, 220], dtype=np.uint8)[:, None]
    return torch.from_numpy(images)


def image_batch(
    pixels: torch.Tensor, image_size: int, mean: list[float], std: list[float]
) -> torch.Tensor:
    """uint8 pixels ``(B, 3, s, s)`` -> the model's input ``(B, 3, image_size, image_size)``:
    each pixel repeated ``image_size / s`` times on both axes (exact), scaled to [0, 1] and
    normalised with ``mean`` and ``std``."""
    factor, remainder = divmod(image_size, pixels.shape[-1])
    if remainder:
        raise ValueError(f"image size {image_size} is not a multiple of {pixels.shape[-1]}")
    images = pixels.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    images = images.to(torch.float32) / 255
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (images - mean_t) / std_t


def seeded_model(name: str, seed: int) -> open_clip.CLIP:
    """Model ``name`` with the weights ``torch.manual_seed(seed)`` gives it, in eval mode."""
    torch.manual_seed(seed)
    return open_clip.create_model(name).eval()


def weight_sums(model: torch.nn.Module) -> tuple[list[str], torch.Tensor]:
    """State-dict names and ``(n, 2)`` float64 sums of each tensor and of its absolute value."""
    state = model.state_dict()
    sums = [
        torch.stack([t.sum(dtype=torch.float64), t.abs().sum(dtype=torch.float64)])
        for t in state.values()
    ]
    return list(state), torch.stack(sums)


def model_outputs(
    model: open_clip.CLIP, images: torch.Tensor, tokens: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Embeddings and per-slot attention maps of ``images`` and ``tokens``."""
    with torch.no_grad():
        image_slots = model.encode_image_slots(images)
        text_slots = model.encode_text_slots(tokens)
        return {
            "image_embedding": model.encode_image(images),
            "text_embedding": model.encode_text(tokens),
            "image_attn": image_slots.attn,
            "text_attn": text_slots.attn,
        }


def versions() -> dict[str, str]:
    """The versions of what the numbers depend on."""
    return {
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "open_clip_sparo": open_clip_sparo.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def make_fixture(name: str) -> Path:
    """Compute and write the fixture of model ``name``; returns its path."""
    model = seeded_model(name, SEED)
    image_size = model.visual.image_size[0]
    pixels = draw_images()
    mean, std = list(OPENAI_DATASET_MEAN), list(OPENAI_DATASET_STD)
    tokens = open_clip.get_tokenizer(name)(list(CAPTIONS))
    names, sums = weight_sums(model)
    tensors = {
        "pixels": pixels,
        "tokens": tokens.to(torch.int32),
        "weight_sums": sums,
        **model_outputs(model, image_batch(pixels, image_size, mean, std), tokens),
    }
    metadata = {
        "model": name,
        "seed": str(SEED),
        "captions": json.dumps(list(CAPTIONS)),
        "image_size": str(image_size),
        "mean": json.dumps(mean),
        "std": json.dumps(std),
        "weight_names": json.dumps(names),
        "versions": json.dumps(versions()),
        "generated_by": "tests/golden/make_golden.py",
    }
    path = fixture_path(name)
    if not _holds(path, tensors, metadata):  # safetensors orders its header at random
        save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=metadata)
    return path


def _holds(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bool:
    """Whether the file at ``path`` holds exactly ``tensors`` and ``metadata``."""
    if not path.exists():
        return False
    with safe_open(path, framework="pt") as f:
        if f.metadata() != metadata or set(f.keys()) != set(tensors):
            return False
        return all(torch.equal(f.get_tensor(key), value) for key, value in tensors.items())


def main() -> None:
    torch.set_num_threads(1)
    for name in MODELS:
        path = make_fixture(name)
        print(f"{path}: {path.stat().st_size / 1024:.0f} KB", file=sys.stderr)


if __name__ == "__main__":
    main()
