"""Every shell command and Python example in README.md and docs/*.md runs, so that no doc drifts
from the code.

Each fenced block tagged ``bash`` (or ``sh``/``shell``) is one test: the block runs as a bash
script (stopping at the first failing command) in a fresh folder that holds small stand-ins for
what the docs name (``runs/sparo-b16``, ``ckpt.pt``, ``/data/...``), with the substitutions of
:data:`STAND_INS` applied to its text (data paths, model and data sizes, the elided arguments of
a training command). The ``python`` blocks of a doc are one test: they run in a fresh Python
process, in a fresh folder of the same stand-ins, one after the other in one namespace, as a
reader types them into one session, so a block may use what an earlier block of its doc defined
(an import, the model); a traceback names the doc and its line. A new block is picked up as it is
written. A block that cannot run here (GPUs, real data sets, downloads, SLURM, a synopsis) says
so in its doc, on the line before it: ``<!-- not run: reason -->``; :data:`MAX_NOT_RUN` keeps
those few.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import open_clip
import pytest
import torch
from benchmark_data import (
    TINY_MODEL,
    save_tiny_model,
    synthetic_image,
    write_run_folder,
    write_sugar_crepe,
    write_wds_classification,
    write_wds_retrieval,
)
from data_utils import write_caption_shards
from fork_utils import build, fork_config, save_fork_training_checkpoint, to_fork_layout
from hub_utils import write_hub_file
from sparo_server import sparo_server

from open_clip_sparo import save_pretrained

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = {"bash", "sh", "shell"}
PYTHONS = {"python", "py"}
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>.+?)\s*-->$")
MAX_NOT_RUN = 19  # blocks marked "not run" in all the docs together
# the commands an untagged block may not start with: such a block is a command left untested
COMMANDS = ("sparo ", "python ", "torchrun ", "make ", "pip ", "sbatch ", ".venv/")

BIN = str(Path(sys.executable).parent)
TINY_TRAINING = (
    '--train-data "data/shards/{000000..000001}.tar" --train-num-samples 32 '
    "--dataset-type webdataset --batch-size 8 --epochs 1 --lr 5e-4 --warmup 2 --precision fp32 "
    "--device cpu --workers 1 --logs runs --name from-clip"
)
# doc text -> what runs here, applied in this order to every block that runs
STAND_INS: dict[str, str] = {
    "/data/": "data/",  # the stand-in data sets, in the folder the block runs in
    "/tmp/sparo-smoke": "sparo-smoke",
    ".venv/bin/": BIN + "/",
    "sparo-ViT-B-16": TINY_MODEL,
    "sparo-ViT-B-32": TINY_MODEL,  # fork.md's checkpoint: the stand-in is the tiny model's
    "sparo-ViT-H-14": "sparo-ViT-S-32",  # a derived config too, small enough for the CPU
    "local-dir:exports/": "local-dir:exported/",  # `sparo export --out exports/...` refuses it
    "[3, 17, 42]": "[3, 7, 12]",  # slots of the tiny model's 16
    "--train-samples 3200 --eval-samples 500": "--train-samples 64 --eval-samples 16",
    "--epochs 5 \\\n  --batch-size 32": "--epochs 1 \\\n  --batch-size 16",
    "--pretrained sparo-start.pt ...": "--pretrained sparo-start.pt " + TINY_TRAINING,
    # OpenCLIP's trainer, one small epoch of the stand-in shards
    "'shards/{000000..000009}.tar' \\\n    --train-num-samples 10000 --dataset-type webdataset "
    "--batch-size 64": "'data/shards/{000000..000001}.tar' \\\n    --train-num-samples 32 "
    "--dataset-type webdataset --batch-size 8",
}


@dataclass(frozen=True)
class Block:
    """A fenced code block of a doc: where it starts, its language, text, and the reason it is
    not run (None: it runs)."""

    doc: Path
    line: int
    language: str
    text: str
    not_run: str | None

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def code_blocks(doc: Path) -> list[Block]:
    """The fenced blocks of ``doc``, each with the ``not run`` reason on the line before it."""
    blocks: list[Block] = []
    lines = doc.read_text().splitlines()
    start, language = None, ""
    for number, line in enumerate(lines):
        if not line.startswith("```"):
            continue
        if start is None:
            start, language = number, line[3:].strip()
            continue
        before = next((lines[i].strip() for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = NOT_RUN.match(before)
        text = "\n".join(lines[start + 1 : number]) + "\n"
        reason = marker["reason"] if marker else None
        blocks.append(Block(doc, start + 1, language, text, reason))
        start = None
    assert start is None, f"{doc}:{start + 1}: a code block is never closed"
    return blocks


SHELL_BLOCKS = [b for doc in DOCS for b in code_blocks(doc) if b.language in SHELLS]
RUN = [b for b in SHELL_BLOCKS if b.not_run is None]
# doc -> its python blocks that run, in order
PYTHON_RUN = {
    doc.relative_to(ROOT).as_posix(): blocks
    for doc in DOCS
    if (blocks := [b for b in code_blocks(doc) if b.language in PYTHONS and b.not_run is None])
}


def test_the_docs_have_commands_and_few_are_not_run():
    not_run = [b for doc in DOCS for b in code_blocks(doc) if b.not_run]
    assert len(RUN) >= 10
    assert sum(map(len, PYTHON_RUN.values())) >= 5
    assert len(not_run) <= MAX_NOT_RUN, [b.name for b in not_run]


def test_markers_sit_on_blocks_that_run():
    """A "not run" marker before a block that never runs (a file layout, output) would excuse
    nothing."""
    for doc in DOCS:
        for block in code_blocks(doc):
            assert block.not_run is None or block.language in SHELLS | PYTHONS, block.name


def test_command_blocks_are_tagged_as_shell():
    """An untagged block of commands would never run: tag it ```bash."""
    for doc in DOCS:
        for block in code_blocks(doc):
            if block.language == "":
                first = block.text.lstrip()
                assert not first.startswith(COMMANDS), f"{block.name}: tag it ```bash"


