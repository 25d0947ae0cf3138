"""`recqa rollback` refuses a previous release it could not serve whole, naming what is missing."""

from __future__ import annotations

import lance
import pyarrow as pa
import pytest

from features.schemas import ANSWERS_TABLE, ITEMS_TABLE, USERS_TABLE
from pipelines import lance_io, listing, publish
from registry.log import read_releases


def _version(warehouse: str, name: str, rows: int) -> int:
    return lance_io.write_table(warehouse, name, pa.table({"id": [str(i) for i in range(rows)]}))


def _release(warehouse: str, versions: dict[str, int]) -> None:
    lance_io.publish_release(warehouse, read_releases(warehouse), versions, retain_releases=5)


def _log(warehouse: str) -> list[dict[str, int]]:
    return [release.tables for release in read_releases(warehouse).releases]


def test_a_release_whose_table_version_was_cleaned_up_is_refused_naming_it(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    old = _version(warehouse, ANSWERS_TABLE, 1)
    _release(warehouse, {ANSWERS_TABLE: old})
    new = _version(warehouse, ANSWERS_TABLE, 2)
    _release(warehouse, {ANSWERS_TABLE: new})
    lance.dataset(lance_io.table_uri(warehouse, ANSWERS_TABLE)).cleanup_old_versions(versions=[old], error_if_tagged_old_versions=False)
    before = _log(warehouse)
    with pytest.raises(publish.PublishError, match=rf"'{ANSWERS_TABLE}' version {old}, which release 1 names, no longer exists"):
        publish.rollback(["--warehouse", warehouse])
    assert _log(warehouse) == before  # release 2 stays published
    listed = listing.releases(["--warehouse", warehouse]).stages
    assert f"{ANSWERS_TABLE} v{old} (GONE)" in listed and f"{ANSWERS_TABLE} v{new} (GONE)" not in listed


def test_a_release_without_a_table_the_current_one_serves_is_refused_naming_it(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    answers = _version(warehouse, ANSWERS_TABLE, 1)
    _release(warehouse, {ANSWERS_TABLE: answers})  # answers only
    _release(warehouse, {USERS_TABLE: _version(warehouse, USERS_TABLE, 1), ITEMS_TABLE: _version(warehouse, ITEMS_TABLE, 1)})
    before = _log(warehouse)
    with pytest.raises(publish.PublishError) as refused:
        publish.rollback(["--warehouse", warehouse])
    message = str(refused.value)
    assert f"release 1 has no '{ITEMS_TABLE}' table, which release 2 serves" in message
    assert f"release 1 has no '{USERS_TABLE}' table" in message and "recqa candidates" in message
    assert _log(warehouse) == before


def test_a_release_that_can_be_served_whole_is_rolled_back_to(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    first = {ANSWERS_TABLE: _version(warehouse, ANSWERS_TABLE, 1)}
    _release(warehouse, first)
    _release(warehouse, {ANSWERS_TABLE: _version(warehouse, ANSWERS_TABLE, 2)})
    assert publish.rollback(["--warehouse", warehouse]).versions == first
    assert _log(warehouse) == [first]
    with pytest.raises(publish.PublishError, match="no earlier release"):
        publish.rollback(["--warehouse", warehouse])


def test_a_rollback_commits_only_on_the_log_it_checked(tmp_path, monkeypatch):
    """A publish landing between the check and the commit fails the rollback instead of dropping that publish."""
    warehouse = str(tmp_path / "warehouse")
    _release(warehouse, {ANSWERS_TABLE: _version(warehouse, ANSWERS_TABLE, 1)})
    _release(warehouse, {ANSWERS_TABLE: _version(warehouse, ANSWERS_TABLE, 2)})
    checked = publish.rollback_problems

    def publish_meanwhile(*args):
        problems = checked(*args)
        _release(warehouse, {ANSWERS_TABLE: _version(warehouse, ANSWERS_TABLE, 3)})
        return problems

    monkeypatch.setattr(publish, "rollback_problems", publish_meanwhile)
    with pytest.raises(publish.PublishError, match="not rolled back: another publish or rollback changed the release log"):
        publish.rollback(["--warehouse", warehouse])
    assert len(_log(warehouse)) == 3
