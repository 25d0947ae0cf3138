"""A service started where nothing is published yet stays alive, says it is not ready and why,
and becomes ready once a release appears (in-process: the follower's own polling thread)."""

import logging
import shutil
import time

import lance
import pytest

from features.releases import RELEASES_TABLE
from features.schemas import PUBLISHED_TAG, table_uri
from pipelines import publish
from tests.serving.conftest import InProcessServer, in_process

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("state", ["missing", "empty", "built-not-published"])
def test_a_warehouse_with_nothing_published_is_live_but_not_ready_until_a_release(state, tmp_path, warehouse, service_app, caplog):
    target = tmp_path / "warehouse-to-come"
    if state == "empty":
        target.mkdir()
    if state == "built-not-published":  # every table built, no release log and no tags yet
        shutil.copytree(warehouse, target, ignore=shutil.ignore_patterns(f"{RELEASES_TABLE}.lance"))
        for name in publish.ALL_TABLES:
            lance.dataset(table_uri(str(target), name)).tags.delete(PUBLISHED_TAG)
    caplog.set_level(logging.INFO)
    with in_process(service_app, target, reload_seconds=1) as client:
        server = InProcessServer(client)
        assert server.get("/healthz").status_code == 200
        assert server.get("/readyz").status_code == 503
        response = server.post("/recommend", {"user_id": "u", "k": 3})
        assert response.status_code == 503
        assert "nothing is published" in response.json()["error"] and response.json()["status"] == 503
        assert "not ready: nothing is published" in caplog.text
        version = server.get("/version")
        assert version.status_code == 503 and "nothing is published" in version.json()["reason"]
        if state == "built-not-published":
            from registry.log import read_candidates

            newest = {c.kind: c.id for c in read_candidates(str(target))}  # the builds the warehouse was copied from
            publish.run(["--warehouse", str(target), *(f"--candidate={i}" for i in newest.values()), "--force"])
        else:
            shutil.copytree(warehouse, target, dirs_exist_ok=True)  # a published warehouse appears
        deadline = time.monotonic() + 60
        while server.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert server.post("/recommend", {"user_id": "u", "k": 3}).status_code == 200
        assert server.get("/healthz").status_code == 200
