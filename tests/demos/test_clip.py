"""The demo pipeline, end to end, in its reduced budget."""

import json

import pytest

from open_clip_sparo.cli import main as sparo
from open_clip_sparo.demos.clip import BUDGETS
from open_clip_sparo.demos.clip_report import SELECTED, parse_losses
from open_clip_sparo.demos.runner import MODELS, SPARO

pytestmark = pytest.mark.slow  # each test reads a demo run (minutes)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert sparo(["demo", "--out", str(out), "--budget", "smoke"]) == 0
    return out


def test_demo_writes_report_and_results(demo):
    results = json.loads((demo / "results.json").read_text())
    datasets = BUDGETS["smoke"].datasets
    assert set(results["results"]) == {*MODELS, SELECTED}
    for model in results["results"].values():
        assert set(model) == set(datasets)
        for entry in model.values():
            assert 0.0 <= entry["mean"] <= 1.0 and len(entry["per_seed"]) == 1
    assert results["parameters"][SPARO] <= results["parameters"]["ViT-Ti-8-64"]
    report = (demo / "report.md").read_text()
    assert all(d in report for d in datasets)
    for figure in ("losses.png", "tasks.png", "summary.png"):
        assert (demo / "figures" / figure).stat().st_size > 0
    for model in MODELS:
        assert parse_losses(demo / "runs" / f"{model}-seed0" / "out.log")
        # the checkpoint each run was evaluated with, by path and hash
        record = results["provenance"][f"{model}-seed0"]
        checkpoint = record["checkpoint"][-1]  # after the run's open_clip_config.json
        assert checkpoint["path"].endswith(".pt") and len(checkpoint["sha256"]) == 16
        assert record["model"] == model


def test_rerun_reuses_steps_and_keeps_the_earlier_report(demo, capsys):
    before = (demo / "report.md").read_text()
    (demo / "steps" / "report.json").unlink()
    assert sparo(["demo", "--out", str(demo), "--budget", "smoke"]) == 0
    output = capsys.readouterr().out
    assert "train-sparo-ViT-Ti-8-64-seed0: done in an earlier run, reused" in output
    # the earlier report keeps its own charts
    expected = before.replace("figures/losses.png", "figures/losses.1.png")
    assert (demo / "report.1.md").read_text() == expected.replace("tasks.png", "tasks.1.png")
    assert (demo / "figures" / "tasks.1.png").stat().st_size > 0
    assert (demo / "figures" / "tasks.png").stat().st_size > 0
    assert (demo / "results.1.json").exists()


def test_other_budget_in_the_same_folder_is_refused(demo, capsys):
    assert sparo(["demo", "--out", str(demo), "--budget", "full"]) == 1
    assert "records other settings than this run's" in capsys.readouterr().err


def test_an_unrelated_folder_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert sparo(["demo", "--out", str(tmp_path), "--budget", "smoke"]) == 1
    assert "is a non-empty folder that is not a demo folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
