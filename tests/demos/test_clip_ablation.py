"""`sparo demo --models`: the controls trained and reported beside the tiny pair (smoke budget)."""

import json

import pytest

from open_clip_sparo.cli import main as sparo
from open_clip_sparo.demos.clip import CONTROLS, ClipDemo, main
from open_clip_sparo.demos.clip_report import SELECTED
from open_clip_sparo.demos.runner import MODELS

BOTTLENECK = "bottleneck-ViT-Ti-8-64"


@pytest.mark.slow  # a demo run: trains three models
def test_ablation_reports_the_control_beside_the_pair(tmp_path):
    out = tmp_path / "ablation"
    assert (
        sparo(["demo", "--out", str(out), "--budget", "smoke", "--models", *MODELS, BOTTLENECK])
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert list(results["results"]) == [*MODELS, BOTTLENECK, SELECTED]
    assert list(results["parameters"]) == [*MODELS, BOTTLENECK]
    report = (out / "report.md").read_text()
    assert report.startswith("# SPARO ablation")
    assert f"| ViT-Ti-8-64 | sparo-ViT-Ti-8-64 | {BOTTLENECK} | {SELECTED} |" in report
    assert f"{BOTTLENECK} is higher than ViT-Ti-8-64" in report
    assert f"sparo-ViT-Ti-8-64 is higher than {BOTTLENECK}" in report

    # the same folder for the pair only: every step reused, the report made again for the pair
    assert sparo(["demo", "--out", str(out), "--budget", "smoke"]) == 0
    assert (out / "report.md").read_text().startswith("# SPARO demo: a tiny CLIP against")
    assert (out / "report.1.md").read_text().startswith("# SPARO ablation")
    assert list(json.loads((out / "results.json").read_text())["parameters"]) == [*MODELS]


def test_models_must_keep_the_pair(tmp_path):
    with pytest.raises(ValueError, match=r"--models lacks \['sparo-ViT-Ti-8-64'\]"):
        main(["--out", str(tmp_path / "x"), "--budget", "smoke", "--models", "ViT-Ti-8-64"])
    assert not (tmp_path / "x" / "steps").exists()


def test_default_models_are_the_pair_and_controls_are_known():
    assert ClipDemo.models == MODELS
    assert {name.split("-")[0] for name in CONTROLS} == {"gap", "bottleneck", "codebook"}
