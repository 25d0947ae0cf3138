"""`bentoml build` works offline from bentofile.yaml, and the built Bento serves."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT
from tests.serving.conftest import free_port, stop_server

pytestmark = pytest.mark.slow
BENTOML = str(Path(sys.executable).with_name("bentoml"))


def test_bento_builds_offline_and_serves_the_warehouse(warehouse, tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "home"), "BENTOML_DO_NOT_TRACK": "True"}
    build = subprocess.run([BENTOML, "build", str(ROOT)], capture_output=True, text=True, env=env, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    (bento,) = [p for p in (tmp_path / "home" / "bentos" / "recqa").iterdir() if p.name != "latest"]
    assert (bento / "src" / "serving" / "service.py").exists()
    assert (bento / "src" / "features" / "schemas.py").exists()
    assert (bento / "src" / "encoding" / "onnx_encoder.py").exists()  # the query encoder
    # of the pipelines, only the one Lance writer ships (the write API appends through it), never a Beam job
    assert sorted(p.name for p in (bento / "src" / "pipelines").iterdir()) == ["__init__.py", "lance_io.py"]
    assert (bento / "src" / "ingest" / "routes.py").exists()

    port = free_port()
    process = subprocess.Popen(
        [BENTOML, "serve", "recqa:latest", "--host", "127.0.0.1", "--port", str(port)],
        env={**env, "RECQA_WAREHOUSE": str(warehouse)},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, status = time.monotonic() + 180, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
            except requests.RequestException:
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200
        body = requests.post(f"http://127.0.0.1:{port}/recommend", json={"user_id": "nobody", "k": 2}, timeout=30).json()
        assert body["strategy"] == "popular" and len(body["items"]) == 2
    finally:
        stop_server(process)
