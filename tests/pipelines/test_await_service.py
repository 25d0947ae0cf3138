"""`recqa await-service`: wait for a running service to serve the published versions."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest

from features.schemas import ANSWERS_TABLE
from registry.log import read_releases
from pipelines import lance_io, publish


@pytest.fixture
def published(tmp_path) -> tuple[str, int]:
    """A warehouse whose one table has two versions, the second published."""
    warehouse = str(tmp_path / "warehouse")
    for rows in (1, 2):
        version = lance_io.write_table(warehouse, ANSWERS_TABLE, pa.table({"doc_id": [str(i) for i in range(rows)]}))
    lance_io.publish_release(warehouse, read_releases(warehouse), {ANSWERS_TABLE: version}, retain_releases=5)
    return warehouse, version


class FakeService:
    """A loopback /version endpoint whose answers are scripted per request, then repeat the last."""

    def __init__(self, answers: list[tuple[int, dict]]) -> None:
        self.answers, self.requests = answers, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook
                status, body = outer.answers[min(outer.requests, len(outer.answers) - 1)]
                outer.requests += 1
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def service() -> Iterator[callable]:
    started = []

    def start(answers: list[tuple[int, dict]]) -> FakeService:
        fake = FakeService(answers)
        threading.Thread(target=fake.server.serve_forever, daemon=True).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.server.shutdown()


def test_waits_through_not_ready_and_old_versions_until_the_published_one(published, service):
    warehouse, version = published
    fake = service([(503, {"reason": "loading"}), (200, {"tables": {ANSWERS_TABLE: version - 1}}), (200, {"tables": {ANSWERS_TABLE: version}})])
    result = publish.await_service(["--warehouse", warehouse, "--service-url", fake.url, "--poll-seconds", "0.01"])
    assert result.versions == {ANSWERS_TABLE: version}
    assert fake.requests == 3


def test_times_out_naming_what_is_served_and_what_is_published(published, service):
    warehouse, version = published
    fake = service([(200, {"tables": {ANSWERS_TABLE: version - 1}})])
    with pytest.raises(publish.PublishError, match=rf"still serves \{{'{ANSWERS_TABLE}': {version - 1}\}}.*published: \{{'{ANSWERS_TABLE}': {version}\}}"):
        publish.await_service(["--warehouse", warehouse, "--service-url", fake.url, "--poll-seconds", "0.01", "--timeout-seconds", "0.1"])
    assert fake.requests >= 2


def test_without_a_service_url_it_only_reports_the_published_versions(published, capsys):
    warehouse, version = published
    assert publish.await_service(["--warehouse", warehouse]).versions == {ANSWERS_TABLE: version}
    assert "picks up" in capsys.readouterr().out


def test_an_unpublished_table_is_an_error(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    lance_io.write_table(warehouse, ANSWERS_TABLE, pa.table({"doc_id": ["a"]}))
    with pytest.raises(publish.PublishError, match="nothing published yet"):
        publish.await_service(["--warehouse", warehouse])
