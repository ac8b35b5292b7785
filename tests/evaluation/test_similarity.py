import json

import pytest
import torch
import torch.nn.functional as F
from benchmark_data import (
    TEMPLATES,
    save_tiny_model,
    write_sugar_crepe,
    write_wds_classification,
    write_wds_retrieval,
)
from clip_benchmark.metrics import zeroshot_classification

from open_clip_sparo import select_slots
from open_clip_sparo.evaluation import SlotSimilarities, slot_similarities
from open_clip_sparo.evaluation.benchmark import evaluate
from open_clip_sparo.evaluation.datasets import build_dataset, dataloader
from open_clip_sparo.evaluation.metrics import (
    retrieval_metrics,
)
from open_clip_sparo.io.loading import load_model

CLASSES = ["cat", "dog", "car", "tree", "boat", "bird"]
SUBSET = [1, 4, 9, 12]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    _, checkpoint = save_tiny_model(root / "tiny.pt")
    captions = [[f"picture {i}", f"image number {i}", f"photo {i}"] for i in range(7)]
    datasets = {
        "zeroshot_classification": (
            "wds/tiny",
            write_wds_classification(root / "cls", CLASSES, per_class=2),
        ),
        "zeroshot_retrieval": ("wds/tiny", write_wds_retrieval(root / "ret", captions)),
        "image_caption_selection": (
            "sugar_crepe/add_obj",
            write_sugar_crepe(
                root / "sc", "add_obj", [(f"a {c}", f"a {c} and a hat") for c in CLASSES]
            ),
        ),
    }
    return checkpoint, datasets, load_model("sparo-ViT-Ti-8-64", str(checkpoint))


def benchmark(setup, task, out, *extra):
    checkpoint, datasets, _ = setup
    dataset, root = datasets[task]
    argv = ["--model", "sparo-ViT-Ti-8-64", "--pretrained", str(checkpoint), "--dataset", dataset]
    argv += ["--dataset_root", str(root), "--task", task, "--recall_k", "1", "3", "--no_amp"]
    argv += ["--num_workers", "0", "--batch_size", "4", "--quiet", "--output", str(out), *extra]
    assert evaluate(argv) == 0
    return json.loads(out.read_text())["metrics"]


def similarities(setup, task, cache_dir=None):
    _, datasets, loaded = setup
    dataset, root = datasets[task]
    return slot_similarities(
        loaded, dataset, str(root), task=task, cache_dir=cache_dir, batch_size=4
    )


@pytest.mark.parametrize(
    "task", ["zeroshot_classification", "zeroshot_retrieval", "image_caption_selection"]
)
def test_reproduces_what_clip_benchmark_reports(setup, tmp_path, task):
    """All slots: the metric CLIP_benchmark reports; a subset: what `sparo eval --slots` reports;
    both from the cached per-slot similarities."""
    similarities(setup, task, cache_dir=tmp_path / "cache")
    sims = similarities(setup, task, cache_dir=tmp_path / "cache")  # read back from the cache
    assert sims.metrics(recall_k=(1, 3)) == pytest.approx(
        benchmark(setup, task, tmp_path / "all.json"), abs=1e-6, nan_ok=True
    )
    (tmp_path / "slots.json").write_text(json.dumps(SUBSET))
    reported = benchmark(
        setup, task, tmp_path / "sub.json", "--slots", str(tmp_path / "slots.json")
    )
    assert sims.metrics(SUBSET, recall_k=(1, 3)) == pytest.approx(reported, abs=1e-6, nan_ok=True)


def test_subset_scores_equal_select_slots(setup):
    """Per-slot sums give exactly the cosine similarities of the restricted embeddings."""
    _, _, loaded = setup
    sims = similarities(setup, "zeroshot_retrieval")
    images, targets = next(iter(_batches(setup, "zeroshot_retrieval")))
    tokens = loaded.tokenizer([c for group in targets for c in group])
    with torch.no_grad(), select_slots(loaded.model, SUBSET):
        image = F.normalize(loaded.model.encode_image(images), dim=-1)
        text = F.normalize(loaded.model.encode_text(tokens), dim=-1)
    expected = (text @ image.T).double()
    scores = sims.sums(SUBSET).scores()[: len(tokens), : len(images)]
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=0)


