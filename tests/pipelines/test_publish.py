"""`recqa publish` releases evaluated candidates whose tables pass their checks, one release at a time; rollback goes back."""

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
from pipelines import lance_io, listing, publish
from registry.log import read_releases, published_version
from pipelines.checks import check_tables
from tests.conftest import register_candidate


@pytest.fixture
def copy(fake_warehouse, tmp_path):
    target = tmp_path / "warehouse"
    shutil.copytree(fake_warehouse, target)
    return str(target)


def test_the_session_warehouse_passes_its_checks_and_is_published(warehouse):
    assert check_tables(str(warehouse), list(publish.ALL_TABLES)) == []
    for name in publish.ALL_TABLES:
        assert published_version(str(warehouse), name) == lance_io.table_versions(str(warehouse), [name])[name]


def test_tables_from_different_fits_are_not_published(copy):
    before = {name: published_version(copy, name) for name in publish.ALL_TABLES}
    users = lance.dataset(lance_io.table_uri(copy, "users")).to_table()
    lance_io.write_table(copy, "users", users, {META_ALS: b'{"factors": 32, "random_state": 7}'})
    candidate = register_candidate(copy, ["users", "items"])
    with pytest.raises(publish.PublishError, match="different ALS fits"):
        publish.run(["--warehouse", copy, "--candidate", candidate])
    assert {name: published_version(copy, name) for name in publish.ALL_TABLES} == before


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
    first = {name: published_version(copy, name) for name in publish.ALL_TABLES}
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    lance_io.write_table(copy, "answers", answers.slice(0, 10), answers.schema.metadata)
    lance_io.create_fts_index(copy, "answers")
    published = publish.run(["--warehouse", copy, "--candidate", register_candidate(copy, ["answers"]), "--allow-shrink"])
    assert published.rows == {"answers": 10}
    rolled = publish.rollback(["--warehouse", copy])
    assert rolled.versions == first
    assert lance.dataset(lance_io.table_uri(copy, "answers"), version=lance_io.PUBLISHED_TAG).count_rows() == answers.num_rows


def test_publish_names_unknown_candidates_and_empty_warehouses(copy, tmp_path):
    with pytest.raises(InputError, match="no candidate 'recs-nope'.*recqa candidates"):
        publish.run(["--warehouse", copy, "--candidate", "recs-nope"])
    with pytest.raises(InputError, match="publish takes candidate ids, not 'latest'"):
        publish.run(["--warehouse", copy, "--candidate", "latest"])
    with pytest.raises(SystemExit):  # --candidate is required: publish never means "whatever is newest"
        publish.run(["--warehouse", copy])


def test_racing_publishes_one_wins_the_others_fail_clearly_and_nothing_is_lost(copy, monkeypatch):
    """Four publishes read the log, then all commit at once: Lance's commit lets exactly one land."""
    before = read_releases(copy)
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
    candidate = register_candidate(copy, ["answers"])

    def one() -> str:
        try:
            publish.run(["--warehouse", copy, "--candidate", candidate, "--allow-shrink"])
            return "published"
        except publish.PublishError as error:
            return str(error)

    with ThreadPoolExecutor(racers) as pool:
        outcomes = list(pool.map(lambda _: one(), range(racers)))
    assert outcomes.count("published") == 1, outcomes
    assert all("another publish or rollback changed the release log" in o for o in outcomes if o != "published")
    after = read_releases(copy)
    assert after.releases[:-1] == before.releases  # nothing lost...
    assert after.current.number == before.current.number + 1  # ...and exactly one release added
    assert after.current.tables["answers"] == lance_io.table_versions(copy, ["answers"])["answers"]
    monkeypatch.setattr(publish, "check_tables", checked)
    publish.run(["--warehouse", copy, "--candidate", candidate])  # a loser's rerun succeeds
    assert read_releases(copy).current.number == before.current.number + 2


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
    publish.run(["--warehouse", copy, "--candidate", register_candidate(copy, ["answers"])])
    assert published_version(copy, "answers") == checked_version
    assert lance_io.table_versions(copy, ["answers"])["answers"] == checked_version + 1


def test_publishing_one_table_checks_it_with_the_published_others(copy):
    """Users alone from another fit would pair with the published items: refused."""
    users = lance.dataset(lance_io.table_uri(copy, "users")).to_table()
    lance_io.write_table(copy, "users", users, {META_ALS: b'{"factors": 8, "random_state": 1}'})
    users_only = register_candidate(copy, ["users"])
    with pytest.raises(publish.PublishError, match="different ALS fits"):
        publish.run(["--warehouse", copy, "--candidate", users_only])


