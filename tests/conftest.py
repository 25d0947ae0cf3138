"""Shared fixtures: the bundled data, and a warehouse built once by the real pipelines."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
MS_USAGE = DATA / "ms-store" / "demoUsage.csv"
MS_CATALOG = DATA / "ms-store" / "demoCatalog.csv"
STACKFAQ = DATA / "stackfaq" / "stackExchange-FAQ.json"
# The service reads RECQA_WORKERS when it is imported: a shell that exports it (as the README
# suggests for serving) must not turn the tests' servers and in-process app into several workers.
os.environ.pop("RECQA_WORKERS", None)

class FakeEncoder:
    """Deterministic stand-in for the encoder: no model, a fixed name and dimension (the bundled model's by default)."""

    def __init__(self, name: str = "all-MiniLM-L6-v2", dimension: int = 384) -> None:
        self.name = name
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), self._dimension), dtype=np.float32) / np.sqrt(self._dimension)


class LoadedFakeEncoder(FakeEncoder):
    """FakeEncoder in the place of the pipelines' SentenceTransformerEncoder(name).load()."""

    def __init__(self, name: str = "all-MiniLM-L6-v2") -> None:
        super().__init__()

    def load(self) -> "LoadedFakeEncoder":
        return self


TEXT_VECTOR_DIMENSION = 8


def text_vector(text: str) -> np.ndarray:
    """A unit vector that depends on the text alone, so a vector stored beside the wrong text shows."""
    import hashlib

    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(TEXT_VECTOR_DIMENSION).astype(np.float32)
    return vector / np.linalg.norm(vector)


class TextHashEncoder:
    """In the place of the pipelines' SentenceTransformerEncoder: no model, each text's own vector.

    `loads` counts the loads since the `text_model` fixture reset it (one per DoFn instance).
    """

    loads = 0

    def __init__(self, name: str = "all-MiniLM-L6-v2") -> None:
        self.name = name

    def load(self) -> "TextHashEncoder":
        TextHashEncoder.loads += 1
        return self

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, TEXT_VECTOR_DIMENSION), dtype=np.float32)
        return np.stack([text_vector(text) for text in texts])


@pytest.fixture
def text_model(monkeypatch: pytest.MonkeyPatch) -> type[TextHashEncoder]:
    """The builds' encode stages use TextHashEncoder: real Beam and Lance, vectors that name their text."""
    from pipelines.transforms import encode

    monkeypatch.setattr(encode, "SentenceTransformerEncoder", TextHashEncoder)
    TextHashEncoder.loads = 0
    return TextHashEncoder


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The builds' encode stages use LoadedFakeEncoder: real Beam and Lance, no model."""
    from pipelines.transforms import encode

    monkeypatch.setattr(encode, "SentenceTransformerEncoder", LoadedFakeEncoder)


# Fixtures of this file that load the real model (directly or through a build); a test that uses
# one, however indirectly, is slow. Fixtures of the same name elsewhere (tests/ingest's empty
# `warehouse`) do not count: the fixture a test gets is checked, not its name.
REAL_MODEL_FIXTURES = frozenset({"warehouse"})


