"""The write API in-process: its real routes behind the real GuardMiddleware, over a warehouse
in tmp_path that has no tables (the write path touches only the `changes` table)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from ingest.routes import IngestEndpoints
from ingest.writer import BatchingWriter
from serving.guard import GuardMiddleware, GuardSettings

TOKEN = "ingest-secret-5d1e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ingest_app(warehouse: Path, settings: GuardSettings | None = None, make_writer: Callable[[str], BatchingWriter] | None = None):
    """The ingest routes behind the guard (ingest token TOKEN unless `settings` say otherwise), and their endpoints."""
    endpoints = IngestEndpoints(lambda: str(warehouse), make_writer or BatchingWriter.for_warehouse)
    app = GuardMiddleware(Starlette(routes=endpoints.routes()), settings or GuardSettings(ingest_token=TOKEN), json_routes=frozenset(r.path for r in endpoints.routes()))
    return app, endpoints


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return tmp_path / "warehouse"


@pytest.fixture
def client(warehouse: Path):
    app, endpoints = ingest_app(warehouse)
    with TestClient(app) as running:
        yield running
    endpoints.close()
