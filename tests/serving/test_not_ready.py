"""A service started where there are no tables stays alive, says it is not ready, and why."""

import pytest

from tests.serving.conftest import start_server, stop_server

pytestmark = pytest.mark.slow


def test_missing_warehouse_is_live_but_not_ready_until_a_version_is_published(tmp_path, warehouse):
    import shutil
    import time

    target = tmp_path / "warehouse-to-come"
    server = start_server(target, tmp_path, wait_ready=False, reload_seconds=1)
    try:
        assert server.get("/healthz").status_code == 200
        assert server.get("/readyz").status_code == 503
        response = server.post("/recommend", {"user_id": "u", "k": 3})
        assert response.status_code == 503
        # BentoML hides 5xx details from clients; the operator finds the reason in the log
        log = server.log.read_text()
        assert "not ready: no published version of every table" in log
        version = server.get("/version")
        assert version.status_code == 503 and "no published version" in version.json()["reason"]
        shutil.copytree(warehouse, target)  # a published warehouse appears
        deadline = time.monotonic() + 60
        while server.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert server.post("/recommend", {"user_id": "u", "k": 3}).status_code == 200
    finally:
        stop_server(server.process)
