"""open_clip_sparo.demos.clip_report: the CLIP demo's report."""

import statistics

from open_clip_sparo.demos.clip_report import outcome


def _entry(*per_seed: float) -> dict:
    mean = sum(per_seed) / len(per_seed)
    std = None if len(per_seed) == 1 else statistics.stdev(per_seed)
    return {"per_seed": list(per_seed), "mean": mean, "std": std}


def test_outcome_counts_higher_lower_and_beyond_the_spread():
    results = {
        "a": {"wds/x": _entry(0.5, 0.6), "wds/y": _entry(0.2, 0.2), "wds/z": _entry(0.1, 0.3)},
        "b": {"wds/x": _entry(0.3, 0.32), "wds/y": _entry(0.2, 0.2), "wds/z": _entry(0.2, 0.4)},
    }
    assert outcome(results, "a", "b") == (
        "a is higher than b on 1 of 3 test sets, lower on 1, beyond the spread on 1 (x +24.0)"
    )
    single = {m: {"wds/x": _entry(r["wds/x"]["mean"])} for m, r in results.items()}
    assert outcome(single, "b", "a") == "b is higher than a on 0 of 1 test sets, lower on 1"
