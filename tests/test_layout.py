"""The import arrows of ../shared/STYLE.md, checked by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the composition root mounts the write API's routes; no other serving module may reach it
ALLOWED = {
    "serving/service.py": {"ingest"},
    "cli/main.py": {"serving"},  # serving.settings alone: `recqa serve` checks the RECQA_* variables before BentoML starts
}

# features/ is pure: no process, temp file or command line (and no os.environ: see below), and
# no model runtime; loading and exporting the model is encoding/'s, argparse pipelines/flags.py's
IO_MODULES = {"argparse", "tempfile", "subprocess"}
MODEL_RUNTIMES = {"torch", "onnx", "onnxruntime", "sentence_transformers"}
# the layers that run a model; encoding/ itself reaches only features/ (the Encoder protocol, the model's name)
MAY_IMPORT_ENCODING = {"pipelines", "serving", "evaluation"}

# package -> top-level modules it must never import
FORBIDDEN = {
    "features": {"apache_beam", "bentoml", "airflow", "lancedb", "lance", "pipelines", "serving", "cli", "requests", "encoding"}
    | IO_MODULES | MODEL_RUNTIMES,
    "encoding": {"apache_beam", "bentoml", "airflow", "lancedb", "lance", "pipelines", "serving", "cli", "evaluation",
                 "registry", "ingest", "client", "requests"},
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


def test_only_the_layers_that_run_a_model_import_encoding():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} | {"airflow_dags"}
    importers = {
        package for package in packages - {"encoding", "tests"}
        if any("encoding" in imported_roots(path) for path in (ROOT / package).rglob("*.py"))
    }
    assert importers <= MAY_IMPORT_ENCODING and "encoding" in packages
    assert {"pipelines", "serving"} <= importers  # the batch encode step and the service's query encoder


_ENVIRONMENT_CALLS = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_uses(path: Path) -> list[int]:
    """Lines of `path` that read or set the process environment (os.environ, os.getenv, ..., however os is named)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    os_names = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names if alias.name == "os"}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os" and {a.name for a in node.names} & (_ENVIRONMENT_CALLS | {"*"}):
            lines.append(node.lineno)
        elif (isinstance(node, ast.Attribute) and node.attr in _ENVIRONMENT_CALLS
              and isinstance(node.value, ast.Name) and node.value.id in os_names):
            lines.append(node.lineno)
    return lines


def test_features_never_touch_the_environment():
    offenders = {str(path.relative_to(ROOT)): environment_uses(path) for path in (ROOT / "features").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_environment_walker_sees_every_spelling(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import os\nimport os as system\nfrom os import getenv\n"
        "def f():\n    os.environ.setdefault('A', '1')\n    return system.getenv('B'), os.path.join('a', 'b')\n"
    )
    assert sorted(environment_uses(module)) == [3, 5, 6]
    clean = tmp_path / "clean.py"
    clean.write_text("import os\nenviron = {}\nprint(os.sep, environ)\n")
    assert environment_uses(clean) == []


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
