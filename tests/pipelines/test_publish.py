"""`recqa publish` releases only tables that pass their checks, one release at a time; rollback goes back."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import lance
import numpy as np
import pyarrow as pa
import pytest

from features.errors import InputError
from features.schemas import META_ALS
from pipelines import lance_io, publish
from pipelines.checks import check_tables


@pytest.fixture
def copy(warehouse, tmp_path):
    target = tmp_path / "warehouse"
    shutil.copytree(warehouse, target)
    return str(target)


def test_the_session_warehouse_passes_its_checks_and_is_published(warehouse):
    assert check_tables(str(warehouse), list(publish.ALL_TABLES)) == []
    for name in publish.ALL_TABLES:
        assert lance_io.published_version(str(warehouse), name) == lance_io.table_versions(str(warehouse), [name])[name]


def test_tables_from_different_fits_are_not_published(copy):
    before = {name: lance_io.published_version(copy, name) for name in publish.ALL_TABLES}
    users = lance.dataset(lance_io.table_uri(copy, "users")).to_table()
    lance_io.write_table(copy, "users", users, {META_ALS: b'{"factors": 32, "random_state": 7}'})
    with pytest.raises(publish.PublishError, match="different ALS fits"):
        publish.run(["--warehouse", copy])
    assert {name: lance_io.published_version(copy, name) for name in publish.ALL_TABLES} == before


def test_non_finite_vectors_and_missing_indexes_are_named(copy):
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    vectors = np.stack(answers.column("vector").to_numpy(zero_copy_only=False))
    vectors[3, 0] = np.nan
    broken = answers.set_column(answers.schema.get_field_index("vector"), "vector", pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 384))
    lance_io.write_table(copy, "answers", broken, answers.schema.metadata)
    problems = check_tables(copy, ["answers"], ann_min_rows=100)
    assert "answers.vector: null or non-finite vectors" in problems
    assert "answers.text: no full-text index (keyword and hybrid search need it)" in problems
    assert any("answers.vector" in p and "no vector index" in p for p in problems)


def test_rollback_restores_the_previous_release(copy):
    first = {name: lance_io.published_version(copy, name) for name in publish.ALL_TABLES}
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    lance_io.write_table(copy, "answers", answers.slice(0, 10), answers.schema.metadata)
    lance_io.create_fts_index(copy, "answers")
    published = publish.run(["--warehouse", copy, "--tables", "answers"])
    assert published.rows == {"answers": 10}
    rolled = publish.rollback(["--warehouse", copy])
    assert rolled.versions == first
    assert lance.dataset(lance_io.table_uri(copy, "answers"), version=lance_io.PUBLISHED_TAG).count_rows() == answers.num_rows


def test_publish_names_unknown_tables_and_empty_warehouses(tmp_path):
    with pytest.raises(InputError, match="unknown tables"):
        publish.run(["--warehouse", str(tmp_path), "--tables", "userz"])
    with pytest.raises(InputError, match="no recqa tables"):
        publish.run(["--warehouse", str(tmp_path)])


def test_racing_publishes_one_wins_the_others_fail_clearly_and_nothing_is_lost(copy, monkeypatch):
    """Four publishes read the log, then all commit at once: Lance's commit lets exactly one land."""
    before = lance_io.read_releases(copy)
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    lance_io.write_table(copy, "answers", answers.slice(0, 20), answers.schema.metadata)
    lance_io.create_fts_index(copy, "answers")
    racers = 4
    barrier = threading.Barrier(racers)
    checked = publish.check_tables

    def check_then_wait(*args, **kwargs):  # every racer has read the log before any commits
        problems = checked(*args, **kwargs)
        barrier.wait(timeout=60)
        return problems

    monkeypatch.setattr(publish, "check_tables", check_then_wait)

    def one() -> str:
        try:
            publish.run(["--warehouse", copy, "--tables", "answers"])
            return "published"
        except publish.PublishError as error:
            return str(error)

    with ThreadPoolExecutor(racers) as pool:
        outcomes = list(pool.map(lambda _: one(), range(racers)))
    assert outcomes.count("published") == 1, outcomes
    assert all("another publish or rollback changed the release log" in o for o in outcomes if o != "published")
    after = lance_io.read_releases(copy)
    assert after.releases[:-1] == before.releases  # nothing lost...
    assert after.current.number == before.current.number + 1  # ...and exactly one release added
    assert after.current.tables["answers"] == lance_io.table_versions(copy, ["answers"])["answers"]
    monkeypatch.setattr(publish, "check_tables", checked)
    publish.run(["--warehouse", copy, "--tables", "answers"])  # a loser's rerun succeeds
    assert lance_io.read_releases(copy).current.number == before.current.number + 2


def test_a_run_committed_after_the_checks_is_not_released(copy, monkeypatch):
    """Publish releases the versions it checked, not whatever is newest when it commits."""
    checked_version = lance_io.table_versions(copy, ["answers"])["answers"]
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    checked = publish.check_tables

    def check_then_a_build_commits(*args, **kwargs):
        problems = checked(*args, **kwargs)
        lance_io.write_table(copy, "answers", answers.slice(0, 5), answers.schema.metadata)
        return problems

    monkeypatch.setattr(publish, "check_tables", check_then_a_build_commits)
    publish.run(["--warehouse", copy, "--tables", "answers"])
    assert lance_io.published_version(copy, "answers") == checked_version
    assert lance_io.table_versions(copy, ["answers"])["answers"] == checked_version + 1


def test_publishing_one_table_checks_it_with_the_published_others(copy):
    """Users alone from another fit would pair with the published items: refused."""
    users = lance.dataset(lance_io.table_uri(copy, "users")).to_table()
    lance_io.write_table(copy, "users", users, {META_ALS: b'{"factors": 8, "random_state": 1}'})
    with pytest.raises(publish.PublishError, match="different ALS fits"):
        publish.run(["--warehouse", copy, "--tables", "users"])


def test_releases_lists_the_log_and_names_an_empty_warehouse(copy, tmp_path):
    first = lance_io.read_releases(copy).current
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    lance_io.write_table(copy, "answers", answers.slice(0, 10), answers.schema.metadata)
    lance_io.create_fts_index(copy, "answers")
    second = publish.run(["--warehouse", copy, "--tables", "answers"]).versions["answers"]
    listed = publish.releases(["--warehouse", copy])
    assert listed.versions == {**first.tables, "answers": second}
    lines = listed.stages.splitlines()
    assert len(lines) == 2 and f"answers v{first.tables['answers']}" in lines[0] and f"answers v{second}" in lines[1]
    with pytest.raises(InputError, match="nothing published yet"):
        publish.releases(["--warehouse", str(tmp_path / "none")])
