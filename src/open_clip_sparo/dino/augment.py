"""DINO's multi-crop augmentation (Caron et al., 2021, appendix) and the evaluation transform.

Built from torchvision's transforms, with DINO's settings: two global crops (scale
``global_scale``) and ``num_local`` local crops (scale ``local_scale``), each flipped and
colour-jittered (0.4, 0.4, 0.2, 0.1 with p 0.8, grey with p 0.2); Gaussian blur with p 1.0 on the
first global crop, 0.1 on the second and 0.5 on the local crops; solarisation with p 0.2 on the
second global crop only.
"""

from __future__ import annotations

import torch
from open_clip.constants import IMAGENET_MEAN, IMAGENET_STD  # DINO's normalisation
from PIL import Image, ImageFilter
from torchvision import transforms as T


class RandomGaussianBlur:
    """DINO's blur: with probability ``p``, PIL's Gaussian blur of a radius drawn uniformly from
    ``radius`` (pixels). Draws from torch's generator, so seeding torch fixes the augmentation."""

    def __init__(self, p: float, radius: tuple[float, float] = (0.1, 2.0)) -> None:
        self.p = p
        self.radius = radius

    def __call__(self, image: Image.Image) -> Image.Image:
        if torch.rand(()).item() >= self.p:
            return image
        radius = torch.empty(()).uniform_(*self.radius).item()
        return image.filter(ImageFilter.GaussianBlur(radius))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p}, radius={self.radius})"


class MultiCrop:
    """PIL image -> ``[global_1, global_2, local_1, ..., local_n]`` normalised tensors."""

    def __init__(
        self,
        global_size: int,
        local_size: int,
        num_local: int,
        global_scale: tuple[float, float] = (0.4, 1.0),
        local_scale: tuple[float, float] = (0.05, 0.4),
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        if num_local < 0:
            raise ValueError(f"the number of local crops must be >= 0, got {num_local}.")
        flip_and_jitter = [
            T.RandomHorizontalFlip(p=0.5),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
        ]
        normalize = [T.ToTensor(), T.Normalize(mean, std)]

        def crop(size: int, scale: tuple[float, float]) -> T.RandomResizedCrop:
            return T.RandomResizedCrop(size, scale=scale, interpolation=T.InterpolationMode.BICUBIC)

        self.global_1 = T.Compose(
            [crop(global_size, global_scale), *flip_and_jitter, RandomGaussianBlur(1.0), *normalize]
        )
        self.global_2 = T.Compose(
            [
                crop(global_size, global_scale),
                *flip_and_jitter,
                RandomGaussianBlur(0.1),
                T.RandomSolarize(128, p=0.2),
                *normalize,
            ]
        )
        self.local = T.Compose(
            [crop(local_size, local_scale), *flip_and_jitter, RandomGaussianBlur(0.5), *normalize]
        )
        self.num_local = num_local

    @property
    def num_crops(self) -> int:
        return 2 + self.num_local

    def __call__(self, image: Image.Image) -> list:
        image = _to_rgb(image)
        return [
            self.global_1(image),
            self.global_2(image),
            *(self.local(image) for _ in range(self.num_local)),
        ]


def eval_transform(
    image_size: int, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> T.Compose:
    """DINO's evaluation transform: resize the short side to ``image_size * 256 / 224``
    (bicubic), centre crop ``image_size``, normalise."""
    return T.Compose(
        [
            T.Lambda(_to_rgb),
            T.Resize(round(image_size * 256 / 224), interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def default_local_size(global_size: int, patch_size: int) -> int:
    """DINO's local to global crop ratio (96 / 224), rounded to a multiple of the patch size."""
    return max(patch_size, round(global_size * 96 / 224 / patch_size) * patch_size)
