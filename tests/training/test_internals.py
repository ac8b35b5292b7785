"""training.internals and evaluation.internals: every upstream name the package patches is
listed, and the installed releases have them all."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from open_clip_sparo.evaluation import internals as benchmark_internals
from training import internals

SRC = Path(__file__).parents[2] / "src"


def patched_names(folder: Path, function: str) -> set[str]:
    """The attribute names ``function(owner, "name", ...)`` replaces in the modules of
    ``folder`` (``create=True`` ones excepted: they need not exist)."""
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or ast.unparse(node.func) != function:
                continue
            if any(k.arg == "create" for k in node.keywords) or len(node.args) < 2:
                continue
            assert isinstance(node.args[1], ast.Constant), f"{path}: {ast.unparse(node)}"
            names.add(node.args[1].value)
    return names


@pytest.mark.parametrize(
    ("module", "folder", "function"),
    [
        (internals, SRC / "training", "patched"),
        (benchmark_internals, SRC / "open_clip_sparo" / "evaluation", "mock.patch.object"),
    ],
    ids=["open_clip_train", "clip_benchmark"],
)
def test_every_patched_name_is_required_and_installed(module, folder, function) -> None:
    patched = patched_names(folder, function)
    listed = {name for names in module.REQUIRED.values() for name in names}
    assert patched and patched <= listed | {"argv", "cuda"}  # sys.argv, torch's .cuda()
    assert module.missing_names() == []


def test_a_missing_name_is_named_with_the_supported_range(monkeypatch) -> None:
    monkeypatch.setitem(benchmark_internals.REQUIRED, "clip_benchmark.cli", ("run", "no_such_name"))
    with pytest.raises(ImportError, match=r"clip_benchmark\.cli\.no_such_name.*clip-benchmark"):
        benchmark_internals.check()


def test_every_required_name_is_used() -> None:
    """The list holds only names the package still patches or calls."""
    code = "\n".join(
        path.read_text() for path in (SRC / "training").glob("*.py") if path.name != "internals.py"
    )
    unused = [
        f"{module}.{name}"
        for module, names in internals.REQUIRED.items()
        for name in names
        if not re.search(rf"\b{re.escape(name)}\b", code)
    ]
    assert unused == []
