import json

import pytest
from benchmark_data import write_sugar_crepe

from open_clip_sparo import cli
from open_clip_sparo.evaluation.datasets import check_dataset_files


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
        check_dataset_files("sugar_crepe/swap_att", str(root), "test", "image_caption_selection")


def test_sugar_crepe_images_and_splits_are_checked_up_front(tmp_path, capsys):
    root = write_sugar_crepe(tmp_path, "swap_att", [("a cat", "no cat"), ("a dog", "no dog")])
    annotations = json.loads((root / "swap_att.json").read_text())
    (root / "val2017" / annotations["1"]["filename"]).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 images that .* names are not in .*val2017"):
        check_dataset_files("sugar_crepe/swap_att", str(root), "test", "image_caption_selection")
    with pytest.raises(ValueError, match="only the split 'test', not 'val'"):
        check_dataset_files("sugar_crepe/swap_att", str(root), "val", "image_caption_selection")
    # through the command line: one line, exit status 1, nothing written
    (root / "swap_att.json").write_text("")
    argv = ["eval", "--model", "sparo-ViT-Ti-8-64", "--pretrained", str(tmp_path / "none.pt")]
    argv += ["--dataset", "sugar_crepe/swap_att", "--dataset_root", str(root)]
    assert cli.main([*argv, "--output", str(tmp_path / "r.json")]) == 1
    assert capsys.readouterr().err.startswith("sparo eval: error: the SugarCrepe annotation file")
    assert not (tmp_path / "r.json").exists()
