"""The import arrows of ../shared/STYLE.md, checked by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
FORBIDDEN = {
    "features": {"apache_beam", "bentoml", "airflow", "lancedb", "lance", "pipelines", "serving", "requests"},
    "pipelines": {"bentoml", "serving", "airflow"},
    "serving": {"pipelines", "apache_beam", "airflow"},
    "airflow_dags": {"features", "pipelines", "serving", "apache_beam", "bentoml", "lancedb", "lance", "torch"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_against_the_arrows(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_walker_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import bentoml\n    from apache_beam.io import x\n")
    assert imported_roots(module) == {"bentoml", "apache_beam"}
