"""docs/architecture.md matches the tree and the import contracts of pyproject.toml."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "open_clip_sparo"
DOC = (ROOT / "docs" / "architecture.md").read_text()
SATELLITES = ("util", "controls", "fork", "io")


def table_rows(header: str) -> dict[str, str]:
    """The rows of the markdown table under ``header``: first cell (unquoted) -> second cell."""
    table = DOC[DOC.index(header) :].split("\n\n", 1)[0]
    rows = [line.split(" | ", 1) for line in table.splitlines()[2:]]
    return {first.strip("| `"): rest for first, rest in rows}


def core_layers() -> list[set[str]]:
    """The layers contract's layers, top first, each a set of module names."""
    # the one "layers = [...]" of pyproject.toml (tomllib is Python 3.11+; this runs on 3.10)
    match = re.search(r"^layers = (\[.*?\])$", (ROOT / "pyproject.toml").read_text(), re.M | re.S)
    layers = ast.literal_eval(re.sub(r"#.*", "", match.group(1)))
    return [{name.strip() for name in layer.split("|")} for layer in layers]


def test_core_table_lists_the_flat_modules_in_import_order() -> None:
    core = {path.name for path in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py"}
    documented = list(table_rows("| module | one idea |"))
    assert sorted(documented) == sorted(core)
    layer_of = {
        name: depth for depth, layer in enumerate(reversed(core_layers())) for name in layer
    }
    depths = [layer_of[name.removesuffix(".py")] for name in documented]
    assert depths == sorted(depths), "the table is in import order: lower layers first"


def test_satellite_table_names_every_module() -> None:
    rows = table_rows("| package | modules |")
    assert set(rows) == {f"{name}/" for name in SATELLITES}
    for name in SATELLITES:
        modules = {p.name for p in (PACKAGE / name).glob("*.py")} - {"__init__.py"}
        documented = set(re.findall(r"`(\w+\.py)`", rows[f"{name}/"]))
        assert documented == modules, name


def test_every_layer_and_package_is_drawn() -> None:
    drawing = DOC[DOC.index("## Layers") :].split("```")[1]
    for layer in core_layers():
        for name in layer:
            assert re.search(rf"\b{name}\b", drawing), name
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    for name in packages - {"model_configs"}:
        assert f"{name}/" in drawing, name


def test_training_paragraph_names_every_module() -> None:
    paragraph = DOC[DOC.index("`src/training/` runs") :].split("\n\n", 1)[0]
    modules = {p.name for p in (ROOT / "src" / "training").glob("*.py")} - {"__init__.py"}
    assert set(re.findall(r"`(\w+\.py)`", paragraph)) == modules
