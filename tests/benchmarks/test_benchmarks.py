"""The benchmark scripts run on tiny sizes and their measuring helpers are right.

Benchmarks are not tests: nothing here checks SPARO's speed, only that the scripts work.
"""

import json

import pytest
import torch
import torch.nn.functional as F

from benchmarks import inference, readout, report, train_step
from benchmarks.common import count_flops, peak_memory, result_path, time_interleaved
from benchmarks.naive_readout import NaiveSparo
from open_clip_sparo import Sparo

TINY_PAIR = "sparo-ViT-Ti-8-64:ViT-Ti-8-64"
QUICK = ["--repeats", "1", "--warmup", "0"]
TINY_READOUT = [
    *("--batch", "2", "--num-slots", "4", "--slot-dim", "3", "--attn-dim", "8"),
    *("--vision-tokens", "17", "--vision-width", "32", "--text-tokens", "9", "--text-width", "16"),
]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One tiny run of every benchmark; bf16 (slow on CPUs without native bf16) on the read-out."""
    out = tmp_path_factory.mktemp("results")
    common = ["--out", str(out), *QUICK]
    assert readout.main([*TINY_READOUT, "--precisions", "fp32", "bf16", *common]) == 0
    tiny_models = ["--pairs", TINY_PAIR, "--batch", "2"]
    assert train_step.main([*tiny_models, "--precisions", "fp32", *common]) == 0
    assert inference.main([*tiny_models, "--precisions", "fp32", *common]) == 0
    return out


def load(results, benchmark):
    return json.loads((results / f"{benchmark}-cpu.json").read_text())


@pytest.mark.parametrize("share_kv", [True, False])
def test_naive_readout_computes_sparo(share_kv):
    torch.manual_seed(0)
    sparo = Sparo(
        width=12, num_slots=6, out_dim=5, attn_dim=4, value_dim=4, num_heads=3, share_kv=share_kv
    )
    tokens = torch.randn(3, 7, 12)
    mask = torch.arange(7)[None, :] >= torch.tensor([7, 3, 1])[:, None]
    slots, attn = sparo(tokens, mask)
    naive_slots, naive_attn = NaiveSparo(sparo)(tokens, mask)
    torch.testing.assert_close(naive_slots, slots)
    torch.testing.assert_close(naive_attn, attn)
    assert naive_attn[mask[:, None, :].expand_as(naive_attn)].eq(0).all()


def test_peak_memory_replays_allocations_in_order():
    mib = 2**20

    def allocate() -> None:
        a = torch.empty(mib, dtype=torch.uint8)
        b = torch.empty(2 * mib, dtype=torch.uint8)
        del a
        c = torch.empty(mib, dtype=torch.uint8)
        del b, c

    assert peak_memory(allocate, CPU) == 3 * mib  # a + b; c reuses what a freed


def test_count_flops_counts_cpu_attention():
    batch, heads, num_tokens, head_dim = 2, 4, 5, 8
    q, k, v = torch.randn(3, batch, heads, num_tokens, head_dim).unbind(0)
    products = 2 * batch * heads * num_tokens * num_tokens * head_dim  # q k^T, then attn v
    assert count_flops(lambda: F.scaled_dot_product_attention(q, k, v)) == 2 * products


def test_time_interleaved_alternates_order():
    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    wall, cpu = time_interleaved(steps, repeats=3, warmup=1, device=CPU)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    for times in (wall, cpu):
        assert {name: len(values) for name, values in times.items()} == {"a": 3, "b": 3}


def test_result_path_keeps_earlier_results(tmp_path):
    path = result_path(tmp_path, "readout", CPU, overwrite=False)
    path.write_text('{"created": "2026-01-02T03:04:05+00:00"}')
    assert result_path(tmp_path, "readout", CPU, overwrite=False) == path
    assert not path.exists()
    kept = tmp_path / "history" / "readout-cpu-2026-01-02T030405+0000.json"
    assert json.loads(kept.read_text())["created"] == "2026-01-02T03:04:05+00:00"

    path.write_text('{"created": "2026-01-02T03:04:05+00:00"}')  # same time: nothing replaced
    with pytest.raises(SystemExit, match="--overwrite"):
        result_path(tmp_path, "readout", CPU, overwrite=False)
    assert result_path(tmp_path, "readout", CPU, overwrite=True) == path
    assert path.exists()


@pytest.mark.slow  # runs the benchmarks (the results fixture)
def test_readout_benchmark(results):
    run = load(results, "readout")
    assert run["machine"]["torch"] == torch.__version__
    cases = [(r["precision"], r["case"], r["sizes"]["padding_mask"]) for r in run["results"]]
    assert cases == [
        ("fp32", "vision", False),
        ("fp32", "text", True),
        ("bf16", "vision", False),
        ("bf16", "text", True),
    ]
    for r in run["results"]:
        assert r["max_abs_diff"] < (1e-4 if r["precision"] == "fp32" else 0.1)
        assert r["flops"]["sparo"] < r["flops"]["naive"]
        assert r["ratios"]["flops"] == r["flops"]["sparo"] / r["flops"]["naive"]
        assert all(len(r["seconds"][side]) == 1 for side in ("sparo", "naive"))
        assert all(r["peak_bytes"][side] > 0 for side in ("sparo", "naive"))
    fp32_vision, bf16_vision = run["results"][0], run["results"][2]
    assert fp32_vision["flops"] == bf16_vision["flops"]


@pytest.mark.slow  # runs the benchmarks (the results fixture)
def test_train_step_benchmark(results):
    run = load(results, "train_step")
    model, baseline = TINY_PAIR.split(":")
    (r,) = run["results"]
    assert (r["pair"], r["precision"]) == ([model, baseline], "fp32")
    # one block fewer per tower: fewer FLOPs and parameters than the plain CLIP twin
    assert r["ratios"]["flops"] < 1
    assert r["static_bytes"][model] < r["static_bytes"][baseline]
    assert r["peak_bytes"][model] == r["static_bytes"][model] + r["step_peak_bytes"][model]
    assert set(r["ratios"]) == {"flops", "memory", "time", "cpu_time"}


@pytest.mark.slow  # runs the benchmarks (the results fixture)
def test_inference_benchmark(results):
    run = load(results, "inference")
    assert [r["encoder"] for r in run["results"]] == ["encode_image", "encode_text"]
    for r in run["results"]:
        assert all(per_second > 0 for per_second in r["items_per_second"].values())
        assert r["ratios"]["flops"] < 1


@pytest.mark.slow  # runs the benchmarks (the results fixture)
def test_report_renders_results_and_flags_missed_targets(results, tmp_path, capsys):
    docs = tmp_path / "performance.md"
    # tiny read-out sizes cannot reach the ViT-B/16 FLOP target, so the report must flag it
    assert report.main(["--results", str(results), "--docs", str(docs)]) == 1
    assert "missed       read-out FLOPs" in capsys.readouterr().out
    page = docs.read_text()
    assert "**missed**" in page
    (r,) = load(results, "train_step")["results"]
    assert f"{r['ratios']['flops']:.3f}" in page
    assert load(results, "inference")["machine"]["cpu"] in page
