"""Imports point one way (STYLE habit 3), enforced as written: ``model`` and ``labeling`` import no other project
package, ``active_learning`` may use ``model``, ``serving`` and ``experiments`` use everything else and are
imported by nothing, each other included (``experiments`` reaches the CLI as an entry-point plugin)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "active_learning", "labeling", "serving", "experiments")
ALLOWED = {
    "model": set(),
    "labeling": set(),
    "active_learning": {"model"},
    "serving": {"model", "active_learning", "labeling"},
    "experiments": {"model", "active_learning", "labeling"},
}


def _imported_packages(path: Path) -> set[str]:
    """Project packages a module imports, wherever the import stands (module level, function, TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported in _imported_packages(path) - ALLOWED[package] - {package}:
            bad.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not bad, "imports against the package direction:\n" + "\n".join(bad)


@pytest.mark.parametrize("top", ["serving", "experiments"])
def test_top_layers_are_imported_by_nothing(top: str) -> None:
    importers = [
        f"{path.relative_to(ROOT)}"
        for package in PACKAGES
        if package != top
        for path in (ROOT / package).rglob("*.py")
        if top in _imported_packages(path)
    ]
    assert not importers, f"{top} is imported by {importers}"


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from serving.app import create_app\n    import importlib\n"
        "    importlib.import_module('experiments.demo')\n"
    )
    assert _imported_packages(module) == {"serving", "experiments"}


def test_experiments_commands_reach_the_cli_as_a_plugin() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["striketracker.commands"]["experiments"] == "experiments.cli:register"
    from typer.main import get_command

    from serving.cli import app

    names = set(get_command(app).commands)  # type: ignore[attr-defined]
    assert {"scenario", "demo", "train", "labelstudio"} <= names
