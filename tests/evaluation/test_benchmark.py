import json
import re
from pathlib import Path

import open_clip
import pytest
import torch
from benchmark_data import (
    save_nan_model,
    save_tiny_model,
    write_run_folder,
    write_sugar_crepe,
    write_wds_classification,
    write_wds_retrieval,
)
from clip_benchmark import cli
from clip_benchmark import models as benchmark_models
from clip_benchmark.metrics import image_caption_selection, linear_probe, zeroshot_classification
from data_utils import add_code_running_files

from open_clip_sparo import cli as sparo_cli
from open_clip_sparo import save_pretrained
from open_clip_sparo.evaluation import benchmark, datasets

CLASSES = ["cat", "dog", "car", "tree", "boat", "bird"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    classification = write_wds_classification(root / "cls", CLASSES, per_class=2)
    write_wds_classification(root / "cls", CLASSES, per_class=2, split="train", seed=50)
    captions = [[f"picture {i}", f"image number {i}"] for i in range(8)]
    return {
        "model": save_tiny_model(root / "tiny.pt"),
        "cls": classification,
        "ret": write_wds_retrieval(root / "ret", captions),
        "sc": write_sugar_crepe(root / "sc", "swap_obj", [(f"a {c}", f"no {c}") for c in CLASSES]),
    }


def run_eval(out, *args):
    """`sparo eval` through the command dispatcher; the result JSON."""
    argv = ["eval", *args, "--no_amp", "--num_workers", "0", "--batch_size", "4", "--quiet"]
    assert sparo_cli.main([*argv, "--output", str(out)]) == 0
    return json.loads(out.read_text())


def model_args(data):
    return ["--model", "sparo-ViT-Ti-8-64", "--pretrained", str(data["model"][1])]


def test_all_slots_equals_no_slots(data, tmp_path):
    (tmp_path / "all.json").write_text(json.dumps({"slots": list(range(16)), "protocol": {}}))
    dataset = ["--dataset", "wds/tiny", "--dataset_root", str(data["cls"])]
    plain = run_eval(tmp_path / "plain.json", *model_args(data), *dataset)
    selected = run_eval(
        tmp_path / "sel.json", *model_args(data), *dataset, "--slots", str(tmp_path / "all.json")
    )
    assert plain["task"] == "zeroshot_classification"
    assert set(plain["metrics"]) == {"acc1", "acc5", "mean_per_class_recall"}
    assert selected["metrics"] == plain["metrics"]
    assert plain["slots"] == selected["slots"] == list(range(16))


def test_slot_subset_is_applied_and_recorded(data, tmp_path):
    (tmp_path / "slots.json").write_text("[5, 3]")
    dataset = ["--dataset", "sugar_crepe/swap_obj", "--dataset_root", str(data["sc"])]
    result = run_eval(
        tmp_path / "r.json", *model_args(data), *dataset, "--slots", str(tmp_path / "slots.json")
    )
    assert result["task"] == "image_caption_selection"
    assert result["slots"] == [3, 5]
    assert 0 <= result["metrics"]["acc"] <= 1


def test_model_references_give_the_same_result(data, tmp_path):
    model, _ = data["model"]
    save_pretrained(model, tmp_path / "export")
    run = write_run_folder(tmp_path / "run", model, epochs=[0])
    dataset = ["--dataset", "wds/tiny", "--dataset_root", str(data["ret"])]
    dataset += ["--task", "zeroshot_retrieval", "--recall_k", "1", "3"]
    results = [
        run_eval(tmp_path / f"{i}.json", *refs, *dataset)
        for i, refs in enumerate(
            [
                model_args(data),
                ["--model", f"local-dir:{tmp_path / 'export'}"],
                ["--model", str(run)],
            ]
        )
    ]
    assert set(results[0]["metrics"]) == {
        f"{d}_retrieval_recall@{k}" for d in ("image", "text") for k in (1, 3)
    }
    assert results[1]["metrics"] == results[0]["metrics"] == results[2]["metrics"]
    # each result names the files it scored, the run's checkpoint and the run's model name
    run_record = results[2]["provenance"]
    checkpoint = run / "checkpoints" / "epoch_0.pt"
    assert run_record["checkpoint"][-1]["path"] == str(checkpoint.resolve())
    assert run_record["checkpoint"][-1]["size"] == checkpoint.stat().st_size
    assert run_record["model"] == "sparo-ViT-Ti-8-64" and run_record["reference"] == str(run)
    assert [Path(f["path"]).name for f in results[1]["provenance"]["checkpoint"]] == [
        "open_clip_config.json",
        "open_clip_model.safetensors",
    ]
    assert results[0]["provenance"]["sparo_cfg"]["num_slots"] == 16


def test_linear_probe_runs_on_cpu(data, tmp_path):
    (tmp_path / "slots.json").write_text("[0, 1, 2, 3]")
    dataset = ["--dataset", "wds/tiny", "--dataset_root", str(data["cls"])]
    probe = ["--task", "linear_probe", "--fewshot_epochs", "2", "--fewshot_lr", "0.5"]
    features = tmp_path / "features"
    result = run_eval(
        tmp_path / "lp.json",
        *model_args(data),
        *dataset,
        *probe,
        "--feature_root",
        str(features),
        "--slots",
        str(tmp_path / "slots.json"),
    )
    assert 0 <= result["metrics"]["lp_acc1"] <= 1
    assert result["slots"] == [0, 1, 2, 3]
    # cached features of a slot subset never mix with those of all slots
    (cached,) = features.glob("slots-4-*/*/features_train.pt")
    assert torch.load(cached).shape == (12, 256)


def test_plain_openclip_models_still_work(data, tmp_path):
    torch.manual_seed(0)
    plain = open_clip.create_model("ViT-Ti-8-64")
    torch.save({"state_dict": plain.state_dict()}, tmp_path / "plain.pt")
    model = ["--model", "ViT-Ti-8-64", "--pretrained", str(tmp_path / "plain.pt")]
    dataset = ["--dataset", "sugar_crepe/swap_obj", "--dataset_root", str(data["sc"])]
    result = run_eval(tmp_path / "r.json", *model, *dataset)
    assert "slots" not in result
    (tmp_path / "slots.json").write_text("[1]")
    with pytest.raises(ValueError, match="no SPARO slots"):
        benchmark.evaluate([*model, *dataset, "--slots", str(tmp_path / "slots.json"), "--quiet"])


def test_shards_are_read_without_unpickling_their_files(data, tmp_path):
    """CLIP_benchmark's WebDataset loader decodes every file of a sample: WebDataset's default
    decoder would unpickle a ``pyd`` file (here in the loader worker), running code from data."""
    root = write_wds_classification(tmp_path / "cls", CLASSES, per_class=1)
    add_code_running_files(root / "test" / "0.tar", tmp_path / "code-ran")
    argv = [*model_args(data), "--dataset", "wds/tiny", "--dataset_root", str(root)]
    out = tmp_path / "r.json"
    options = ["--no_amp", "--num_workers", "1", "--quiet", "--output", str(out)]  # 1 shard
    assert sparo_cli.main(["eval", *argv, *options]) == 0
    assert "acc1" in json.loads(out.read_text())["metrics"]
    assert not (tmp_path / "code-ran").exists()


def test_results_are_never_overwritten(data, tmp_path):
    out = tmp_path / "r.json"
    out.write_text("{}")
    args = [*model_args(data), "--dataset", "sugar_crepe/swap_obj"]
    args += ["--dataset_root", str(data["sc"]), "--no_amp", "--num_workers", "0", "--quiet"]
    with pytest.raises(FileExistsError, match="--skip_existing"):
        benchmark.evaluate([*args, "--output", str(out)])
    assert benchmark.evaluate([*args, "--output", str(out), "--skip_existing"]) == 0
    assert out.read_text() == "{}"


def test_missing_dataset_files_are_listed(data, tmp_path, capsys):
    args = [*model_args(data), "--dataset_root", str(tmp_path / "nowhere"), "--quiet"]
    with pytest.raises(FileNotFoundError, match=r"missing: \[.*nshards.txt"):
        benchmark.evaluate([*args, "--dataset", "wds/tiny"])
    with pytest.raises(FileNotFoundError, match=r"val2017.*swap_att\.json"):
        benchmark.evaluate([*args, "--dataset", "sugar_crepe/swap_att"])
    # through the dispatcher: a one-line error, exit code 1
    assert sparo_cli.main(["eval", *args, "--dataset", "wds/tiny"]) == 1
    assert "nshards.txt" in capsys.readouterr().err
    retrieval = [*model_args(data), "--dataset", "wds/tiny", "--dataset_root", str(data["ret"])]
    with pytest.raises(ValueError, match="--task zeroshot_retrieval"):
        benchmark.evaluate(retrieval)


def test_missing_roots_never_reach_clip_benchmark(data, tmp_path, monkeypatch):
    """CLIP_benchmark would download imagenetv2 into the missing root despite download=False."""

    def downloading(*_, **__):
        raise AssertionError("CLIP_benchmark's build_dataset was called")

    monkeypatch.setattr(datasets.builder, "build_dataset", downloading)
    with pytest.raises(FileNotFoundError, match=r"data.imagenetv2, which is missing"):
        datasets.build_dataset("imagenetv2", str(tmp_path / "data" / "{dataset}"), None)
    args = [*model_args(data), "--dataset", "imagenetv2", "--dataset_root", str(tmp_path / "v2")]
    with pytest.raises(FileNotFoundError, match="pass --dataset_root to a prepared copy"):
        benchmark.evaluate([*args, "--quiet", "--output", str(tmp_path / "r.json")])
    assert not (tmp_path / "v2").exists() and not (tmp_path / "r.json").exists()


def test_clip_benchmark_is_left_as_it_was(data, tmp_path):
    accuracy, probe = zeroshot_classification.accuracy, linear_probe.evaluate
    run_eval(
        tmp_path / "r.json",
        *model_args(data),
        "--dataset",
        "sugar_crepe/swap_obj",
        "--dataset_root",
        str(data["sc"]),
    )
    assert zeroshot_classification.accuracy is accuracy
    assert linear_probe.accuracy is accuracy
    assert linear_probe.evaluate is probe
    assert benchmark.MODEL_TYPE not in benchmark_models.MODEL_TYPES
    assert not hasattr(cli, "open")
    assert cli.json is json


def test_parser_has_every_clip_benchmark_argument_and_slots():
    with benchmark.registered_model_type(lambda **_: None):
        parser = benchmark.build_parser()
    text = parser.format_help()
    for option in ("--dataset_root", "--recall_k", "--fewshot_k", "--skip_existing", "--slots"):
        assert option in text
    args = parser.parse_args(["--dataset", "wds/x"])
    assert (args.model_type, args.pretrained) == ("sparo", [""])


def test_a_nan_model_is_refused_not_scored(data, tmp_path, capsys):
    """A NaN model would score acc 1.0 on SugarCrepe (the argmax over NaN is the true caption)."""
    nan = save_nan_model(tmp_path / "nan.pt")
    argv = ["eval", "--model", "sparo-ViT-Ti-8-64", "--pretrained", str(nan), "--no_amp"]
    argv += ["--num_workers", "0"]
    argv += ["--dataset", "sugar_crepe/swap_obj", "--dataset_root", str(data["sc"])]
    assert sparo_cli.main([*argv, "--output", str(tmp_path / "r.json"), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "sparo eval: error: --model sparo-ViT-Ti-8-64 --pretrained" in error
    assert "non-finite image embeddings" in error and "weight tensors hold NaN" in error
    assert not (tmp_path / "r.json").exists()


def test_every_output_is_checked_before_any_evaluation(data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loads = []
    monkeypatch.setattr(benchmark, "load_model", lambda *a, **k: loads.append(a))
    for task in ("swap_att", "swap_obj"):  # two categories in one root
        second = write_sugar_crepe(tmp_path / "sc", task, [("a cat", "no cat")])
    argv = ["eval", *model_args(data), "--dataset", "sugar_crepe/swap_att", "sugar_crepe/swap_obj"]
    argv += ["--dataset_root", str(second), "--quiet"]
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "sugar_crepe_swap_obj.json").write_text("{}")  # the second one exists
    cases = {
        "r/{dataset}.json": r"\['r/sugar_crepe_swap_obj.json'\] already exist",
        "r/one.json": r"\['r/one.json'\] would be written more than once",
        str(data["model"][1] / "{dataset}.json"): "is a file, not a folder",
    }
    if Path("/proc").is_dir():
        cases["/proc/sparo/{dataset}.json"] = "no file can be created in /proc"
    for output, message in cases.items():
        assert sparo_cli.main([*argv, "--output", output]) == 1, output
        error = capsys.readouterr().err
        assert re.search(message, error) and "nothing was evaluated" in error, error
    assert loads == [] and not (tmp_path / "r" / "sugar_crepe_swap_att.json").exists()


def test_slots_leave_no_feature_folder_behind(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "slots.json").write_text("[1, 2]")
    dataset = ["--dataset", "sugar_crepe/swap_obj", "--dataset_root", str(data["sc"])]
    run_eval(tmp_path / "r.json", *model_args(data), *dataset, "--slots", "slots.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "slots.json"]


def test_cpu_evaluates_in_float32_unless_amp_is_asked(data, tmp_path, monkeypatch):
    """Without CUDA, CPU autocast (bfloat16) is many times slower: the default is float32."""
    seen = []
    evaluate = image_caption_selection.evaluate

    def recording(*args, amp, **kwargs):
        seen.append(amp)
        return evaluate(*args, amp=amp, **kwargs)

    monkeypatch.setattr(image_caption_selection, "evaluate", recording)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    dataset = ["--dataset", "sugar_crepe/swap_obj", "--dataset_root", str(data["sc"])]
    common = [*model_args(data), *dataset, "--num_workers", "0", "--quiet"]
    for i, flag in enumerate([[], ["--amp"], ["--no_amp"]]):
        argv = ["eval", *common, *flag, "--output", str(tmp_path / f"{i}.json")]
        assert sparo_cli.main(argv) == 0
    assert seen == [False, True, False]


def test_linear_probe_features_go_beside_the_output_and_doubts_are_told(
    data, tmp_path, monkeypatch, capsys
):
    """Trained and tested on the same split: the accuracy is no evidence, and says so."""
    monkeypatch.chdir(tmp_path)
    dataset = ["--dataset", "wds/tiny", "--dataset_root", str(data["cls"])]
    probe = ["--task", "linear_probe", "--fewshot_epochs", "2", "--train_split", "test"]
    run_eval(tmp_path / "results" / "lp.json", *model_args(data), *dataset, *probe)
    assert not (tmp_path / "features").exists()
    assert list((tmp_path / "results" / "features").glob("*/features_train.pt"))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "sparo eval: warning: linear probe: 12 of the 12 items of the test split are also in "
        "the training split (the same images in both?): the score overstates the accuracy on "
        "unseen images.",
        "sparo eval: warning: linear probe: the training split has 12 items and the test split "
        "12: with fewer than 50 the score is mostly noise.",
    ]


def test_default_feature_root_is_beside_the_output():
    assert benchmark.default_feature_root("results/lp.json") == Path("results/features")
    assert benchmark.default_feature_root("out/{dataset}/{task}.json") == Path("out/features")
    assert benchmark.default_feature_root("{dataset}_{task}.json") == Path("features")