def test_releases_lists_the_log_and_names_an_empty_warehouse(copy, tmp_path):
    first = read_releases(copy).current
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    lance_io.write_table(copy, "answers", answers.slice(0, 10), answers.schema.metadata)
    lance_io.create_fts_index(copy, "answers")
    second = publish.run(["--warehouse", copy, "--candidate", register_candidate(copy, ["answers"]), "--allow-shrink"]).versions["answers"]
    listed = listing.releases(["--warehouse", copy])
    assert listed.versions == {**first.tables, "answers": second}
    lines = listed.stages.splitlines()
    assert len(lines) == 2 and f"answers v{first.tables['answers']}" in lines[0] and f"answers v{second}" in lines[1]
    with pytest.raises(InputError, match="nothing published yet"):
        listing.releases(["--warehouse", str(tmp_path / "none")])


def test_a_warehouse_published_by_tags_alone_keeps_serving_them_and_its_first_release_keeps_them(copy):
    """A warehouse published before the release log: its `published` tags are the current release."""
    from registry.log import published_versions

    tagged = {name: published_version(copy, name) for name in publish.ALL_TABLES}
    shutil.rmtree(lance_io.table_uri(copy, "releases"))
    answers_uri = lance_io.table_uri(copy, "answers")
    lance.dataset(answers_uri).tags.create("release-000001", tagged["answers"])  # an older recqa's rollback tag
    assert published_versions(copy) == tagged  # the service serves what the tags name
    assert read_releases(copy).current.tables == tagged
    answers = lance.dataset(answers_uri).to_table()
    lance_io.write_table(copy, "answers", answers.slice(0, 10), answers.schema.metadata)
    lance_io.create_fts_index(copy, "answers")
    publish.run(["--warehouse", copy, "--candidate", register_candidate(copy, ["answers"]), "--allow-shrink"])
    assert [r.tables for r in read_releases(copy).releases] == [tagged, lance_io.table_versions(copy, list(publish.ALL_TABLES))]
    assert "release-000001" not in lance.dataset(answers_uri).tags.list()  # no old tag pins versions forever
    assert publish.rollback(["--warehouse", copy]).versions == tagged


def test_a_publish_racing_a_rollback_one_lands_and_nothing_is_lost(copy, monkeypatch):
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    for rows in (10, 20):  # two releases, so there is one to roll back to
        lance_io.write_table(copy, "answers", answers.slice(0, rows), answers.schema.metadata)
        lance_io.create_fts_index(copy, "answers")
        publish.run(["--warehouse", copy, "--candidate", register_candidate(copy, ["answers"]), "--allow-shrink"])
    lance_io.write_table(copy, "answers", answers.slice(0, 30), answers.schema.metadata)
    lance_io.create_fts_index(copy, "answers")
    candidate = register_candidate(copy, ["answers"])
    before = read_releases(copy).releases
    barrier = threading.Barrier(2)
    commit = lance_io._commit_releases

    def commit_together(*args, **kwargs):  # both have read the log; now both commit
        barrier.wait(timeout=60)
        return commit(*args, **kwargs)

    monkeypatch.setattr(lance_io, "_commit_releases", commit_together)

    def attempt(job) -> str:
        try:
            job(["--warehouse", copy])
            return "landed"
        except publish.PublishError as error:
            return str(error)

    def publish_it(argv):
        return publish.run([*argv, "--candidate", candidate])

    with ThreadPoolExecutor(2) as pool:
        published, rolled_back = pool.map(attempt, (publish_it, publish.rollback))
    assert sorted([published == "landed", rolled_back == "landed"]) == [False, True], (published, rolled_back)
    after = read_releases(copy).releases
    if published == "landed":
        assert after[:-1] == before and after[-1].tables["answers"] == lance_io.table_versions(copy, ["answers"])["answers"]
        assert "changed the release log" in rolled_back
    else:
        assert after == before[:-1] and "changed the release log" in published


