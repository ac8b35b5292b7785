"""open_clip_sparo.evaluation.datasets: a data set's files are checked before any download."""

import json

import pytest
from benchmark_data import write_sugar_crepe, write_wds_classification

from open_clip_sparo import cli
from open_clip_sparo.evaluation import datasets

CLASSES = ["cat", "dog", "car", "tree", "boat", "bird"]


def test_missing_files_are_listed_before_any_download(tmp_path):
    root = write_wds_classification(tmp_path / "cls", CLASSES, per_class=1, num_shards=2)
    (root / "test" / "1.tar").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing: \[.*1\.tar'\]"):
        datasets.check_dataset_files("wds/x", str(root), "test", "zeroshot_classification")
    (tmp_path / "coco" / "val2014").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"missing: \[.*coco_test_karpathy\.json'\]"):
        datasets.check_dataset_files("mscoco_captions", str(tmp_path / "coco"), "test", "auto")
    with pytest.raises(FileNotFoundError, match=r"flickr30k_test_karpathy\.txt"):
        datasets.check_dataset_files("flickr30k", str(tmp_path), "test", "auto")


@pytest.mark.parametrize(
    "dataset", ["imagenetv2", "imagenet_sketch", "imagenet-a", "imagenet-r", "objectnet", "cifar10"]
)
def test_other_datasets_need_a_populated_root(tmp_path, dataset):
    root = tmp_path / "root"
    with pytest.raises(FileNotFoundError, match=r"root, which is missing; nothing is downloaded"):
        datasets.check_dataset_files(dataset, str(root), "test", "zeroshot_classification")
    root.mkdir()
    with pytest.raises(FileNotFoundError, match="which is empty"):
        datasets.check_dataset_files(dataset, str(root), "test", "zeroshot_classification")
    (root / "images").mkdir()
    datasets.check_dataset_files(dataset, str(root), "test", "zeroshot_classification")
    (tmp_path / "file").write_text("")
    with pytest.raises(FileNotFoundError, match="which is not a folder"):
        datasets.check_dataset_files(dataset, str(tmp_path / "file"), "test", "auto")


def test_datasets_without_local_data_are_not_checked(tmp_path):
    datasets.check_dataset_files("dummy", str(tmp_path / "none"), "test", "auto")
    datasets.check_dataset_files("wds/x", "https://example.org/x", "test", "zeroshot_retrieval")


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        ("", ValueError, "swap_att.json is empty; it must hold JSON"),
        ("{bad", ValueError, r"swap_att.json is not valid JSON \(Expecting property name"),
        ("{}", ValueError, "holds an empty object; expected"),
        ("[1, 2]", ValueError, "holds a JSON list; expected"),
        ('{"0": {"filename": "0.jpg"}}', ValueError, r"1 of 1 instances \(e.g. \['0'\]\) lack"),
        ('{"0": [1]}', ValueError, "lack a string filename / caption / negative_caption"),
    ],
)
def test_sugar_crepe_annotations_are_checked_up_front(tmp_path, content, error, message):
    root = write_sugar_crepe(tmp_path, "swap_att", [("a cat", "no cat")])
    (root / "swap_att.json").write_text(content)
    with pytest.raises(error, match=message):
        datasets.check_dataset_files(
            "sugar_crepe/swap_att", str(root), "test", "image_caption_selection"
        )


def test_sugar_crepe_images_and_splits_are_checked_up_front(tmp_path, capsys):
    root = write_sugar_crepe(tmp_path, "swap_att", [("a cat", "no cat"), ("a dog", "no dog")])
    annotations = json.loads((root / "swap_att.json").read_text())
    (root / "val2017" / annotations["1"]["filename"]).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 images that .* names are not in .*val2017"):
        datasets.check_dataset_files(
            "sugar_crepe/swap_att", str(root), "test", "image_caption_selection"
        )
    with pytest.raises(ValueError, match="only the split 'test', not 'val'"):
        datasets.check_dataset_files(
            "sugar_crepe/swap_att", str(root), "val", "image_caption_selection"
        )
    # through the command line: one line, exit status 1, nothing written
    (root / "swap_att.json").write_text("")
    argv = ["eval", "--model", "sparo-ViT-Ti-8-64", "--pretrained", str(tmp_path / "none.pt")]
    argv += ["--dataset", "sugar_crepe/swap_att", "--dataset_root", str(root)]
    assert cli.main([*argv, "--output", str(tmp_path / "r.json")]) == 1
    assert capsys.readouterr().err.startswith("sparo eval: error: the SugarCrepe annotation file")
    assert not (tmp_path / "r.json").exists()
