import json
import tarfile

import pytest
import webdataset as wds

from open_clip_sparo.cli import main as sparo
from open_clip_sparo.synthetic import generate
from open_clip_sparo.synthetic.world import HELD_OUT_PAIRS


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "world"
    return out, generate(out, train_samples=30, eval_samples=12, shard_size=10, seed=3)


def test_training_shards_hold_seen_captions_and_sizes(data):
    out, manifest = data
    assert json.loads((out / "train" / "sizes.json").read_text()) == {
        f"{i:06d}.tar": 10 for i in range(3)
    }
    assert manifest["train"]["shards"].endswith("{000000..000002}.tar")
    samples = list(wds.WebDataset(str(out / "train" / "{000000..000002}.tar"), shardshuffle=False))
    assert len(samples) == 30
    captions = [s["txt"].decode() for s in samples]
    for held_out in HELD_OUT_PAIRS:
        assert not any(" ".join(held_out) in c for c in captions)


def test_eval_sets_follow_clip_benchmark_layouts(data):
    out, manifest = data
    for split in ("val", "test"):
        root = out / "eval" / split
        for dataset, task in manifest["datasets"].items():
            folder = root / dataset.removeprefix("wds/").replace("/", "-")
            if dataset.startswith("wds/"):
                assert (folder / "test" / "nshards.txt").read_text() == "2"
                with tarfile.open(folder / "test" / "0.tar") as tar:
                    names = tar.getnames()
                assert any(n.endswith(".png") for n in names)
                kind = (folder / "dataset_type.txt").read_text().strip()
                assert kind == ("retrieval" if task == "zeroshot_retrieval" else "classification")
            else:
                name = dataset.split("/")[1]
                annotations = json.loads((folder / f"{name}.json").read_text())
                assert annotations
                for item in annotations.values():
                    assert (folder / "val2017" / item["filename"]).exists()
                    assert item["caption"] != item["negative_caption"]


def test_same_seed_same_bytes_and_reuse(tmp_path, data):
    out, manifest = data
    again = generate(tmp_path / "again", train_samples=30, eval_samples=12, shard_size=10, seed=3)
    assert again["datasets"] == manifest["datasets"]
    for path in ("train/000001.tar", "eval/test/sugar_crepe-swap_att/swap_att.json"):
        assert (tmp_path / "again" / path).read_bytes() == (out / path).read_bytes()
    assert generate(out, train_samples=30, eval_samples=12, shard_size=10, seed=3) == manifest


def test_other_settings_never_overwrite(data, capsys):
    out, _ = data
    before = (out / "manifest.json").read_text()
    assert sparo(["generate", "--out", str(out), "--train-samples", "5"]) == 1
    assert "choose another --out" in capsys.readouterr().err
    assert (out / "manifest.json").read_text() == before


def test_foreign_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a generated data folder"):
        generate(tmp_path, train_samples=2, eval_samples=2)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_folder_that_lost_a_shard_is_not_reused(data, tmp_path, capsys):
    import shutil

    out = shutil.copytree(data[0], tmp_path / "world")
    (out / "train" / "000001.tar").unlink()
    argv = ["generate", "--out", str(out), "--train-samples", "30", "--eval-samples", "12"]
    assert sparo([*argv, "--shard-size", "10", "--seed", "3"]) == 1
    error = capsys.readouterr().err
    assert "lacks 1 of its files" in error and "000001.tar" in error
