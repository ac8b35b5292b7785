"""``sparo visualize``: what each slot looks at, in the image and in the caption.

For each image-caption pair, slots are ranked by image-text slot agreement (the cosine of image
slot ``l`` and text slot ``l``). One PNG per pair shows, for the best-agreeing slots, the slot's
attention over image patches as a red overlay on a greyscale copy of the image (with the weight
it gives the class token beside it) and the caption's tokens shaded by the slot's text
attention. ``summary.png`` shows the agreement of every slot on every pair."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..io.loading import LoadedModel, load_model
from ..util.files import check_new_files, require_file
from .checks import add_model_args, described, finite_encodings, positive_int, require_slots
from .datasets import build_dataset, default_task

RED = np.array([0.85, 0.05, 0.05])


@dataclass
class SlotView:
    """What one model sees in one image-caption pair, slot by slot."""

    image: np.ndarray  # (H, W, 3) in [0, 1], the pixels the model saw
    caption: str
    tokens: list[str]  # decoded caption tokens, start and end of text included
    agreement: torch.Tensor  # (L,) cosine of image slot l and text slot l
    image_attn: torch.Tensor  # (L, 1 + HW) over the class token and the patches
    text_attn: torch.Tensor  # (L, len(tokens))
    grid: tuple[int, int]  # patch grid (rows, columns)

    def ranked_slots(self) -> list[int]:
        """Slots from the best to the worst image-text agreement."""
        return self.agreement.argsort(descending=True).tolist()


@torch.no_grad()
def slot_view(loaded: LoadedModel, image: torch.Tensor, caption: str) -> SlotView:
    """Encode one preprocessed ``(3, H, W)`` image and its caption slot by slot."""
    model = loaded.model
    require_slots(model, described(loaded), "sparo visualize")
    device = next(model.parameters()).device
    tokens = loaded.tokenizer([caption]).to(device)
    with finite_encodings(model, described(loaded)):
        image_out = model.encode_image_slots(image[None].to(device))
        text_out = model.encode_text_slots(tokens)
    length = int(model.eos_positions(tokens)[0]) + 1  # up to the end-of-text token
    agreement = F.cosine_similarity(image_out.slots[0], text_out.slots[0], dim=-1)  # (L,)
    return SlotView(
        image=_pixels(image, open_clip.get_model_preprocess_cfg(model)),
        caption=caption,
        tokens=_decode(loaded.tokenizer, tokens[0, :length].tolist()),
        agreement=agreement.float().cpu(),
        image_attn=image_out.attn[0].float().cpu(),
        text_attn=text_out.attn[0, :, :length].float().cpu(),
        grid=tuple(model.visual.grid_size),
    )


def overlay(view: SlotView, slot: int) -> np.ndarray:
    """``(H, W, 3)`` greyscale image with the slot's patch attention in red."""
    height, width = view.image.shape[:2]
    patches = view.image_attn[slot, 1:].view(1, 1, *view.grid)  # class token excluded
    heat = F.interpolate(patches, size=(height, width), mode="nearest")[0, 0].numpy()
    alpha = 0.85 * heat / max(float(heat.max()), 1e-12)
    grey = view.image @ np.array([0.299, 0.587, 0.114])
    return grey[..., None] * (1 - alpha[..., None]) + RED * alpha[..., None]


def plot_view(view: SlotView, slots: Sequence[int], path: Path, title: str = "") -> None:
    """PNG: the image and caption, then one row per slot (overlay, class-token weight, shaded
    caption tokens)."""
    rows = len(slots) + 1
    fig = _figure(figsize=(11, 1.9 * rows))
    grid = fig.add_gridspec(rows, 2, width_ratios=[1, 4], hspace=0.45, wspace=0.25)
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(view.image)
    ax.set_axis_off()
    ax = fig.add_subplot(grid[0, 1])
    ax.set_axis_off()
    ax.text(0, 0.75, title, fontsize=12, weight="bold", transform=ax.transAxes)
    ax.text(0, 0.45, f"caption: {view.caption}", fontsize=11, transform=ax.transAxes, wrap=True)
    ax.text(
        0,
        0.12,
        "slots ranked by image-text slot agreement; red: attention over patches (class token "
        "weight beside), shading: attention over caption tokens",
        fontsize=9,
        color="0.35",
        transform=ax.transAxes,
    )
    for row, slot in enumerate(slots, start=1):
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(overlay(view, slot))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"slot {slot}: agreement {view.agreement[slot]:.3f}", fontsize=10)
        ax.text(
            1.06,
            0.5,
            f"class\ntoken\n{view.image_attn[slot, 0]:.3f}",
            transform=ax.transAxes,
            fontsize=9,
            va="center",
        )
        _draw_tokens(fig.add_subplot(grid[row, 1]), view.tokens, view.text_attn[slot])
    _save(fig, path)