def test_class_prototypes_equal_clip_benchmark_classifier(setup):
    _, _, loaded = setup
    sims = similarities(setup, "zeroshot_classification")
    images, _ = next(iter(_batches(setup, "zeroshot_classification")))
    with torch.no_grad(), select_slots(loaded.model, SUBSET):
        classifier = zeroshot_classification.zero_shot_classifier(
            loaded.model, loaded.tokenizer, CLASSES, list(TEMPLATES), "cpu", amp=False
        )
        image = F.normalize(loaded.model.encode_image(images), dim=-1)
    scores = sims.sums(SUBSET).scores()[: len(images)]
    torch.testing.assert_close(scores, (image @ classifier).double(), atol=1e-5, rtol=0)


def test_cache_is_reused_and_keyed_by_weights(setup, tmp_path, monkeypatch):
    _, datasets, loaded = setup
    first = similarities(setup, "image_caption_selection", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("sugar_crepe_add_obj-test-image_caption_selection-*.pt"))) == 1

    def no_encoding(*_):
        raise AssertionError("encoded again instead of reading the cache")

    monkeypatch.setattr(loaded.model, "encode_image_slots", no_encoding)
    again = similarities(setup, "image_caption_selection", cache_dir=tmp_path)
    torch.testing.assert_close(again.images, first.images)
    torch.testing.assert_close(again.texts, first.texts)
    monkeypatch.undo()

    _, other = save_tiny_model(tmp_path / "other" / "tiny.pt", seed=1)
    other_model = load_model("sparo-ViT-Ti-8-64", str(other))
    dataset, root = datasets["image_caption_selection"]
    fresh = slot_similarities(other_model, dataset, str(root), cache_dir=tmp_path, batch_size=4)
    assert len(list(tmp_path.glob("*.pt"))) == 2
    assert not torch.equal(fresh.images, first.images)


def test_cache_follows_the_data_of_a_template_root(setup, tmp_path):
    """The cache key lists the files of the filled root, so changed data is encoded again."""
    _, _, loaded = setup
    folder = tmp_path / "data" / "tiny"
    template = str(tmp_path / "data" / "{dataset}")
    cached = {"task": "zeroshot_classification", "cache_dir": tmp_path / "cache", "batch_size": 4}
    write_wds_classification(folder, CLASSES, per_class=1)
    first = slot_similarities(loaded, "wds/tiny", template, **cached)
    write_wds_classification(folder, CLASSES, per_class=2, seed=7)
    changed = slot_similarities(loaded, "wds/tiny", template, **cached)
    fresh = slot_similarities(
        loaded, "wds/tiny", str(folder), task="zeroshot_classification", batch_size=4
    )
    assert (first.num_items, changed.num_items) == (len(CLASSES), 2 * len(CLASSES))
    torch.testing.assert_close(changed.images, fresh.images)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_retrieval_subset_keeps_the_captions_of_its_images():
    generator = torch.Generator().manual_seed(0)
    images, texts = (
        torch.randn(4, 3, 5, generator=generator),
        torch.randn(8, 3, 5, generator=generator),
    )
    targets = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    sims = SlotSimilarities("zeroshot_retrieval", images, texts, targets)
    part = sims.subset(torch.tensor([1, 3]))
    torch.testing.assert_close(part.texts, texts[[2, 3, 6, 7]])
    assert part.targets.tolist() == [0, 0, 1, 1]
    full = sims.sums().scores()
    restricted = full[[2, 3, 6, 7]][:, [1, 3]]
    assert part.metrics(recall_k=(1,)) == retrieval_metrics(restricted, part.targets, (1,))


def _batches(setup, task):
    _, datasets, loaded = setup
    dataset, root = datasets[task]
    built = build_dataset(dataset, str(root), loaded.preprocess, task=task)
    return dataloader(dataset, built, batch_size=64, num_workers=0)
