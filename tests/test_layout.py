"""The import arrows of ../shared/STYLE.md, checked by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the composition root mounts the write API's routes; no other serving module may reach it
ALLOWED = {"serving/service.py": {"ingest"}}

# package -> top-level modules it must never import
FORBIDDEN = {
    "features": {"apache_beam", "bentoml", "airflow", "lancedb", "lance", "pipelines", "serving", "cli", "requests"},
    "pipelines": {"bentoml", "serving", "airflow", "cli"},
    # the one reader of the release log and the candidates, for pipelines and serving alike
    "registry": {"apache_beam", "bentoml", "airflow", "pipelines", "serving", "evaluation", "cli"},
    "serving": {"pipelines", "apache_beam", "airflow", "cli", "ingest"},
    # the write API: writes only through pipelines.lance_io (the one writer), answers in serving's error shape
    "ingest": {"apache_beam", "bentoml", "airflow", "cli", "evaluation", "lancedb", "lance"},
    "cli": {"serving", "bentoml", "airflow"},  # `recqa serve` starts the service as a process
    # evaluation trains with the real jobs and ranks with serving's read-side classes, never the service
    "evaluation": {"bentoml", "apache_beam", "airflow", "cli"},
    # the Python client needs httpx only: callers get it without the server's stack
    "client": {"features", "pipelines", "registry", "serving", "evaluation", "cli", "bentoml", "lancedb", "lance", "torch", "requests"},
    "airflow_dags": {"features", "pipelines", "serving", "apache_beam", "bentoml", "lancedb", "lance", "torch"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # relative imports would hide the package they reach; the project uses none
            roots.add(node.module.split(".")[0] if node.level == 0 and node.module else ".")
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_against_the_arrows(package):
    modules = list((ROOT / package).rglob("*.py"))
    assert modules, f"{package}/ has no modules"
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & (FORBIDDEN[package] | {"."}) - ALLOWED.get(str(path.relative_to(ROOT)), set()))
        for path in modules
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_ingest_writes_only_through_the_pipelines_writer():
    """The write API may reach pipelines only for lance_io (the one writer), never a batch job."""
    reached = set()
    for path in (ROOT / "ingest").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipelines":
                reached.add(node.module)
            elif isinstance(node, ast.Import):
                reached.update(a.name for a in node.names if a.name.split(".")[0] == "pipelines")
    assert reached == {"pipelines.lance_io"}


def test_the_walker_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import bentoml\n    from apache_beam.io import x\n    from . import y\n")
    assert imported_roots(module) == {"bentoml", "apache_beam", "."}
