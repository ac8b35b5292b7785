"""The data sets made from the synthetic world (layout in :mod:`open_clip_sparo.synthetic`)."""

from __future__ import annotations

import io
import json
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import webdataset as wds
from PIL import Image
from tqdm import tqdm

from ..util.files import read_json
from ..util.run_folder import check_run_folder
from .world import (
    ALL_PAIRS,
    COLORS,
    HELD_OUT_PAIRS,
    NEGATIVE_KINDS,
    POSITIONS,
    SEEN_PAIRS,
    SHAPES,
    SIZES,
    Scene,
    hard_negative,
    render,
    sample_scene,
)

SPLITS = ("val", "test")


EVAL_SHARDS = 2  # lets CLIP_benchmark read a set with two workers


MTIME = 0  # fixed tar member times: the same seed writes the same bytes


def _pair_name(pair: tuple[str, str]) -> str:
    return " ".join(pair)


# classification sets: name -> (pairs the images use, class names, label of a scene, templates)
CLASSIFICATION: dict[str, tuple[tuple, list[str], Callable[[Scene], str], list[str]]] = {
    "color": (
        SEEN_PAIRS,
        list(COLORS),
        lambda s: s.objects[0].color,
        ["a {c} shape.", "a {c} object."],
    ),
    "shape": (
        SEEN_PAIRS,
        list(SHAPES),
        lambda s: s.objects[0].shape,
        ["a {c}.", "a photo of a {c}."],
    ),
    "size": (
        SEEN_PAIRS,
        list(SIZES),
        lambda s: s.objects[0].size,
        ["a {c} shape.", "a {c} object."],
    ),
    "position": (
        SEEN_PAIRS,
        [f"on the {p}" for p in POSITIONS],
        lambda s: f"on the {s.objects[0].position}",
        ["a shape {c}.", "an object {c}."],
    ),
    "object": (
        ALL_PAIRS,
        [_pair_name(p) for p in ALL_PAIRS],
        lambda s: _pair_name(s.objects[0].pair),
        ["a {c}.", "a photo of a {c}."],
    ),
    "object_unseen": (
        tuple(sorted(HELD_OUT_PAIRS)),
        [_pair_name(p) for p in ALL_PAIRS],
        lambda s: _pair_name(s.objects[0].pair),
        ["a {c}.", "a photo of a {c}."],
    ),
}


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _scenes(
    name: str, seed: int, pairs: tuple, count: int, num_objects: int | None
) -> Iterator[tuple[Scene, Image.Image]]:
    rng = random.Random(f"{seed}-{name}")
    for _ in range(count):
        scene = sample_scene(rng, pairs, num_objects or rng.choice((1, 2)))
        yield scene, render(scene, rng)


def write_training_shards(out: Path, num_samples: int, shard_size: int, seed: int) -> None:
    """Image-caption shards (``png``, ``txt``) written with webdataset's ShardWriter, and
    ``sizes.json``."""
    out.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    with wds.ShardWriter(
        str(out / "%06d.tar"), maxcount=shard_size, verbose=0, mtime=MTIME
    ) as sink:
        scenes = _scenes("train", seed, SEEN_PAIRS, num_samples, None)
        for index, (scene, image) in enumerate(
            tqdm(scenes, total=num_samples, desc="train shards")
        ):
            sink.write({"__key__": f"{index:08d}", "png": _png(image), "txt": scene.caption()})
            shard = f"{index // shard_size:06d}.tar"
            sizes[shard] = sizes.get(shard, 0) + 1
    (out / "sizes.json").write_text(json.dumps(sizes, indent=1))


def _write_wds(root: Path, samples: list[dict[str, Any]], meta: dict[str, str]) -> None:
    test = root / "test"
    test.mkdir(parents=True)
    for shard in range(EVAL_SHARDS):
        with wds.TarWriter(str(test / f"{shard}.tar"), mtime=MTIME) as sink:
            for sample in samples[shard::EVAL_SHARDS]:
                sink.write(sample)
    (test / "nshards.txt").write_text(str(EVAL_SHARDS))
    for filename, text in meta.items():
        (root / filename).write_text(text)