def _uses_real_model(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    for name in item.fixturenames:
        definitions = info.name2fixturedefs.get(name)
        if definitions:
            func = definitions[-1].func  # the definition nearest the test wins, as pytest resolves it
            if func.__module__ == __name__ and func.__name__ in REAL_MODEL_FIXTURES:
                return True
    return False


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark slow every test that uses a real-model fixture, so `-m "not slow"` leaves it out."""
    for item in items:
        if _uses_real_model(item) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)


class _RealModelGuard:
    """Loading the real model outside a slow test fails that test, so the fast suite stays fast.

    The loader is wrapped for the whole session and checks the running test (its setup
    included, where session fixtures are made), so a model loaded by any fixture is caught.
    A test that needs no model behaviour uses `fake_model`; one that does is marked slow.
    """

    def __init__(self) -> None:
        self.item: pytest.Item | None = None
        self._original: Any = None

    def install(self) -> None:
        from encoding.sentence_transformer import SentenceTransformerEncoder

        self._original = original = SentenceTransformerEncoder.load
        guard = self

        def load(encoder: Any) -> Any:
            item = guard.item
            if item is not None and item.get_closest_marker("slow") is None:
                raise AssertionError(
                    f"test {item.nodeid} loads the real model '{encoder.name}' but is not marked slow: "
                    "mark it @pytest.mark.slow, or use the fake_model fixture when it tests no model behaviour"
                )
            return original(encoder)

        SentenceTransformerEncoder.load = load

    def uninstall(self) -> None:
        from encoding.sentence_transformer import SentenceTransformerEncoder

        if self._original is not None:
            SentenceTransformerEncoder.load = self._original


_GUARD = _RealModelGuard()


def pytest_configure(config: pytest.Config) -> None:
    _GUARD.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    _GUARD.uninstall()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    _GUARD.item = item
    try:
        return (yield)
    finally:
        _GUARD.item = None


# Keep third-party state out of the home directory and off the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("LANCEDB_LOG", "error")
os.environ.setdefault("LANCE_LOG", "error")


@pytest.fixture(scope="session")
def usage_rows() -> list[list[str]]:
    """demoUsage.csv read with the csv module, independently of the pipelines."""
    with MS_USAGE.open(newline="") as handle:
        return list(csv.reader(handle))


@pytest.fixture(scope="session")
def stackfaq_data() -> dict:
    return json.loads(STACKFAQ.read_text())


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse built by the real build-recs and build-qa jobs on the bundled data."""
    from pipelines import build_qa, build_recs, publish

    path = tmp_path_factory.mktemp("warehouse")
    recs = build_recs.run(["--warehouse", str(path), "--interactions", str(MS_USAGE), "--items", str(MS_CATALOG)])
    qa = build_qa.run(["--warehouse", str(path), "--documents", str(STACKFAQ)])
    publish.run(["--warehouse", str(path), "--candidate", recs.candidate, "--candidate", qa.candidate, "--force"])
    return path


@pytest.fixture(scope="session")
def fake_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As `warehouse`, built and published by the real jobs on the bundled data, but with
    LoadedFakeEncoder in the place of the model: for tests of the tables, not of the vectors' meaning."""
    from pipelines import build_qa, build_recs, publish
    from pipelines.transforms import encode

    path = tmp_path_factory.mktemp("fake-warehouse")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encode, "SentenceTransformerEncoder", LoadedFakeEncoder)
        recs = build_recs.run(["--warehouse", str(path), "--interactions", str(MS_USAGE), "--items", str(MS_CATALOG)])
        qa = build_qa.run(["--warehouse", str(path), "--documents", str(STACKFAQ)])
    publish.run(["--warehouse", str(path), "--candidate", recs.candidate, "--candidate", qa.candidate, "--force"])
    return path


def register_candidate(warehouse, tables: list[str], passed: bool | None = True) -> str:
    """A candidate naming the latest versions of `tables`, as a build records one, judged `passed` (None: never evaluated).

    For tests that write table versions by hand and then exercise publish.
    """
    from features.candidates import QA, RECS, Candidate, Evaluation, built_row, evaluated_row, new_candidate_id
    from pipelines import lance_io

    kind = QA if "answers" in tables else RECS
    versions = lance_io.table_versions(str(warehouse), tables)
    candidate = Candidate(new_candidate_id(kind), kind, versions, lance_io.table_rows(str(warehouse), tables))
    rows = [built_row(candidate)]
    if passed is not None:  # judged against what is published now
        from registry.log import read_releases

        current = read_releases(str(warehouse)).current
        against = {name: current.tables[name] for name in tables if current is not None and name in current.tables}
        gate = {"name": "min-ndcg", "threshold": 0.5, "figure": 0.9 if passed else 0.1, "passed": passed, "text": "ndcg against 0.5"}
        rows.append(evaluated_row(candidate, Evaluation(passed, [gate], "0" * 64, "report.json", against=against)))
    lance_io.append_candidate_events(str(warehouse), rows)
    return candidate.id
