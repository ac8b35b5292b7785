"""Where a result came from: the one provenance record every result file and report carries.

:func:`provenance` names the weight files that were scored (resolved path, size, SHA-256 prefix),
the model name and its ``sparo_cfg``, the versions of this package and of OpenCLIP, and the
command line; :func:`describe` is its one-line form for logs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import open_clip

SHA256_PREFIX = 16  # hex digits kept: enough to tell checkpoints apart, short enough to read
_CHUNK = 1 << 20


def sha256_prefix(path: str | Path) -> str:
    """The first :data:`SHA256_PREFIX` hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:SHA256_PREFIX]


def provenance(
    model_name: str,
    files: Sequence[str | Path],
    sparo_cfg: Mapping[str, Any] | None = None,
    pretrained_tag: str = "",
    reference: str = "",
) -> dict[str, Any]:
    """The provenance record of a result computed with ``model_name`` loaded from ``files``
    (weights and config files; none for OpenCLIP pretrained tags, named by ``pretrained_tag``),
    as the user named it (``reference``: a run folder, ``local-dir:``, ...; default: the name)."""
    return {
        "model": model_name,
        "reference": reference or model_name,
        "checkpoint": [
            {
                "path": str(Path(f).resolve()),
                "size": Path(f).stat().st_size,
                "sha256": sha256_prefix(f),
            }
            for f in files
        ],
        "pretrained_tag": pretrained_tag,
        "sparo_cfg": dict(sparo_cfg) if sparo_cfg is not None else None,
        "versions": {
            "open_clip_sparo": importlib.metadata.version("open_clip_sparo"),
            "open_clip": open_clip.__version__,
        },
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def describe(record: Mapping[str, Any]) -> str:
    """One line for logs: the model and each file with its size and hash prefix."""
    files = ", ".join(
        f"{f['path']} ({f['size']} bytes, sha256 {f['sha256']})" for f in record["checkpoint"]
    )
    tag = record["pretrained_tag"]
    source = files or (f"OpenCLIP's pretrained tag {tag!r}" if tag else "no local file")
    return f"model {record['model']} from {source}"
