"""The DINO demo, end to end, in its reduced budget."""

import json

import pytest

from open_clip_sparo.cli import main as sparo
from open_clip_sparo.demos.dino import BUDGETS
from open_clip_sparo.demos.dino_report import PROTOCOLS, STAGES, read_losses
from open_clip_sparo.demos.runner import MODELS

pytestmark = pytest.mark.slow  # each test reads a demo run (minutes)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("dino-demo") / "run"
    assert sparo(["demo-dino", "--out", str(out), "--budget", "smoke"]) == 0
    return out


def test_demo_writes_report_and_results(demo):
    results = json.loads((demo / "results.json").read_text())
    tasks = set(BUDGETS["smoke"].datasets)
    assert set(results["results"]) == set(MODELS)
    for model in MODELS:
        assert set(results["results"][model]) == set(STAGES)
        for stage in STAGES:
            assert set(results["results"][model][stage]) == tasks
            for entry in results["results"][model][stage].values():
                for protocol in PROTOCOLS:
                    assert 0.0 <= entry[protocol]["mean"] <= 100.0
        assert read_losses(demo / "runs" / f"{model}-seed0" / "log.jsonl")
    parameters = results["parameters"]
    assert parameters["sparo-ViT-Ti-8-64"]["backbone"] <= parameters["ViT-Ti-8-64"]["backbone"]
    for stage in STAGES:  # SPARO's k-NN on slots chosen within the memory set
        for entry in results["results"]["sparo-ViT-Ti-8-64"][stage].values():
            assert 0.0 <= entry["knn_selected"]["mean"] <= 100.0
    report = (demo / "report.md").read_text()
    assert "Concept selection for SPARO" in report
    assert all(task.removeprefix("wds/") in report for task in tasks)
    assert (demo / "figures" / "losses.png").stat().st_size > 0
    # each run's evaluated checkpoint, by path and hash
    for model in MODELS:
        record = results["provenance"][f"{model}-seed0"]
        (checkpoint,) = record["checkpoint"]
        assert checkpoint["path"].startswith(str((demo / "runs" / f"{model}-seed0").resolve()))
        assert len(checkpoint["sha256"]) == 16 and record["model"] == model
        assert (record["sparo_cfg"] is None) == (model == "ViT-Ti-8-64")


def test_rerun_reuses_steps_and_keeps_the_earlier_report(demo, capsys):
    before = (demo / "report.md").read_text()
    (demo / "steps" / "report.json").unlink()
    assert sparo(["demo-dino", "--out", str(demo), "--budget", "smoke"]) == 0
    assert "train-ViT-Ti-8-64-seed0: done in an earlier run, reused" in capsys.readouterr().out
    expected = before.replace("figures/losses.png", "figures/losses.1.png")
    assert (demo / "report.1.md").read_text() == expected
    assert (demo / "figures" / "losses.1.png").stat().st_size > 0
    assert (demo / "results.1.json").exists()


def test_other_budget_in_the_same_folder_is_refused(demo, capsys):
    assert sparo(["demo-dino", "--out", str(demo), "--budget", "full"]) == 1
    assert "records other settings than this run's" in capsys.readouterr().err
