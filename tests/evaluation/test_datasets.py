"""open_clip_sparo.evaluation.datasets: a data set's files are checked before any download."""

import pytest
from benchmark_data import write_wds_classification

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