def plot_summary(views: Sequence[SlotView], labels: Sequence[str], top: int, path: Path) -> None:
    """PNG: agreement of every slot (columns) on every pair (rows), the top slots marked."""
    agreement = torch.stack([v.agreement for v in views]).numpy()  # (pairs, L)
    num_slots = agreement.shape[1]
    fig = _figure(
        figsize=(max(6.0, 0.35 * num_slots + 3), 1.2 + 0.45 * len(views)), layout="constrained"
    )
    ax = fig.subplots()
    limit = float(np.abs(agreement).max())
    image = ax.imshow(agreement, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for row, view in enumerate(views):
        ranked = view.ranked_slots()[:top]
        ax.scatter(ranked, [row] * len(ranked), marker="o", s=18, c="k", label=None)
    ax.set_xticks(range(num_slots))
    ax.set_xticklabels(range(num_slots), fontsize=7 if num_slots > 32 else 9)
    ax.set_yticks(range(len(views)))
    ax.set_yticklabels([_shorten(label, 40) for label in labels], fontsize=9)
    ax.set_xlabel("slot")
    ax.set_title(f"image-text slot agreement (cosine); dots: top {top} slots per pair", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.9)
    _save(fig, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparo visualize",
        description="Per-slot attention pictures for image-caption pairs, slots ranked by "
        "image-text slot agreement.",
    )
    add_model_args(parser)
    parser.add_argument("--images", nargs="+", default=None, help="image files")
    parser.add_argument("--captions", nargs="+", default=None, help="one caption per image")
    parser.add_argument("--dataset", default=None, help="or samples of a CLIP_benchmark dataset")
    parser.add_argument("--dataset_root", default="root")
    parser.add_argument("--split", default="test")
    parser.add_argument("--task", default="auto")
    parser.add_argument("--num_samples", type=positive_int, default=4)
    parser.add_argument("--top_slots", type=positive_int, default=4, help="slots shown per pair")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    return parser


def _file_pairs(
    loaded: LoadedModel, images: Sequence[str], captions: Sequence[str]
) -> list[tuple[torch.Tensor, str]]:
    return [
        (loaded.preprocess(Image.open(p).convert("RGB")), c)
        for p, c in zip(images, captions, strict=True)
    ]


def _dataset_pairs(loaded: LoadedModel, args: argparse.Namespace) -> list[tuple[torch.Tensor, str]]:
    """The first ``num_samples`` samples as (image, caption): the first caption of retrieval
    samples, the true caption of caption-selection samples, the first template filled with the
    class name for classification."""
    task = default_task(args.dataset) if args.task == "auto" else args.task
    dataset = build_dataset(args.dataset, args.dataset_root, loaded.preprocess, args.split, task)
    pairs = []
    for image, label in dataset:
        if task == "zeroshot_classification":
            template = dataset.templates[0]
            pairs.append((image, template.format(c=dataset.classes[int(label)])))
        else:
            pairs.append((image if image.ndim == 3 else image[0], label[0]))
        if len(pairs) == args.num_samples:
            break
    if not pairs:
        raise ValueError(f"{args.dataset} (split {args.split}) has no samples.")
    return pairs


def _pixels(image: torch.Tensor, preprocess_cfg: dict[str, Any]) -> np.ndarray:
    mean = torch.tensor(preprocess_cfg["mean"])[:, None, None]
    std = torch.tensor(preprocess_cfg["std"])[:, None, None]
    return (image.cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def _decode(tokenizer: Callable[..., torch.Tensor], ids: list[int]) -> list[str]:
    decode = getattr(tokenizer, "decode", None) or tokenizer.tokenizer.decode
    return [decode([i]).strip() for i in ids]


def _draw_tokens(ax: Any, tokens: Sequence[str], weights: torch.Tensor) -> None:
    """Tokens left to right (wrapping), each on a red box as dark as its attention weight, the
    weight printed below it."""
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    renderer = ax.figure.canvas.get_renderer()
    axes_width = ax.get_window_extent(renderer).width
    token_style = {"fontsize": 10, "ha": "center", "va": "center"}
    weight_style = {"fontsize": 7, "ha": "center", "va": "center", "color": "0.3"}
    labels = [f"{w:.2f}" for w in weights.tolist()]

    def width_of(text: str, style: dict[str, Any], pad: float) -> float:
        probe = ax.text(0, 0, text, **style, bbox={"boxstyle": f"round,pad={pad}"})
        width = probe.get_window_extent(renderer).width / axes_width
        probe.remove()
        return width

    widths = [  # each token takes the room of its box or of its weight, whichever is wider
        max(width_of(t, token_style, 0.25), width_of(w, weight_style, 0.1)) + 0.01
        for t, w in zip(tokens, labels, strict=True)
    ]
    starts, lines, x, line = [], [], 0.0, 0
    for width in widths:
        if x > 0 and x + width > 1:
            x, line = 0.0, line + 1
        starts.append(x)
        lines.append(line)
        x += width
    line_height = min(0.45, 0.9 / (line + 1))
    cmap = matplotlib.colormaps["Reds"]
    top = max(float(weights.max()), 1e-12)
    for token, label, start, width, row, weight in zip(
        tokens, labels, starts, widths, lines, weights.tolist(), strict=True
    ):
        x, y = start + width / 2, 0.8 - row * line_height
        shade = weight / top
        box = {"boxstyle": "round,pad=0.25", "fc": cmap(0.05 + 0.9 * shade), "ec": "0.7"}
        ax.text(x, y, token, **token_style, color="white" if shade > 0.6 else "black", bbox=box)
        ax.text(x, y - 0.5 * line_height, label, **weight_style)


def _shorten(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def _figure(**kwargs: Any) -> Figure:
    """A figure on the Agg canvas, outside pyplot's global state."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def visualize(argv: list[str]) -> int:
    """``sparo visualize`` with the command-line arguments ``argv``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.images is None) == (args.dataset is None):
        parser.error("give either --images with --captions, or --dataset.")
    if args.images is not None and len(args.images) != len(args.captions or ()):
        parser.error(
            f"--captions needs one caption per image: {len(args.images)} images, "
            f"{len(args.captions or ())} captions."
        )
    count = len(args.images) if args.images is not None else args.num_samples
    out = Path(args.out)
    paths = [out / f"pair_{i:03d}.png" for i in range(count)] + [out / "summary.png"]
    check_new_files(paths, "choose another --out or remove them; nothing was written.")

    for image in args.images or ():
        require_file(image, "the image")
    loaded = load_model(args.model, args.pretrained, device=args.device)
    if args.images is not None:
        pairs = _file_pairs(loaded, args.images, args.captions)
        labels = [Path(p).name for p in args.images]
    else:
        pairs = _dataset_pairs(loaded, args)
        labels = [f"{args.dataset} #{i}" for i in range(len(pairs))]
    views = [slot_view(loaded, image, caption) for image, caption in pairs]
    top = min(args.top_slots, views[0].agreement.numel())
    for path, view, label in zip(paths[: len(views)], views, labels, strict=True):
        plot_view(view, view.ranked_slots()[:top], path, title=label)
    captioned = [f"{label}: {view.caption}" for label, view in zip(labels, views, strict=True)]
    plot_summary(views, captioned, top, paths[-1])
    print(f"wrote {len(views)} pair figures and {paths[-1]}")
    return 0