def test_code_blocks_are_found_with_their_markers(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "text\n\n<!-- not run: needs ImageNet -->\n```bash\nsparo eval x\n```\n\n"
        "```bash\nsparo select y\n```\n```\nlayout\n```\n"
    )
    blocks = code_blocks(doc)
    assert [(b.line, b.language, b.text, b.not_run) for b in blocks] == [
        (4, "bash", "sparo eval x\n", "needs ImageNet"),
        (8, "bash", "sparo select y\n", None),
        (11, "", "layout\n", None),
    ]


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every block starts from: small stand-ins for the models, runs, data sets and
    files the docs name."""
    world = tmp_path_factory.mktemp("stand_ins")
    model, _ = save_tiny_model(world / "ckpt.pt")
    write_run_folder(world / "runs" / "sparo-b16", model, epochs=[1])
    write_run_folder(world / "runs" / "tiny", model, epochs=[1])
    torch.manual_seed(0)
    baseline = open_clip.create_model("ViT-Ti-8-64")
    torch.save({"state_dict": baseline.state_dict()}, world / "vit-b-16-clip.pt")
    data = world / "data"
    pairs = [(f"a {c} square", f"a {c} circle") for c in ("red", "green", "blue", "white")]
    for category in ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel"):
        write_sugar_crepe(data / "sugar_crepe", category, pairs)
    write_sugar_crepe(data / "sugar_crepe", "swap_att", pairs)
    write_sugar_crepe(data / "sugar_crepe", "swap_obj", pairs)
    classes = ["cat", "dog", "car", "tree"]
    write_wds_classification(data / "mydata", classes, per_class=3, split="train")
    write_wds_classification(data / "mydata", classes, per_class=2, split="test", seed=50)
    captions = [[f"picture {i}", f"image number {i}"] for i in range(6)]
    write_wds_retrieval(data / "coco_wds", captions, split="val")
    write_wds_retrieval(data / "coco_wds", captions, split="test", seed=20)
    write_caption_shards(data / "shards", num_shards=2, samples_per_shard=16)
    for seed, name in enumerate(("dog.jpg", "bus.jpg")):
        synthetic_image(seed).save(world / name)
    # stand-ins for `sparo eval` result files, in CLIP_benchmark's layout (sparo export --metrics)
    results = world / "results"
    results.mkdir()
    for name, dataset, task, metrics in (
        ("swap_att", "sugar_crepe/swap_att", "image_caption_selection", {"acc": 0.5}),
        ("coco_retrieval", "wds/coco", "zeroshot_retrieval", {"image_retrieval_recall@1": 0.25}),
    ):
        result = {"dataset": dataset, "model": TINY_MODEL, "task": task, "metrics": metrics}
        (results / f"{name}.json").write_text(json.dumps(result))
    fork_cfg = fork_config()
    (world / "ViT-B-32-SPARO-custom.json").write_text(json.dumps(fork_cfg))
    save_fork_training_checkpoint(to_fork_layout(build(fork_cfg)), world / "epoch_25.pt")
    # for the Python examples: a fork run of the tiny model, a run folder, an export (local-dir:)
    # and the same export as a Hugging Face Hub model (hf-hub:ORG/NAME) in the hub cache
    fork_run = world / "fork_logs" / "run" / "checkpoints"
    fork_run.mkdir(parents=True)
    save_fork_training_checkpoint(to_fork_layout(model), fork_run / "epoch_25.pt")
    write_run_folder(world / "runs" / "my-run", model, epochs=[25])
    save_pretrained(model, world / "exported" / "sparo-b16")
    for exported in (world / "exported" / "sparo-b16").iterdir():
        write_hub_file(
            world / "hub",
            "ORG/NAME",
            exported.name,
            lambda f, source=exported: f.write(source.read_bytes()),
        )
    return world


def standing_in(text: str) -> str:
    for doc_text, here in STAND_INS.items():
        text = text.replace(doc_text, here)
    return text


def block_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
        "HOME": str(home),  # caches (sparo select's) stay in the test's folder
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }


def linked_stand_ins(stand_ins: Path, tmp_path: Path) -> Path:
    """A fresh folder of the stand-ins, linked file by file: what a block writes stays in it."""
    folder = tmp_path / "run"
    shutil.copytree(stand_ins, folder, symlinks=True, copy_function=os.symlink)
    return folder


@pytest.fixture(scope="module")
def sparo_on_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``sparo`` as a client of one server that imported the command line once."""
    folder = tmp_path_factory.mktemp("sparo_server")
    with sparo_server(folder, block_env(folder / "home")) as env:
        yield env