def write_classification(root: Path, name: str, split: str, count: int, seed: int) -> None:
    pairs, classes, label, templates = CLASSIFICATION[name]
    samples = [
        {"__key__": f"{i:06d}", "png": _png(image), "cls": classes.index(label(scene))}
        for i, (scene, image) in enumerate(_scenes(f"{split}-{name}", seed, pairs, count, 1))
    ]
    _write_wds(
        root,
        samples,
        {
            "classnames.txt": "\n".join(classes) + "\n",
            "zeroshot_classification_templates.txt": "\n".join(templates) + "\n",
            "dataset_type.txt": "classification\n",
        },
    )


def write_retrieval(root: Path, split: str, count: int, seed: int) -> None:
    samples = [
        {"__key__": f"{i:06d}", "png": _png(image), "txt": scene.caption()}
        for i, (scene, image) in enumerate(_scenes(f"{split}-retrieval", seed, ALL_PAIRS, count, 2))
    ]
    _write_wds(root, samples, {"dataset_type.txt": "retrieval\n"})


def write_sugar_crepe(root: Path, task: str, split: str, count: int, seed: int) -> int:
    """SugarCrepe layout: ``val2017/`` images and ``<task>.json``; returns the sample count."""
    images = root / "val2017"
    images.mkdir(parents=True)
    rng = random.Random(f"{seed}-{split}-{task}-negatives")
    num_objects = 1 if task == "add_obj" else 2
    annotations = {}
    for scene, image in _scenes(f"{split}-{task}", seed, ALL_PAIRS, count, num_objects):
        negative = hard_negative(scene, task, rng)
        if negative is None:
            continue
        filename = f"{len(annotations):06d}.png"
        image.save(images / filename)
        annotations[str(len(annotations))] = {
            "filename": filename,
            "caption": scene.caption(),
            "negative_caption": negative,
        }
    (root / f"{task}.json").write_text(json.dumps(annotations, indent=1))
    return len(annotations)


def _check_complete(out: Path, manifest: dict[str, Any]) -> None:
    """Refuse to reuse a generated folder that lost files (a training shard, an evaluation
    set): the manifest alone would hide the loss until training or evaluation."""
    settings = manifest["settings"]
    shards = -(-settings["train_samples"] // settings["shard_size"])
    expected = [out / "train" / f"{i:06d}.tar" for i in range(shards)]
    for split in SPLITS:
        for dataset in manifest["datasets"]:
            name = dataset.removeprefix("wds/").replace("/", "-")
            expected.append(out / "eval" / split / name)
    missing = [str(p) for p in expected if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"{out} holds generated data with these settings but lacks {len(missing)} of its "
            f"files (e.g. {missing[:3]}); remove the folder (or choose another --out) and run "
            "sparo generate again."
        )


def generate(
    out: str | Path,
    train_samples: int = 20000,
    eval_samples: int = 500,
    shard_size: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the whole data set; reuse it if ``out`` already holds one with the same settings."""
    out = Path(out)
    settings = {
        "seed": seed,
        "train_samples": train_samples,
        "eval_samples": eval_samples,
        "shard_size": shard_size,
    }
    if check_run_folder(
        out,
        "manifest.json",
        {"settings": settings},
        what="generated data folder",
        fix="choose another --out, or remove that folder.",
    ):
        manifest = read_json(out / "manifest.json", "the data manifest")
        _check_complete(out, manifest)
        return manifest

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        write_training_shards(staging / "train", train_samples, shard_size, seed)
        datasets: dict[str, str] = {}
        for split in SPLITS:
            base = staging / "eval" / split
            for name in tqdm(CLASSIFICATION, desc=f"{split} classification sets"):
                write_classification(base / f"synth_{name}", name, split, eval_samples, seed)
                datasets[f"wds/synth_{name}"] = "zeroshot_classification"
            write_retrieval(base / "synth_retrieval", split, eval_samples, seed)
            datasets["wds/synth_retrieval"] = "zeroshot_retrieval"
            for task in tqdm(NEGATIVE_KINDS, desc=f"{split} sugar_crepe sets"):
                write_sugar_crepe(base / f"sugar_crepe-{task}", task, split, eval_samples, seed)
                datasets[f"sugar_crepe/{task}"] = "image_caption_selection"
        last_shard = f"{{000000..{(train_samples - 1) // shard_size:06d}}}.tar"
        manifest = {
            "settings": settings,
            "train": {"shards": str(out / "train" / last_shard), "samples": train_samples},
            "eval_roots": {
                split: str(out / "eval" / split / "{dataset_cleaned}") for split in SPLITS
            },
            "datasets": datasets,
            "held_out_pairs": sorted(_pair_name(p) for p in HELD_OUT_PAIRS),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
