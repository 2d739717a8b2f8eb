"""Imports point one way (STYLE habit 3): model and labeling import no other project package, active_learning
may use model, serving and experiments are imported by nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "active_learning", "labeling", "serving", "experiments")
ALLOWED = {
    "model": set(),
    "labeling": set(),
    "active_learning": {"model"},
    "serving": {"model", "active_learning", "labeling", "experiments"},
    "experiments": {"model", "active_learning", "labeling", "serving"},
}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported in _imported_packages(path) - ALLOWED[package] - {package}:
            bad.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not bad, "imports against the package direction:\n" + "\n".join(bad)


def test_serving_is_imported_only_by_experiments() -> None:
    for package in ("model", "active_learning", "labeling"):
        for path in (ROOT / package).rglob("*.py"):
            assert "serving" not in _imported_packages(path), path
