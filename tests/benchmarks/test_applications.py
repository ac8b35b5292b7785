import json

import pytest

from benchmarks import applications, report


@pytest.mark.slow  # five runs of the applications (over a minute on a busy 2-core machine)
def test_every_case_runs_at_each_size_and_the_page_shows_the_growth(tmp_path):
    argv = [
        *("--selection-images", "6", "12", "--retrieval-images", "4", "--max-slots", "1"),
        *("--memory-bank", "50", "100", "--queries", "3", "--feature-dim", "8"),
        *("--out", str(tmp_path)),
    ]
    assert applications.main(argv) == 0
    run = json.loads((tmp_path / "applications-cpu.json").read_text())
    items = [(r["case"], r["items"]) for r in run["results"]]
    assert items == [
        ("concept selection, zero-shot classification", 6),
        ("concept selection, zero-shot classification", 12),
        ("concept selection, retrieval", 4),
        ("DINO k-NN", 50),
        ("DINO k-NN", 100),
    ]
    assert run["results"][0]["candidates"] == 64
    knn = run["results"][-1]
    assert knn["input_bytes"] == 100 * 8 * 4 + 100 * 8 + 3 * 8 * 4  # bank, labels, queries
    assert knn["peak_bytes"] > 0 and knn["seconds"] > 0
    page = report.render(report.load_runs(tmp_path), [])
    assert "| DINO k-NN | 100 | 3 queries |" in page and "x2 items:" in page
