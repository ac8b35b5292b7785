"""A virtual environment in which the automatic registration is active, for tests that run the
real tools (open_clip_train, CLIP_benchmark, ``hf-hub:`` loading) in fresh processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PTH = SRC / "open_clip_sparo_autoload.pth"


def make_hooked_venv(root: Path) -> Path:
    """A venv under ``root`` (no pip) with this checkout's ``.pth`` in its site-packages and a
    path file listing this checkout's ``src`` and this interpreter's package folders; its
    ``python``."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    packages = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    packages.append(sysconfig.get_path("purelib"))
    # "deps" sorts before the package's .pth: site reads path files in name order
    Path(site_packages, "deps.pth").write_text("\n".join([str(SRC), *dict.fromkeys(packages)]))
    shutil.copy(PTH, site_packages)
    return python


def run_python(python: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 600):
    """``python *args`` in a fresh process with HF_HUB_OFFLINE=1 and one thread; stdout and
    stderr captured as text."""
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": "",
        **(env or {}),
    }
    return subprocess.run(
        [str(python), *args], env=environment, capture_output=True, text=True, timeout=timeout
    )


def python_json(python: Path, code: str, env: dict[str, str] | None = None):
    """What ``code`` prints as its last line, read as JSON; fails with the process's stderr."""
    done = run_python(python, "-c", code, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
