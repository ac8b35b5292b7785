import json

import pytest
import torch

from benchmarks import applications
from benchmarks.common import in_fresh_process, peak_resident


@pytest.mark.slow  # four fresh processes, each importing torch (under a minute on 2 busy cores)
def test_every_case_runs_at_each_size_and_the_page_shows_the_growth(tmp_path):
    argv = [
        *("--selection-images", "6", "--retrieval-images", "4", "--max-slots", "1"),
        *("--memory-bank", "50", "100", "--queries", "3", "--feature-dim", "8"),
        *("--out", str(tmp_path), "--docs", str(tmp_path / "performance.md")),
    ]
    applications.main(argv)  # 1 (a target missed) or 0: the page's targets are not this test's
    run = json.loads((tmp_path / "applications-cpu.json").read_text())
    items = [(r["case"], r["items"]) for r in run["results"]]
    assert items == [
        ("concept selection, zero-shot classification", 6),
        ("DINO k-NN", 50),
        ("DINO k-NN", 100),
        ("concept selection, retrieval", 4),
    ]
    assert run["results"][0]["candidates"] == 64
    knn = run["results"][2]
    assert knn["input_bytes"] == 100 * 8 * 4 + 100 * 8 + 3 * 8 * 4  # bank, labels, queries
    assert knn["peak_bytes"] >= 0 and knn["seconds"] > 0 and len(knn["load_average"]) == 3
    assert "VmHWM" in run["settings"]["peak_measure"]
    page = (tmp_path / "performance.md").read_text()
    assert "| DINO k-NN | 100 | 3 queries |" in page and "x2 items:" in page


def touch_mib(mib: int) -> int:
    """Peak resident bytes added by filling ``mib`` MiB, then freeing it.

    One thread fills it, after a small warm-up fill. Torch's first parallel fill starts a thread
    pool (pages for each thread's stack and malloc arena, more on machines with more cores: a CI
    machine once read 72.0 MiB for 64), and Linux counts resident pages per CPU, approximately,
    so more threads make the reading looser. Neither is what this test is about."""
    torch.set_num_threads(1)
    torch.ones(2**18)

    def fill() -> None:
        torch.ones(mib * 2**18)  # float32: 4 bytes each

    return peak_resident(fill)


def test_peak_resident_counts_what_a_fresh_process_makes_resident():
    added = in_fresh_process(touch_mib, 64)
    assert abs(added - 64 * 2**20) < 2 * 2**20  # the tensor, within Linux's approximate count
