"""``python -m benchmarks.gpu_check --device cpu --smoke``: every part of the GPU check runs."""

import json
import math

import pytest

from benchmarks import gpu_check, report

CASES = {"training eager", "training compiled", "DINO step", "finite-loss check"}


@pytest.mark.slow  # four torchrun training runs (two compiled) and the bench set
def test_the_smoke_run_takes_every_path_of_the_gpu_run(tmp_path):
    docs = tmp_path / "performance.md"
    argv = ["--device", "cpu", "--smoke", "--out", str(tmp_path), "--docs", str(docs)]
    status = gpu_check.main(argv)

    for benchmark in ("readout", "train_step", "inference"):  # the bench set, both precisions
        run = json.loads((tmp_path / f"{benchmark}-cpu.json").read_text())
        assert {r["precision"] for r in run["results"]} == {"fp32", "bf16"}
    run = json.loads((tmp_path / "gpu_check-cpu.json").read_text())
    results = {r["case"]: r for r in run["results"]}
    assert set(results) == CASES
    for case in ("training eager", "training compiled"):
        result = results[case]
        for model in gpu_check.TINY_PAIR:
            assert len(result["losses"][model]) == gpu_check.SMOKE.steps  # one log line a step
            assert all(math.isfinite(loss) for loss in result["losses"][model])
            assert result["peak_bytes"][model] > 0
        assert result["ratios"]["non_finite_losses"] == 0
        assert result["ratios"]["throughput"] > 0 and result["ratios"]["step_time"] > 0
    assert results["training compiled"]["ratios"]["first_loss_difference"] < 1.6e-2
    assert results["DINO step"]["ratios"]["non_finite_losses"] == 0
    assert set(results["finite-loss check"]["time"]) == {"off", "on", "host read"}

    checks = [c for c in report.check_targets(report.load_runs(tmp_path))]
    gpu_checks = [c for c in checks if c.target.benchmark == "gpu_check"]
    assert gpu_checks and all(c.status != "not measured" for c in gpu_checks)
    assert status == (1 if any(c.status == "missed" for c in checks) else 0)
    page = docs.read_text()
    assert "## GPU check: training runs, DINO, the finite-loss check" in page
    assert "finite-loss check, on / off: step time" in page
