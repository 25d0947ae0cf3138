"""A service started where there are no tables stays alive, says it is not ready, and why."""

import pytest

from tests.serving.conftest import start_server, stop_server

pytestmark = pytest.mark.slow


def test_missing_warehouse_is_live_but_not_ready(tmp_path):
    server = start_server(tmp_path / "no-warehouse-here", tmp_path, wait_ready=False)
    try:
        assert server.get("/healthz").status_code == 200
        assert server.get("/readyz").status_code == 503
        response = server.post("/recommend", {"user_id": "u", "k": 3})
        assert response.status_code == 503
        # BentoML hides 5xx details from clients; the operator finds the reason in the log
        log = server.log.read_text()
        assert "recqa is not ready" in log and "no complete set of tables" in log
    finally:
        stop_server(server.process)
