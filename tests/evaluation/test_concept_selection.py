import json
import re
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from benchmark_data import (
    save_nan_model,
    save_tiny_model,
    write_sugar_crepe,
    write_wds_classification,
    write_wds_retrieval,
)
from PIL import Image

from open_clip_sparo import cli
from open_clip_sparo.concepts import (
    backward_elimination,
    best_step,
    forward_selection,
)
from open_clip_sparo.evaluation import SlotSimilarities
from open_clip_sparo.evaluation.concept_selection import select as select_main
from open_clip_sparo.selection import read_slots

PLANTED = (2, 7, 9)


def planted(task, items, noise, num_slots=12, dim=8, seed=0):
    """Unit slot vectors, as SPARO's; only the PLANTED slots of matching pairs agree (noisily)."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    def matching(x):
        return x + noise * randn(*x.shape)

    if task == "zeroshot_retrieval":
        images, texts = randn(items, num_slots, dim), randn(items, num_slots, dim)
        texts[:, PLANTED] = matching(images[:, PLANTED])
        targets = torch.arange(items)
    elif task == "zeroshot_classification":
        texts, targets = randn(10, num_slots, dim), torch.arange(items) % 10
        images = randn(items, num_slots, dim)
        images[:, PLANTED] = matching(texts[targets][:, PLANTED])
    else:  # one image, a true and a false caption
        images, texts, targets = (
            randn(items, 1, num_slots, dim),
            randn(items, 2, num_slots, dim),
            None,
        )
        texts[:, 0, PLANTED] = matching(images[:, 0, PLANTED])
    return SlotSimilarities(task, F.normalize(images, dim=-1), F.normalize(texts, dim=-1), targets)


@pytest.mark.parametrize(
    ("task", "metric", "items", "noise"),
    [
        ("zeroshot_retrieval", "image_retrieval_recall@1", 60, 1.5),
        ("zeroshot_classification", "acc1", 60, 1.5),
        ("image_caption_selection", "acc", 1000, 4.0),
    ],
)
def test_search_recovers_planted_slots(task, metric, items, noise):
    sims = planted(task, items, noise)

    def value(sums):
        return sims.metrics_of(sums.scores(), recall_k=(1,))[metric]

    forward = forward_selection(sims.num_slots, sims.slot_sums, value)
    assert {step.changed for step in forward[:3]} == set(PLANTED)
    assert best_step(forward).slots == PLANTED
    backward = backward_elimination(sims.num_slots, sims.slot_sums, value)
    assert best_step(backward).slots == PLANTED
    # a single planted slot is weaker than the three together
    assert all(value(sims.slot_sums(slot)) < best_step(forward).value for slot in PLANTED)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt")[1]


def test_select_on_a_validation_split_then_evaluate(tiny, tmp_path):
    """End to end: `sparo eval --slots` on the report split reproduces what select reported."""
    root = tmp_path / "ret"
    write_wds_retrieval(root, [[f"photo {i}", f"image {i}"] for i in range(8)], split="train")
    write_wds_retrieval(root, [[f"a {i}", f"the {i}"] for i in range(8)], split="test", seed=99)
    common = ["--model", "sparo-ViT-Ti-8-64", "--pretrained", str(tiny), "--dataset", "wds/r"]
    common += ["--dataset_root", str(root), "--task", "zeroshot_retrieval", "--recall_k", "2"]
    out = tmp_path / "sel" / "slots.json"
    argv = ["select", *common, "--selection_split", "train", "--max_slots", "6"]
    argv += ["--cache_dir", str(tmp_path / "cache"), "--batch_size", "4", "--out", str(out)]
    assert cli.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["metric"] == "image_retrieval_recall@2"
    assert result["protocol"]["selection"] == {"split": "train", "root": str(root), "items": 8}
    assert [len(step["slots"]) for step in result["steps"]] == [1, 2, 3, 4, 5, 6]
    assert result["steps"][0]["selection"] <= max(s["selection"] for s in result["steps"])
    with Image.open(out.with_suffix(".png")) as plot:
        assert plot.size[0] > 400
    reported = tmp_path / "eval.json"
    argv = ["eval", *common, "--slots", str(out), "--no_amp", "--num_workers", "0", "--quiet"]
    assert cli.main([*argv, "--output", str(reported)]) == 0
    evaluated = json.loads(reported.read_text())
    assert evaluated["slots"] == result["slots"]
    assert evaluated["metrics"] == pytest.approx(result["report"]["selected"], abs=1e-6)
    # both name the checkpoint they scored, by path and hash
    for record in (result["provenance"], evaluated["provenance"]):
        assert record["checkpoint"][0]["path"] == str(Path(tiny).resolve())
        assert record["sparo_cfg"]["num_slots"] == 16
    assert result["provenance"]["checkpoint"] == evaluated["provenance"]["checkpoint"]
    # outputs are never overwritten
    with pytest.raises(FileExistsError, match="already exist"):
        select_main([*common, "--out", str(out)])


def test_select_splits_by_seed_with_backward_elimination(tiny, tmp_path):
    root = write_sugar_crepe(
        tmp_path / "sc", "replace_att", [(f"a red {i}", f"a blue {i}") for i in range(10)]
    )
    out = tmp_path / "slots.json"
    argv = ["select", "--model", "sparo-ViT-Ti-8-64", "--pretrained", str(tiny)]
    argv += ["--dataset", "sugar_crepe/replace_att", "--dataset_root", str(root)]
    argv += ["--search", "backward", "--seed", "1", "--cache_dir", str(tmp_path / "cache")]
    assert cli.main([*argv, "--out", str(out), "--plot", str(tmp_path / "curve.png")]) == 0
    result = json.loads(out.read_text())
    assert result["protocol"]["selection"] == {
        "split": "test",
        "fraction": 0.5,
        "seed": 1,
        "items": 5,
    }
    assert result["protocol"]["report"]["items"] == 5
    steps = result["steps"]
    assert steps[0]["slots"] == list(range(16)) and steps[0]["changed"] is None
    assert len(steps) == 16
    chosen = max(steps, key=lambda s: (s["selection"], -len(s["slots"])))
    assert result["slots"] == chosen["slots"]
    assert result["report"]["all_slots"]["acc"] == steps[0]["report"]
    assert (tmp_path / "curve.png").is_file()
    assert read_slots(out) == result["slots"]


def test_select_rejects_unknown_metric(tiny, tmp_path):
    root = write_sugar_crepe(tmp_path / "sc", "add_att", [("a red cat", "a cat")] * 4)
    argv = ["--model", "sparo-ViT-Ti-8-64", "--pretrained", str(tiny)]
    argv += ["--dataset", "sugar_crepe/add_att", "--dataset_root", str(root), "--metric", "acc1"]
    with pytest.raises(ValueError, match=r"not a metric of image_caption_selection.*'acc'"):
        select_main([*argv, "--cache_dir", str(tmp_path), "--out", str(tmp_path / "s.json")])


def test_select_on_zero_shot_classification(tiny, tmp_path):
    """End to end on a classification set: the reported subset metrics are those of
    `sparo eval --slots` on the report split."""
    root = tmp_path / "cls"
    classes = ["cat", "dog", "car", "tree", "boat", "bird"]
    write_wds_classification(root, classes, per_class=2, split="train")
    write_wds_classification(root, classes, per_class=2, split="test", seed=50)
    common = ["--model", "sparo-ViT-Ti-8-64", "--pretrained", str(tiny), "--dataset", "wds/c"]
    common += ["--dataset_root", str(root)]
    out = tmp_path / "slots.json"
    argv = ["select", *common, "--selection_split", "train", "--max_slots", "4"]
    argv += ["--cache_dir", str(tmp_path / "cache"), "--batch_size", "4", "--out", str(out)]
    assert cli.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["task"] == "zeroshot_classification" and result["metric"] == "acc1"
    assert result["slots"] and set(result["slots"]) <= set(range(16))
    assert result["protocol"]["report"] == {"split": "test", "root": str(root), "items": 12}
    steps = result["steps"]
    assert [len(step["slots"]) for step in steps] == [1, 2, 3, 4]
    chosen = next(step for step in steps if step["slots"] == result["slots"])
    assert chosen["selection"] == max(step["selection"] for step in steps)
    for part in ("all_slots", "selected"):
        metrics = result["report"][part]
        assert set(metrics) == {"acc1", "acc5", "mean_per_class_recall"}
        assert all(0 <= value <= 1 for value in metrics.values())
        assert metrics["acc1"] <= metrics["acc5"]
    assert result["report"]["selected"]["acc1"] == chosen["report"]
    reported = tmp_path / "eval.json"
    argv = ["eval", *common, "--slots", str(out), "--no_amp", "--num_workers", "0", "--quiet"]
    assert cli.main([*argv, "--output", str(reported)]) == 0
    evaluated = json.loads(reported.read_text())
    assert evaluated["metrics"] == pytest.approx(result["report"]["selected"], abs=1e-6)


@pytest.mark.parametrize(
    "selection",
    [
        ["--selection_split", "test"],
        ["--selection_dataset_root", "{root}"],
        ["--selection_split", "test", "--selection_dataset_root", "{root}/../r"],
        ["--selection_dataset_root", "{parent}/{{dataset}}"],
    ],
    ids=["same-split", "same-root", "same-resolved-root", "same-filled-template"],
)
def test_select_refuses_to_select_on_the_report_data(tiny, tmp_path, selection):
    root = tmp_path / "r"
    selection = [arg.format(root=root, parent=tmp_path) for arg in selection]
    argv = ["--model", "sparo-ViT-Ti-8-64", "--pretrained", str(tiny), "--dataset", "wds/r"]
    argv += ["--dataset_root", str(root), "--split", "test", *selection]
    argv += ["--cache_dir", str(tmp_path / "cache"), "--out", str(tmp_path / "slots.json")]
    with pytest.raises(
        ValueError,
        match=r"selection part \(--selection_split test, --selection_dataset_root .*\) is the "
        r"report part \(--split test, --dataset_root .*pass neither to divide --split by --seed",
    ):
        select_main(argv)
    assert not (tmp_path / "slots.json").exists() and not (tmp_path / "cache").exists()


def test_select_fails_clearly_on_missing_data(tiny, tmp_path, capsys):
    """Missing report or selection data fail before any download, naming what is missing."""
    root = write_wds_retrieval(tmp_path / "ret", [[f"photo {i}"] for i in range(4)])
    argv = ["select", "--model", "sparo-ViT-Ti-8-64", "--pretrained", str(tiny)]
    argv += ["--cache_dir", str(tmp_path / "cache"), "--out", str(tmp_path / "slots.json")]
    retrieval = [*argv, "--dataset", "wds/r", "--task", "zeroshot_retrieval", "--batch_size", "4"]
    missing = tmp_path / "nowhere"
    assert cli.main([*retrieval, "--dataset_root", str(missing)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("sparo select: error: WebDataset wds/r (test) is incomplete")
    assert str(missing / "test" / "nshards.txt") in error
    retrieval += ["--dataset_root", str(root), "--selection_dataset_root", str(missing)]
    assert cli.main(retrieval) == 1
    assert str(missing / "test" / "nshards.txt") in capsys.readouterr().err
    assert cli.main([*argv, "--dataset", "imagenetv2", "--dataset_root", str(missing)]) == 1
    assert f"{missing}, which is missing; nothing is downloaded" in capsys.readouterr().err
    assert not missing.exists() and not (tmp_path / "slots.json").exists()


def test_select_refuses_a_nan_model(tmp_path, capsys):
    nan = save_nan_model(tmp_path / "nan.pt")
    root = write_sugar_crepe(tmp_path / "sc", "swap_att", [(f"a {i}", f"no {i}") for i in range(4)])
    argv = ["select", "--model", "sparo-ViT-Ti-8-64", "--pretrained", str(nan)]
    argv += ["--dataset", "sugar_crepe/swap_att", "--dataset_root", str(root)]
    argv += ["--cache_dir", str(tmp_path / "cache"), "--out", str(tmp_path / "s.json")]
    assert cli.main(argv) == 1
    assert "computes non-finite image embeddings" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "cache").exists()


@pytest.fixture
def swap_att(tiny, tmp_path):
    root = write_sugar_crepe(tmp_path / "sc", "swap_att", [(f"a {i}", f"no {i}") for i in range(6)])
    argv = ["select", "--model", "sparo-ViT-Ti-8-64", "--pretrained", str(tiny)]
    return [*argv, "--dataset", "sugar_crepe/swap_att", "--dataset_root", str(root)]


def test_select_refuses_bad_arguments_before_any_work(swap_att, tmp_path, capsys):
    sel = tmp_path / "sel"
    cases = {
        ("--out", str(sel / "y.png")): r"y.png'\] would be written more than once; --out is",
        ("--out", str(sel / "y.json"), "--selection_split", "val"): "only the split 'test'",
        ("--out", str(sel / "y.json"), "--selection_fraction", "0.2"): "from 1 item",
    }
    for extra, message in cases.items():
        assert cli.main([*swap_att, *extra]) == 1
        assert re.search(message, capsys.readouterr().err), extra
    with pytest.raises(SystemExit, match="2"):
        cli.main([*swap_att, "--out", str(sel / "y.json"), "--max_slots", "0"])
    assert "--max_slots: must be at least 1, got 0" in capsys.readouterr().err
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": open_clip.create_model("ViT-Ti-8-64").state_dict()}, plain)
    argv = [*swap_att, "--model", "ViT-Ti-8-64", "--pretrained", str(plain)]
    assert cli.main([*argv, "--out", str(sel / "y.json")]) == 1
    assert "is not a SPARO model (a plain CLIP, without slots)" in capsys.readouterr().err
    assert not sel.exists()


def test_select_warns_on_small_parts_and_writes_both_files_or_neither(
    swap_att, tmp_path, capsys, monkeypatch
):
    from open_clip_sparo.evaluation import concept_selection

    argv = [*swap_att, "--cache_dir", str(tmp_path / "cache"), "--out", str(tmp_path / "s.json")]

    def broken_disk(path, write, overwrite=True):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(concept_selection, "atomic_write", broken_disk)
        with pytest.raises(OSError, match="No space"):
            cli.main(argv)
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "s.png").exists()
    assert cli.main(argv) == 0
    error = capsys.readouterr().err
    assert "warning: the selection part has 3 items" in error and "report part 3" in error
    assert (tmp_path / "s.json").is_file() and (tmp_path / "s.png").is_file()
