"""Hot reload: the follower opens what each new release names; publishing (and rolling back)
while requests run, no request fails or mixes releases."""

from __future__ import annotations

import shutil
import threading
import time

import lance
import pytest
import requests

from features.schemas import PUBLISHED_TAG, RECQA_TABLES
from registry.log import read_releases
from tests.conftest import register_candidate
from pipelines import lance_io, publish
from serving.reload import StoreFollower
from serving.store import Store
from tests.conftest import FakeEncoder
from tests.serving.conftest import start_server, stop_server


def test_the_follower_serves_a_recs_only_release_then_picks_up_answers_released_later(fake_warehouse, tmp_path):
    copy = tmp_path / "warehouse"
    for name in RECQA_TABLES:  # every table built, nothing published: no release log, no tags
        shutil.copytree(fake_warehouse / f"{name}.lance", copy / f"{name}.lance")
        lance.dataset(lance_io.table_uri(str(copy), name)).tags.delete(PUBLISHED_TAG)
    follower = StoreFollower(str(copy), lambda versions: Store(str(copy), FakeEncoder(), versions), interval_seconds=60)
    assert follower.refresh() is False and follower.current() is None
    assert "nothing is published" in follower.not_ready_reason

    def release(names: list[str]) -> dict[str, int]:
        versions = lance_io.table_versions(str(copy), names)
        return lance_io.publish_release(str(copy), read_releases(str(copy)), versions, retain_releases=5).tables

    recs = release(["users", "items"])
    assert follower.refresh() is True
    store = follower.current()
    assert store.versions == recs and set(recs) == {"users", "items"}
    assert store.answers is None and store.recommender is not None
    assert follower.refresh() is False and follower.current() is store  # same release: nothing reopened

    both = release(["answers"])
    assert follower.refresh() is True
    assert follower.current().versions == both == {**recs, "answers": both["answers"]}
    assert follower.current().answers.answer("github strikethrough", 1, "keyword")
    assert store.answers is None  # a request holding the old Store keeps the tables it started with


@pytest.mark.slow
def test_publish_and_rollback_under_traffic(warehouse, tmp_path):
    copy = tmp_path / "warehouse"
    shutil.copytree(warehouse, copy)
    server = start_server(copy, tmp_path, reload_seconds=0.5)
    failures: list[str] = []
    seen_versions: list[dict[str, int]] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            for route, body in (("/answer", {"question": "strikethrough on github", "k": 3}), ("/recommend", {"user_id": "nobody", "k": 3})):
                try:
                    response = requests.post(f"{server.base_url}{route}", json=body, timeout=30)
                except requests.RequestException as error:
                    failures.append(f"{route}: {error}")
                    continue
                if response.status_code != 200:
                    failures.append(f"{route}: {response.status_code} {response.text[:200]}")
                else:
                    seen_versions.append(response.json()["version"])

    workers = [threading.Thread(target=traffic) for _ in range(4)]
    try:
        old = read_releases(str(copy)).current.tables
        for worker in workers:
            worker.start()
        for name in ("users", "items", "answers"):  # a new version of every table, released together
            table = lance.dataset(lance_io.table_uri(str(copy), name)).to_table()
            lance_io.write_table(str(copy), name, table.slice(0, 50) if name == "answers" else table, table.schema.metadata)
        lance_io.create_fts_index(str(copy), "answers")
        candidates = [register_candidate(copy, ["users", "items"]), register_candidate(copy, ["answers"])]
        new = publish.run(["--warehouse", str(copy), "--allow-shrink", *(f"--candidate={c}" for c in candidates)]).versions
        assert all(new[name] > old[name] for name in old)

        def wait_for(versions: dict[str, int]) -> bool:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if server.post("/answer", {"question": "github", "k": 1}).json()["version"] == versions:
                    return True
                time.sleep(0.2)
            return False

        assert wait_for(new), server.log.read_text()[-3000:]
        publish.rollback(["--warehouse", str(copy)])
        assert wait_for(old)
        time.sleep(1)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
        stop_server(server.process)
    assert failures == []
    assert old in seen_versions and new in seen_versions
    assert all(versions in (old, new) for versions in seen_versions)  # one release per response, never a mix
    assert len(seen_versions) > 20
