"""Publishing a SPARO model on the Hugging Face Hub in OpenCLIP's ``hf-hub:`` layout.

The folder is the ``local-dir:`` layout of :func:`~open_clip_sparo.io.checkpoint.save_pretrained`
(``open_clip_config.json`` + ``open_clip_model.safetensors``, the files OpenCLIP's ``hf-hub:``
loading reads) plus a model card, ``README.md``: the model and its slots, the training data as
the run recorded it, metrics of result files, how to load it, and the paper to cite.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..util.files import read_json, write_text
from .checkpoint import save_pretrained
from .loading import LoadedModel

CARD_NAME = "README.md"
RUN_PARAMS = "params.txt"  # open_clip_train's record of a run's arguments
# what the card says of the training data, from the run's params.txt
TRAINING_KEYS = ("train_data", "dataset_type", "train_num_samples", "epochs", "batch_size", "seed")
CITATION = "\n".join(
    [
        "@inproceedings{vani2024sparo,",
        "  title     = {SPARO: Selective Attention for Robust and Compositional Transformer "
        "Encodings for Vision},",
        "  author    = {Vani, Ankit and Nguyen, Bac and Lavoie, Samuel and Krishna, Ranjay and "
        "Courville, Aaron},",
        "  booktitle = {European Conference on Computer Vision (ECCV)},",
        "  year      = {2024}",
        "}",
    ]
)


def run_params(run_dir: Path) -> dict[str, str]:
    """The ``name: value`` lines of a run's ``params.txt`` (empty when the run has none)."""
    path = run_dir / RUN_PARAMS
    if not path.is_file():
        return {}
    pairs = (line.split(": ", 1) for line in path.read_text().splitlines() if ": " in line)
    return {name: value for name, value in pairs}


def read_metrics(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Result files of ``sparo eval`` or ``clip_benchmark eval``, checked for their metrics."""
    results = []
    for path in paths:
        result = read_json(path, "the result file")
        if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict):
            raise ValueError(
                f"{path} is not a result of `sparo eval` or `clip_benchmark eval` (no "
                "'metrics' object); pass those result files to --metrics."
            )
        results.append(result)
    return results


def model_card(
    repo_id: str,
    model_name: str,
    loaded: LoadedModel,
    training: Mapping[str, str],
    results: Sequence[Mapping[str, Any]],
) -> str:
    """The ``README.md`` of the hub folder for ``loaded``, a model ``model_name`` (its registered
    name), trained on ``training`` (a run's params) and scored in ``results``."""
    model = loaded.model
    record = loaded.provenance()
    cfg = model.model_cfg["sparo_cfg"]
    files = "\n".join(
        f"- `{Path(f['path']).name}` ({f['size']} bytes, SHA-256 `{f['sha256']}...`)"
        for f in record["checkpoint"]
    )
    recorded = [f"| {key} | {training[key]} |" for key in TRAINING_KEYS if key in training]
    data = (
        ["As the training run recorded it:", "", "| setting | value |", "| --- | --- |", *recorded]
        if recorded
        else ["Not recorded: exported from a checkpoint file, not from a training run folder."]
    )
    metrics = [
        f"| {r.get('dataset', '?')} | {r.get('task', '?')} | {name} | {value:.4f} |"
        for r in results
        for name, value in r["metrics"].items()
        if isinstance(value, (int, float))
    ]
    scores = (
        ["| dataset | task | metric | value |", "| --- | --- | --- | --- |", *metrics]
        if metrics
        else ["No evaluation results were given at export."]
    )
    lines = [
        "---",
        "library_name: open_clip",
        "license: mit",
        "tags:",
        "- clip",
        "- sparo",
        "- open_clip_sparo",
        "pipeline_tag: zero-shot-image-classification",
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"A CLIP model with SPARO read-outs (Vani et al., ECCV 2024), `{model_name}` as "
        "exported by open_clip_sparo: each tower's pooled read-out is replaced by "
        f"{cfg['num_slots']} slots, each one attention head with a learned query over all output "
        f"tokens, projected to {cfg['slot_dim']} dimensions and L2-normalised; the embedding is "
        f"their concatenation ({cfg['num_slots'] * cfg['slot_dim']} dimensions).",
        "",
        "## Model",
        "",
        f"- model: `{model_name}`",
        f"- slots: {cfg['num_slots']} of {cfg['slot_dim']} dimensions",
        f"- exported from:\n{files}" if files else "- exported from: no local file",
        f"- versions: open_clip_sparo {record['versions']['open_clip_sparo']}, "
        f"open_clip {record['versions']['open_clip']}",
        "",
        "```json",
        json.dumps({"sparo_cfg": cfg}, indent=2),
        "```",
        "",
        "## Training data",
        "",
        *data,
        "",
        "## Metrics",
        "",
        *scores,
        "",
        "## How to load",
        "",
        "```bash",
        "pip install open_clip_sparo",
        "```",
        "",
        "```python",
        "import open_clip",
        "",
        f'model, _, preprocess = open_clip.create_model_and_transforms("hf-hub:{repo_id}")',
        f'tokenizer = open_clip.get_tokenizer("hf-hub:{repo_id}")',
        "```",
        "",
        "Installing open_clip_sparo registers its models with OpenCLIP in every process that "
        "imports `open_clip`; with `OPEN_CLIP_SPARO_AUTOLOAD=0` set, `import open_clip_sparo` "
        "first.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)


def write_hub_folder(
    out: Path,
    repo_id: str,
    model_name: str,
    loaded: LoadedModel,
    training: Mapping[str, str],
    results: Sequence[Mapping[str, Any]],
    overwrite: bool = False,
) -> Path:
    """Write the model (``local-dir:`` layout) and its card (:func:`model_card`) to ``out``."""
    card = model_card(repo_id, model_name, loaded, training, results)
    save_pretrained(loaded.model, out, overwrite=overwrite)
    write_text(out / CARD_NAME, card, overwrite)
    return out


def push(folder: Path, repo_id: str) -> str:
    """Upload ``folder`` to the model repository ``repo_id`` (created if missing); its URL."""
    from huggingface_hub import constants, create_repo, upload_folder

    # the variable as set now: huggingface_hub reads it once, when it is first imported
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    if offline or constants.HF_HUB_OFFLINE:
        raise ValueError(
            f"{folder} is written, but not pushed: the Hub is switched off (HF_HUB_OFFLINE; "
            f"`sparo` sets it unless it is given). Push the folder with `hf upload {repo_id} "
            f"{folder}`, or run again with HF_HUB_OFFLINE=0 and --overwrite."
        )
    try:
        create_repo(repo_id, exist_ok=True)
        upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="Add SPARO model")
    except Exception as error:  # network, login, permissions: huggingface_hub raises many types
        raise ValueError(
            f"{folder} is written, but pushing it to {repo_id} failed ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Log in (`hf auth login`) with "
            f"write access to {repo_id} and push it with `hf upload {repo_id} {folder}`."
        ) from error
    return f"https://huggingface.co/{repo_id}"