def run_ok(argv: list[str], folder: Path, env: dict[str, str], what: str) -> None:
    """Run ``argv`` in ``folder``; a failure shows ``what`` ran and the end of its output."""
    result = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"{what}\nfailed ({result.returncode}); --- output:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )


@pytest.mark.slow  # each block runs its commands, seconds to a minute each
@pytest.mark.parametrize("block", RUN, ids=[b.name for b in RUN])
def test_doc_block_runs(
    block: Block, stand_ins: Path, sparo_on_path: dict[str, str], tmp_path: Path
) -> None:
    folder = linked_stand_ins(stand_ins, tmp_path)
    script = standing_in(block.text)
    env = {**block_env(tmp_path / "home"), **sparo_on_path}
    run_ok(["bash", "-e", "-o", "pipefail", "-c", script], folder, env, f"{block.name}\n{script}")


# runs a doc's python blocks (a JSON list of [file name, first line, text]) in one namespace,
# each compiled under its doc's name and line numbers
SESSION = """
import json, sys
namespace = {"__name__": "__main__"}
for filename, line, text in json.load(open(sys.argv[1])):
    exec(compile("\\n" * line + text, filename, "exec"), namespace)
"""


@pytest.mark.slow  # a Python process per doc, building a few tiny models: 10 to 20 s
@pytest.mark.parametrize("doc", PYTHON_RUN)
def test_doc_python_blocks_run(doc: str, stand_ins: Path, tmp_path: Path) -> None:
    folder = linked_stand_ins(stand_ins, tmp_path)
    blocks = [(doc, b.line, standing_in(b.text)) for b in PYTHON_RUN[doc]]
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    env = {**block_env(tmp_path / "home"), "HF_HUB_CACHE": str(folder / "hub")}
    run_ok([sys.executable, "-c", SESSION, str(tmp_path / "blocks.json")], folder, env, doc)
