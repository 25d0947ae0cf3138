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
    """A loopback /version endpoint whose answers are scripted per request, then repeat the last.

    With `token`, it guards /version as `recqa serve` does with RECQA_API_TOKEN: a request
    without `Authorization: Bearer <token>` gets 401 and no detail.
    """

    def __init__(self, answers: list[tuple[int, dict]], token: str | None = None) -> None:
        self.answers, self.requests, self.authorizations = answers, 0, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook
                outer.authorizations.append(self.headers.get("Authorization"))
                if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                    outer.requests += 1
                    self.send_response(401)
                    self.end_headers()
                    return
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

    def start(answers: list[tuple[int, dict]], token: str | None = None) -> FakeService:
        fake = FakeService(answers, token)
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


def test_without_a_service_url_it_says_there_is_nothing_to_wait_for_and_never_served(published, capsys, monkeypatch):
    from cli.main import main

    warehouse, version = published
    assert publish.await_service(["--warehouse", warehouse]).versions == {ANSWERS_TABLE: version}
    assert "no --service-url given: nothing to wait for" in capsys.readouterr().out
    assert main(["await-service", "--warehouse", warehouse]) == 0
    out = capsys.readouterr().out
    assert "nothing to wait for" in out and "served" not in out


def test_a_guarded_service_is_asked_with_the_token_from_the_environment(published, service, monkeypatch, capsys):
    warehouse, version = published
    fake = service([(200, {"tables": {ANSWERS_TABLE: version}})], token="s3cret-value")
    monkeypatch.setenv("RECQA_API_TOKEN", "s3cret-value")
    assert publish.await_service(["--warehouse", warehouse, "--service-url", fake.url]).versions == {ANSWERS_TABLE: version}
    assert fake.authorizations == ["Bearer s3cret-value"]
    assert f"{fake.url} serves the published versions" in capsys.readouterr().out


def test_an_unguarded_service_gets_no_authorization_header(published, service, monkeypatch):
    warehouse, version = published
    monkeypatch.delenv("RECQA_API_TOKEN", raising=False)
    fake = service([(200, {"tables": {ANSWERS_TABLE: version}})])
    publish.await_service(["--warehouse", warehouse, "--service-url", fake.url])
    assert fake.authorizations == [None]


@pytest.mark.parametrize("token", [None, "wrong-value"])
def test_a_refused_token_fails_at_once_naming_the_variable_never_the_value(published, service, monkeypatch, token):
    warehouse, _ = published
    if token is None:
        monkeypatch.delenv("RECQA_API_TOKEN", raising=False)
    else:
        monkeypatch.setenv("RECQA_API_TOKEN", token)
    fake = service([(200, {"tables": {}})], token="s3cret-value")
    with pytest.raises(publish.ServiceRefused, match="HTTP 401.*set RECQA_API_TOKEN") as refused:
        publish.await_service(["--warehouse", warehouse, "--service-url", fake.url, "--poll-seconds", "5", "--timeout-seconds", "60"])
    assert fake.requests == 1  # no polling until the timeout: waiting cannot fix a token
    assert "wrong-value" not in str(refused.value) and "s3cret" not in str(refused.value)


def test_an_unpublished_table_is_an_error(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    lance_io.write_table(warehouse, ANSWERS_TABLE, pa.table({"doc_id": ["a"]}))
    with pytest.raises(publish.PublishError, match="nothing published yet"):
        publish.await_service(["--warehouse", warehouse])


def test_a_service_of_several_workers_is_awaited_with_a_warning_that_one_answered(published, service, capsys):
    """Each worker follows the release log on its own: one answer cannot vouch for the others."""
    warehouse, version = published
    several = service([(200, {"tables": {ANSWERS_TABLE: version}, "encoder": {"workers": 2}})])
    publish.await_service(["--warehouse", warehouse, "--service-url", several.url, "--poll-seconds", "0.01"])
    out = capsys.readouterr().out
    assert "serves the published versions" in out and "runs 2 workers" in out and "RECQA_RELOAD_SECONDS" in out
    one = service([(200, {"tables": {ANSWERS_TABLE: version}, "encoder": {"workers": 1}})])
    publish.await_service(["--warehouse", warehouse, "--service-url", one.url, "--poll-seconds", "0.01"])
    assert "workers" not in capsys.readouterr().out
