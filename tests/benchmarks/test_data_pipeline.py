import json

from benchmarks import data_pipeline, report


def test_both_pipelines_read_the_whole_epoch_and_the_page_shows_the_ratio(tmp_path):
    argv = [
        *("--samples", "8", "--shards", "2", "--batch", "4", "--workers", "1", "--rounds", "1"),
        *("--image-size", "50", "40", "--out", str(tmp_path)),
    ]
    assert data_pipeline.main(argv) == 0
    run = json.loads((tmp_path / "data_pipeline-cpu.json").read_text())
    (result,) = run["results"]
    assert result["samples_read"] == {"project": [8], "open_clip_train": [8]}
    assert result["ratios"]["throughput"]["median"] > 0
    page = report.render(report.load_runs(tmp_path), [])
    assert "## Training data: the project's pipeline against open_clip_train's" in page
