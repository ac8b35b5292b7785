"""The automatic registration: fresh processes that import ``open_clip`` (never
``open_clip_sparo``) see the SPARO models; OpenCLIP's own tools train and score them."""

import importlib.metadata
import json

import pytest
import torch
from autoload_utils import python_json, run_python
from benchmark_data import write_wds_classification, write_wds_retrieval
from data_utils import write_caption_shards

MODEL = "sparo-ViT-Ti-8-64"
NUMPY_2_ACCURACY_BUG = "TypeError: only 0-dimensional arrays can be converted to Python scalars"

SEEN = """
import json, sys
before = sorted(m for m in ("torch", "open_clip", "open_clip_sparo") if m in sys.modules)
import open_clip
ours = [m for m in ("sparo-ViT-Ti-8-64", "gap-ViT-Ti-8-64") if m in open_clip.list_models()]
print(json.dumps({
    "before": before,
    "sparo": "open_clip_sparo" in sys.modules,
    "models": ours,
    "built": type(open_clip.create_model(ours[0])).__name__ if ours else None,
}))
"""


def test_importing_open_clip_registers_the_models(hooked_python):
    seen = python_json(hooked_python, SEEN)
    assert seen == {
        "before": [],  # nothing imported at start-up, torch included
        "sparo": True,
        "models": [MODEL, "gap-ViT-Ti-8-64"],
        "built": "SparoCLIP",
    }


def test_switched_off_by_the_environment(hooked_python):
    seen = python_json(hooked_python, SEEN, env={"OPEN_CLIP_SPARO_AUTOLOAD": "0"})
    assert seen == {"before": [], "sparo": False, "models": [], "built": None}


def test_importing_the_package_first_still_registers(hooked_python):
    code = "import open_clip_sparo, open_clip; print(int({!r} in open_clip.list_models()))"
    assert python_json(hooked_python, code.format(MODEL)) == 1


def test_the_installed_distribution_ships_the_pth_file():
    """`make install` (pip install -e .) and wheels both carry it (pyproject.toml)."""
    files = importlib.metadata.distribution("open_clip_sparo").files
    assert "open_clip_sparo_autoload.pth" in {file.name for file in files}


WEBDATASET_1 = int(importlib.metadata.version("webdataset").split(".")[0]) >= 1


@pytest.mark.slow
@pytest.mark.skipif(
    WEBDATASET_1,
    reason="open_clip_train's own WebDataset reader fails under webdataset 1.x whatever the model "
    "(KeyError on end-of-shard samples); training.main carries the fix (docs/compatibility.md)",
)
def test_open_clip_train_then_clip_benchmark(hooked_python, tmp_path):
    """One epoch of ``open_clip_train.main`` and ``clip_benchmark eval`` of its checkpoint,
    zero-shot and retrieval, both as OpenCLIP's users call them."""
    shards = write_caption_shards(tmp_path / "shards", num_shards=1, samples_per_shard=16)
    train = run_python(
        hooked_python, "-m", "open_clip_train.main",
        "--train-data", shards, "--train-num-samples", "16", "--dataset-type", "webdataset",
        "--model", MODEL, "--batch-size", "8", "--epochs", "1", "--lr", "5e-4",
        "--warmup", "1", "--precision", "fp32", "--device", "cpu", "--workers", "1",
        "--logs", str(tmp_path / "logs"), "--name", "run", "--seed", "0",
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    checkpoint = tmp_path / "logs" / "run" / "checkpoints" / "epoch_1.pt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert any(key.endswith("visual.sparo.queries") for key in state), sorted(state)[:5]

    classes = ["cat", "dog", "car"]
    datasets = {
        "zeroshot_classification": write_wds_classification(tmp_path / "cls", classes, 2),
        "zeroshot_retrieval": write_wds_retrieval(
            tmp_path / "ret", [[f"picture {i}", f"image {i}"] for i in range(4)]
        ),
    }
    for task, root in datasets.items():
        out = tmp_path / f"{task}.json"
        scored = run_python(
            hooked_python, "-m", "clip_benchmark.cli", "eval",
            "--model_type", "open_clip", "--model", MODEL, "--pretrained", str(checkpoint),
            "--dataset", "wds/tiny", "--dataset_root", str(root), "--task", task,
            "--output", str(out), "--batch_size", "4", "--num_workers", "0", "--no_amp",
            "--recall_k", "1", "2",
        )  # fmt: skip
        if task == "zeroshot_classification" and NUMPY_2_ACCURACY_BUG in scored.stderr:
            # CLIP_benchmark 1.6.2's own top-k accuracy fails under NumPy 2 for every model,
            # after the model has scored the images (`sparo eval` replaces it)
            assert "zeroshot_classification.py" in scored.stderr
            continue
        assert scored.returncode == 0, scored.stderr[-3000:]
        result = json.loads(out.read_text())
        assert result["model"] == MODEL and result["task"] == task
        assert result["metrics"], result
