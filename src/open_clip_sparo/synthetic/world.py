"""A small compositional world: scenes of coloured shapes, their captions and hard negatives.

Scenes hold one or two objects (two objects stand on the left and the right). Every object has a
colour, a shape and a size; captions name all three and the position, e.g.
``"a large red circle on the left and a small blue square on the right"``. Some colour-shape pairs
are held out of training, so evaluating on them measures compositional generalisation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "cyan": (40, 210, 220),
}
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = {"small": 0.16, "large": 0.3}  # object width as a fraction of the image
POSITIONS = ("left", "right")
# colour-shape pairs never shown in training: one per shape, each colour at most once
HELD_OUT_PAIRS = frozenset(
    {("red", "triangle"), ("green", "circle"), ("blue", "cross"), ("yellow", "square")}
)
ALL_PAIRS = tuple((c, s) for c in COLORS for s in SHAPES)
SEEN_PAIRS = tuple(p for p in ALL_PAIRS if p not in HELD_OUT_PAIRS)


@dataclass(frozen=True)
class SceneObject:
    color: str
    shape: str
    size: str
    position: str

    @property
    def pair(self) -> tuple[str, str]:
        return self.color, self.shape

    def phrase(self, with_position: bool = True) -> str:
        where = f" on the {self.position}" if with_position else ""
        return f"a {self.size} {self.color} {self.shape}{where}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]

    def caption(self) -> str:
        return " and ".join(obj.phrase() for obj in self.objects)


def sample_object(
    rng: random.Random, pairs: tuple[tuple[str, str], ...], position: str
) -> SceneObject:
    color, shape = rng.choice(pairs)
    return SceneObject(color, shape, rng.choice(tuple(SIZES)), position)


def sample_scene(rng: random.Random, pairs: tuple[tuple[str, str], ...], num_objects: int) -> Scene:
    """One or two objects with distinct colour-shape pairs, mentioned in random order."""
    if num_objects == 1:
        return Scene((sample_object(rng, pairs, rng.choice(POSITIONS)),))
    left = sample_object(rng, pairs, "left")
    right = sample_object(rng, [p for p in pairs if p != left.pair] or pairs, "right")
    objects = (left, right) if rng.random() < 0.5 else (right, left)
    return Scene(objects)


def render(scene: Scene, rng: random.Random, image_size: int = 64) -> Image.Image:
    """Draw the scene on a dark background with jittered placement and brightness."""
    shade = rng.randint(10, 60)
    image = Image.new("RGB", (image_size, image_size), (shade, shade, shade))
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        half = SIZES[obj.size] * image_size / 2 * rng.uniform(0.9, 1.1)
        center_x = image_size * (0.27 if obj.position == "left" else 0.73)
        center_x += rng.uniform(-0.06, 0.06) * image_size
        center_y = image_size * rng.uniform(0.3, 0.7)
        box = (center_x - half, center_y - half, center_x + half, center_y + half)
        color = tuple(min(255, max(0, c + rng.randint(-20, 20))) for c in COLORS[obj.color])
        _draw_shape(draw, obj.shape, box, color)
    return image


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    box: tuple[float, float, float, float],
    color: tuple[int, ...],
) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "square":
        draw.rectangle(box, fill=color)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=color)
    else:  # cross
        bar = (x1 - x0) / 3
        draw.rectangle((x0 + bar, y0, x1 - bar, y1), fill=color)
        draw.rectangle((x0, y0 + bar, x1, y1 - bar), fill=color)


# SugarCrepe-style hard negatives: the caption of a scene that differs in one compositional way.
NEGATIVE_KINDS = ("swap_att", "replace_att", "replace_obj", "swap_obj", "add_obj")


def hard_negative(scene: Scene, kind: str, rng: random.Random) -> str | None:
    """A wrong caption for ``scene`` of the given kind, or None where the kind does not apply.

    - ``swap_att``: the two objects exchange colours;
    - ``replace_att``: one object's colour becomes a colour absent from the scene;
    - ``replace_obj``: one object's shape becomes a shape absent from the scene;
    - ``swap_obj``: the two objects exchange shapes (colours, sizes and positions stay);
    - ``add_obj``: a one-object scene's caption gains a second object.
    """
    objects = list(scene.objects)
    if kind in ("swap_att", "swap_obj"):
        if len(objects) != 2:
            return None
        a, b = objects
        field = "color" if kind == "swap_att" else "shape"
        if getattr(a, field) == getattr(b, field):
            return None
        objects = [
            replace(a, **{field: getattr(b, field)}),
            replace(b, **{field: getattr(a, field)}),
        ]
    elif kind in ("replace_att", "replace_obj"):
        field, values = ("color", tuple(COLORS)) if kind == "replace_att" else ("shape", SHAPES)
        index = rng.randrange(len(objects))
        present = {getattr(obj, field) for obj in objects}
        objects[index] = replace(
            objects[index], **{field: rng.choice([v for v in values if v not in present])}
        )
    elif kind == "add_obj":
        if len(objects) != 1:
            return None
        (only,) = objects
        other = "right" if only.position == "left" else "left"
        extra = sample_object(rng, tuple(p for p in ALL_PAIRS if p != only.pair), other)
        objects = [only, extra]
    else:
        raise ValueError(f"unknown negative kind {kind!r}; use one of {list(NEGATIVE_KINDS)}.")
    return Scene(tuple(objects)).caption()
