import torch
from PIL import Image

from open_clip_sparo.dino.augment import MultiCrop, default_local_size, eval_transform


def _image() -> Image.Image:
    return Image.new("RGB", (80, 70), (200, 30, 30))


def test_multi_crop_gives_two_global_and_n_local_crops():
    crops = MultiCrop(64, 24, num_local=3)(_image())
    assert [tuple(c.shape) for c in crops] == [(3, 64, 64)] * 2 + [(3, 24, 24)] * 3


def test_multi_crop_is_reproducible_from_torch_seed():
    augment = MultiCrop(32, 16, num_local=2)
    torch.manual_seed(3)
    first = augment(_image())
    torch.manual_seed(3)
    again = augment(_image())
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b)


def test_eval_transform_resizes_and_centre_crops():
    assert eval_transform(64)(_image().convert("L")).shape == (3, 64, 64)


def test_default_local_size_keeps_dinos_ratio_on_the_patch_grid():
    assert default_local_size(224, 16) == 96
    assert default_local_size(64, 8) == 24
    assert default_local_size(16, 16) == 16
