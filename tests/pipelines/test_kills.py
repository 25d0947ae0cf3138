"""A batch job SIGKILLed at each stage: the release does not change (or lands whole), the published
tables still serve, and a rerun succeeds.

Each case runs the real job in a child process whose lance_io function for that stage kills the
process (SIGKILL, no cleanup) on its n-th call, before or after doing its work.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import lance
import pytest

from pipelines import build_qa, build_recs, lance_io, publish
from pipelines.checks import check_tables
from registry.log import published_versions, read_candidates, read_releases
from tests.conftest import register_candidate
from serving.store import Store
from tests.conftest import FakeEncoder

pytestmark = pytest.mark.slow

# case -> (job, function to kill in, which call, kill after the call instead of before)
KILLS = {
    "recs-after-a-fragment-write": ("recs", "lance_io.write_fragments", 1, True),
    "recs-before-its-first-commit": ("recs", "lance_io.commit_fragments", 1, False),
    "recs-between-its-two-commits": ("recs", "lance_io.commit_fragments", 2, False),
    "recs-before-its-vector-indexes": ("recs", "lance_io.create_vector_indexes", 1, False),
    # committed and indexed, but no candidate recorded: nothing names these versions, so none is published
    "recs-before-its-candidate": ("recs", "lance_io.append_candidate_events", 1, False),
    "qa-before-its-commit": ("qa", "lance_io.commit_fragments", 1, False),
    "qa-before-its-full-text-index": ("qa", "lance_io.create_fts_index", 1, False),
    "publish-before-the-release-commit": ("publish", "lance_io.publish_release", 1, False),
    "publish-after-the-release-before-the-tags": ("publish", "lance_io._mirror_published_tags", 1, False),
    "publish-between-two-tables-cleanups": ("publish", "lance_io.cleanup_table", 2, True),
    # a warehouse published by tags only (before the release log): killed after creating the log
    "first-publish-after-creating-the-log": ("publish", "lance.LanceDataset.commit", 1, False),
}


def _job_argv(job: str, warehouse: str, tmp_path) -> list[str]:
    if job == "recs":
        events = tmp_path / "events.csv"
        events.write_text("user_id,item_id,timestamp\n" + "".join(f"u{u},i{(u + j) % 4},{1_600_000_000 + 60 * j}\n" for u in range(10) for j in range(3)))
        items = tmp_path / "items.csv"
        items.write_text("item_id,title\n" + "".join(f"i{i},Item number {i}\n" for i in range(4)))
        return ["--warehouse", warehouse, "--interactions", str(events), "--items", str(items), "--input-format", "contract"]
    if job == "qa":
        documents = tmp_path / "docs.jsonl"
        documents.write_text("".join(json.dumps({"doc_id": f"d{i}", "question": f"How do I fix {i}?", "answer": f"Restart thing {i}."}) + "\n" for i in range(5)))
        return ["--warehouse", warehouse, "--documents", str(documents), "--input-format", "contract"]
    return ["--warehouse", warehouse]


def _run_killed(job: str, function: str, call: int, after: bool, argv: list[str]) -> subprocess.CompletedProcess:
    module = {"recs": "build_recs", "qa": "build_qa", "publish": "publish"}[job]
    script = textwrap.dedent(
        f"""
        import os, signal
        import lance
        from pipelines import lance_io, {module}
        real, calls = {function}, []
        def killing(*args, **kwargs):
            calls.append(1)
            if len(calls) == {call} and not {after}:
                os.kill(os.getpid(), signal.SIGKILL)
            result = real(*args, **kwargs)
            if len(calls) == {call} and {after}:
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        {function} = killing
        {module}.{"run"}({argv!r})
        """
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)


def _serves(warehouse: str) -> dict[str, int]:
    """Open what is published, as the service does, and answer from it; returns the versions."""
    versions = published_versions(warehouse)
    store = Store(warehouse, FakeEncoder(), versions)
    assert store.answers.answer("how do I restart", 3, "hybrid")
    assert store.recommender.for_user(next(iter(store.recommender._user_index)), 3).items
    return versions


def _new_versions_of_every_table(warehouse: str) -> None:
    """What a finished build leaves: a new, unpublished version of each table (same rows)."""
    for name in publish.ALL_TABLES:
        table = lance.dataset(lance_io.table_uri(warehouse, name)).to_table()
        lance_io.write_table(warehouse, name, table, table.schema.metadata)
    lance_io.create_fts_index(warehouse, "answers")


@pytest.mark.parametrize("case", list(KILLS))
def test_a_job_killed_at_each_stage_loses_nothing_and_a_rerun_succeeds(case, warehouse, tmp_path):
    job, function, call, after = KILLS[case]
    copy = str(tmp_path / "warehouse")
    shutil.copytree(warehouse, copy)
    argv = _job_argv(job, copy, tmp_path)
    if job == "publish":
        _new_versions_of_every_table(copy)
        argv += ["--candidate", register_candidate(copy, ["users", "items"]), "--candidate", register_candidate(copy, ["answers"])]
    candidates = read_candidates(copy)
    if case.startswith("first-publish"):
        shutil.rmtree(lance_io.table_uri(copy, "releases"))  # only the `published` tags say what is published
    before = read_releases(copy).releases
    served = _serves(copy)

    killed = _run_killed(job, function, call, after, argv)

    assert killed.returncode == -9, killed.stderr[-3000:]
    releases = read_releases(copy).releases
    if function.endswith(("_mirror_published_tags", "cleanup_table")):  # killed after the release commit
        assert releases[:-1] == before and releases[-1].tables == lance_io.table_versions(copy, list(publish.ALL_TABLES))
        assert _serves(copy) == releases[-1].tables  # the whole release, never a mix
        if function.endswith("_mirror_published_tags"):
            assert _tags(copy) == before[-1].tables  # the tags lag behind the release...
    else:
        assert releases == before  # nothing published moved...
        assert _serves(copy) == served  # ...and it still serves
    if job != "publish":  # a killed build records no candidate, so nothing of it can be published
        assert read_candidates(copy) == candidates
    if case == "recs-between-its-two-commits":  # and publish's checks would refuse it anyway
        assert "users and items come from different ALS fits" in check_tables(copy, ["users", "items"])
    if case == "qa-before-its-full-text-index":
        assert any("no full-text index" in p for p in check_tables(copy, ["answers"]))
    if job != "publish":  # the rerun of the job
        rerun = (build_recs if job == "recs" else build_qa).run(argv)
        argv = ["--warehouse", copy, "--candidate", rerun.candidate, "--force", "--allow-shrink"]
    result = publish.run(argv)
    assert read_releases(copy).current.tables == result.versions
    assert _serves(copy) == lance_io.table_versions(copy, list(publish.ALL_TABLES)) == _tags(copy)  # ...until the rerun


def _tags(warehouse: str) -> dict[str, int]:
    return {name: int(lance.dataset(lance_io.table_uri(warehouse, name)).tags.get_version("published")) for name in publish.ALL_TABLES}