def test_a_candidate_never_evaluated_or_failed_is_refused_and_force_is_recorded(copy):
    before = read_releases(copy).releases
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    lance_io.write_table(copy, "answers", answers, answers.schema.metadata)
    lance_io.create_fts_index(copy, "answers")
    never = register_candidate(copy, ["answers"], passed=None)
    failed = register_candidate(copy, ["answers"], passed=False)
    with pytest.raises(publish.PublishError, match=f"(?s){never}: never evaluated.*recqa evaluate qa --candidate {never}"):
        publish.run(["--warehouse", copy, "--candidate", never])
    with pytest.raises(publish.PublishError, match=f"{failed}: its evaluation failed \\(ndcg against 0.5\\)"):
        publish.run(["--warehouse", copy, "--candidate", failed])
    assert read_releases(copy).releases == before  # nothing released
    publish.run(["--warehouse", copy, "--candidate", failed, "--force"])
    current = read_releases(copy).current
    assert "qa" in current.forced and current.candidates["qa"] == failed
    passed = register_candidate(copy, ["answers"])
    publish.run(["--warehouse", copy, "--candidate", passed])
    current = read_releases(copy).current
    assert "qa" not in current.forced and current.candidates["qa"] == passed and current.reports["qa"] == "0" * 64
    assert current.forced == ["recs"]  # the session warehouse's recs, published with --force, are still served
    lines = {line.split()[0]: line for line in listing.candidates(["--warehouse", copy, "--kind", "qa"]).stages.splitlines()}
    assert "not evaluated" in lines[never] and "FAILED" in lines[failed] and "passed" in lines[passed]
    assert "PUBLISHED" in lines[passed] and "PUBLISHED" not in lines[failed]  # the current release's, not an older one's


def test_a_table_that_shrank_is_refused_unless_allowed(copy):
    before = read_releases(copy).releases
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    lance_io.write_table(copy, "answers", answers.slice(0, 1), answers.schema.metadata)  # one FAQ replaced the table
    lance_io.create_fts_index(copy, "answers")
    one_row = register_candidate(copy, ["answers"])
    with pytest.raises(publish.PublishError, match=rf"(?s)answers: 1 rows against {answers.num_rows} published .*limit 20%.*--allow-shrink"):
        publish.run(["--warehouse", copy, "--candidate", one_row])
    assert read_releases(copy).releases == before
    lance_io.write_table(copy, "answers", answers.slice(0, int(answers.num_rows * 0.85)), answers.schema.metadata)
    lance_io.create_fts_index(copy, "answers")
    publish.run(["--warehouse", copy, "--candidate", register_candidate(copy, ["answers"])])  # 15% fewer: within the limit
    with pytest.raises(publish.PublishError, match=f"{one_row}: judged against"):  # another release is served since
        publish.run(["--warehouse", copy, "--candidate", one_row, "--allow-shrink"])
    publish.run(["--warehouse", copy, "--candidate", one_row, "--allow-shrink", "--force"])
    assert read_releases(copy).current.candidates["qa"] == one_row


def test_publish_releases_exactly_the_candidates_versions_not_the_newest(copy):
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    lance_io.write_table(copy, "answers", answers, answers.schema.metadata)
    lance_io.create_fts_index(copy, "answers")
    candidate = register_candidate(copy, ["answers"])
    judged = lance_io.table_versions(copy, ["answers"])["answers"]
    lance_io.write_table(copy, "answers", answers, answers.schema.metadata)  # a later build, never evaluated
    lance_io.create_fts_index(copy, "answers")
    publish.run(["--warehouse", copy, "--candidate", candidate])
    assert published_version(copy, "answers") == judged < lance_io.table_versions(copy, ["answers"])["answers"]


def test_two_candidates_of_one_kind_are_refused(copy):
    first, second = register_candidate(copy, ["answers"]), register_candidate(copy, ["answers"])
    with pytest.raises(InputError, match="two qa candidates named"):
        publish.run(["--warehouse", copy, "--candidate", first, "--candidate", second])


def test_a_verdict_against_another_release_is_refused_until_judged_again(copy):
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    lance_io.write_table(copy, "answers", answers, answers.schema.metadata)
    lance_io.create_fts_index(copy, "answers")
    stale = register_candidate(copy, ["answers"])  # judged against the release served now
    lance_io.write_table(copy, "answers", answers, answers.schema.metadata)
    lance_io.create_fts_index(copy, "answers")
    publish.run(["--warehouse", copy, "--candidate", register_candidate(copy, ["answers"])])  # then another is released
    with pytest.raises(publish.PublishError, match=f"(?s){stale}: judged against .* is published now; evaluate it again"):
        publish.run(["--warehouse", copy, "--candidate", stale])
