"""Builds apply the change log: upserts replace the files' rows, deletes drop them, logged events count.

Real Beam and real Lance on small contract files; the encoder is a stand-in (no model).
"""

from __future__ import annotations

import json

import lance
import pytest

from features.changes import ANSWERS, EVENTS, ITEMS, META_CHANGES, USERS, parse_deletes, parse_records
from features.schemas import ANSWERS_TABLE, ITEMS_TABLE, USERS_TABLE
from pipelines import build_qa, build_recs, lance_io
from registry.log import read_candidates, read_changes

ALS_FLAGS = ["--factors", "4", "--iterations", "2"]


pytestmark = [pytest.mark.usefixtures("fake_model"), pytest.mark.slow]  # whole builds over a change log


def write_inputs(folder) -> dict[str, str]:
    """Six users on four items, four FAQ documents: files the change log then contradicts."""
    events = folder / "events.csv"
    events.write_text("user_id,item_id,timestamp\n"
                      + "".join(f"u{u},i{(u + j) % 4},{1_600_000_000 + 60 * j}\n" for u in range(6) for j in range(3)))
    items = folder / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"i{i},Item number {i}\n" for i in range(4)))
    documents = folder / "documents.jsonl"
    documents.write_text("".join(json.dumps({"doc_id": f"d{d}", "question": f"Question {d}?", "answer": f"Answer number {d}."}) + "\n"
                                 for d in range(4)))
    return {"interactions": str(events), "items": str(items), "documents": str(documents)}


def log_changes(warehouse: str) -> int:
    """Upsert, delete and log events as the write API would; returns the log version."""
    changes = []
    for kind, records in (
        (ITEMS, [{"item_id": "i1", "title": "Renamed item one"}, {"item_id": "i9", "title": "A brand new item"}]),
        (ANSWERS, [{"doc_id": "d1", "answer": "A rewritten answer one."}, {"doc_id": "d9", "answer": "A brand new answer."}]),
        (EVENTS, [{"user_id": "newcomer", "item_id": "i9", "timestamp": 1_600_000_500},
                  {"user_id": "newcomer", "item_id": "i0", "timestamp": 1_600_000_600}]),
    ):
        parsed, rejected = parse_records(kind, records)
        assert not rejected
        changes += parsed
    for kind, ids in ((ITEMS, ["i2"]), (ANSWERS, ["d2"]), (USERS, ["u3"])):
        changes += parse_deletes(kind, ids)[0]
    return lance_io.append_changes(warehouse, changes)


def recs_argv(warehouse: str, inputs: dict[str, str]) -> list[str]:
    return ["--warehouse", warehouse, "--interactions", inputs["interactions"], "--items", inputs["items"],
            "--input-format", "contract", *ALS_FLAGS]


def qa_argv(warehouse: str, inputs: dict[str, str]) -> list[str]:
    return ["--warehouse", warehouse, "--documents", inputs["documents"], "--input-format", "contract"]


def _rows(warehouse: str, name: str, version: int, key: str) -> dict[str, dict]:
    ds = lance.dataset(f"{warehouse}/{name}.lance", version=version)
    return {row[key]: row for row in ds.to_table().to_pylist()}


def _metadata(warehouse: str, name: str, version: int) -> dict[bytes, bytes]:
    return lance.dataset(f"{warehouse}/{name}.lance", version=version).schema.metadata


def test_the_builds_apply_the_log_over_their_files(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    inputs = write_inputs(tmp_path)
    version = log_changes(warehouse)
    recs = build_recs.run(recs_argv(warehouse, inputs))
    qa = build_qa.run(qa_argv(warehouse, inputs))

    items = _rows(warehouse, ITEMS_TABLE, recs.versions[ITEMS_TABLE], "item_id")
    assert set(items) == {"i0", "i1", "i3", "i9"} and items["i1"]["title"] == "Renamed item one"
    users = _rows(warehouse, USERS_TABLE, recs.versions[USERS_TABLE], "user_id")
    assert "u3" not in users and "newcomer" in users  # forgotten, and a user known only from logged events
    assert set(users["newcomer"]["seen_item_ids"]) == {"i9", "i0"}
    assert all("i2" not in row["seen_item_ids"] for row in users.values())  # events on a deleted item no longer count
    answers = _rows(warehouse, ANSWERS_TABLE, qa.versions[ANSWERS_TABLE], "doc_id")
    assert set(answers) == {"d0", "d1", "d3", "d9"} and answers["d1"]["answer"] == "A rewritten answer one."

    for name, job in ((USERS_TABLE, recs), (ITEMS_TABLE, recs), (ANSWERS_TABLE, qa)):  # indexes included: the last version
        assert _metadata(warehouse, name, job.versions[name])[META_CHANGES] == str(version).encode()
    candidates = {c.id: c for c in read_candidates(warehouse)}
    for job in (recs, qa):
        candidate = candidates[job.candidate]
        assert candidate.config["changes_version"] == version
        assert candidate.inputs["changes"]["version"] == version and candidate.inputs["changes"]["rows"] == 9
    # the files' own counts stay the files': replaced rows are counted beside them
    assert candidates[recs.candidate].inputs["items"]["rows"] == 4
    interactions = next(line.split() for line in recs.stages.splitlines() if line.split()[:1] == ["interactions"])
    assert interactions[1:4] == ["18", "0", "0"]  # dropped and logged events are not taken for duplicates


def test_with_no_log_a_build_records_version_zero_and_nothing_else_changes(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    inputs = write_inputs(tmp_path)
    qa = build_qa.run(qa_argv(warehouse, inputs))
    assert read_changes(warehouse).version == 0
    assert _metadata(warehouse, ANSWERS_TABLE, qa.versions[ANSWERS_TABLE])[META_CHANGES] == b"0"
    (candidate,) = read_candidates(warehouse)
    assert candidate.config["changes_version"] == 0 and set(candidate.inputs) == {"documents"}
    assert set(_rows(warehouse, ANSWERS_TABLE, qa.versions[ANSWERS_TABLE], "doc_id")) == {"d0", "d1", "d2", "d3"}


def test_a_build_applies_the_snapshot_it_was_given_not_later_changes(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    inputs = write_inputs(tmp_path)
    first = log_changes(warehouse)
    snapshot = read_changes(warehouse)
    later = lance_io.append_changes(warehouse, parse_deletes(ANSWERS, ["d0"])[0])  # acknowledged after the build read the log
    built = build_qa.run(qa_argv(warehouse, inputs), changes=snapshot)
    assert "d0" in _rows(warehouse, ANSWERS_TABLE, built.versions[ANSWERS_TABLE], "doc_id")
    assert _metadata(warehouse, ANSWERS_TABLE, built.versions[ANSWERS_TABLE])[META_CHANGES] == str(first).encode()
    following = build_qa.run(qa_argv(warehouse, inputs))  # the next build applies it
    assert "d0" not in _rows(warehouse, ANSWERS_TABLE, following.versions[ANSWERS_TABLE], "doc_id")
    assert _metadata(warehouse, ANSWERS_TABLE, following.versions[ANSWERS_TABLE])[META_CHANGES] == str(later).encode()


def test_a_change_acknowledged_while_a_build_runs_is_the_next_builds(tmp_path, monkeypatch):
    warehouse = str(tmp_path / "warehouse")
    inputs = write_inputs(tmp_path)
    before = log_changes(warehouse)
    commit = build_qa._commit

    def append_then_commit(*args, **kwargs):  # the pipeline is running: the build read the log long ago
        lance_io.append_changes(warehouse, parse_deletes(ANSWERS, ["d0"])[0])
        return commit(*args, **kwargs)

    monkeypatch.setattr(build_qa, "_commit", append_then_commit)
    built = build_qa.run(qa_argv(warehouse, inputs))
    during = read_changes(warehouse)
    assert during.version > before and during.changes[-1].key == "d0"  # acknowledged while the build ran
    assert "d0" in _rows(warehouse, ANSWERS_TABLE, built.versions[ANSWERS_TABLE], "doc_id")
    assert _metadata(warehouse, ANSWERS_TABLE, built.versions[ANSWERS_TABLE])[META_CHANGES] == str(before).encode()
    monkeypatch.setattr(build_qa, "_commit", commit)
    following = build_qa.run(qa_argv(warehouse, inputs))
    assert "d0" not in _rows(warehouse, ANSWERS_TABLE, following.versions[ANSWERS_TABLE], "doc_id")
    assert _metadata(warehouse, ANSWERS_TABLE, following.versions[ANSWERS_TABLE])[META_CHANGES] == str(during.version).encode()


def test_a_builds_snapshot_stays_readable_until_no_retained_release_or_newer_candidate_needs_it(tmp_path):
    import lance

    from features.changes import CHANGES_TABLE
    from features.schemas import table_uri
    from pipelines import publish

    warehouse = str(tmp_path / "warehouse")
    inputs = write_inputs(tmp_path)
    snapshot = log_changes(warehouse)
    first = build_qa.run(qa_argv(warehouse, inputs))
    tags = lance.dataset(table_uri(warehouse, CHANGES_TABLE)).tags.list()
    assert tags[f"{lance_io.SNAPSHOT_TAG_PREFIX}{first.candidate}"]["version"] == snapshot
    for n in range(3):  # more writes, each a version; the next build's snapshot is the last
        lance_io.append_changes(warehouse, parse_deletes(ANSWERS, [f"gone{n}"])[0])
    second = build_qa.run(qa_argv(warehouse, inputs))
    publish.run(["--warehouse", warehouse, "--candidate", second.candidate, "--force", "--retain-releases", "1"])
    tags = lance.dataset(table_uri(warehouse, CHANGES_TABLE)).tags.list()
    # the first candidate is older than every retained release and served by none: its snapshot goes
    assert set(tags) == {f"{lance_io.SNAPSHOT_TAG_PREFIX}{second.candidate}"}
    lance_io.compact_changes(warehouse, keep_seconds=0)
    kept = {v["version"] for v in lance.dataset(table_uri(warehouse, CHANGES_TABLE)).versions()}
    assert snapshot not in kept and tags[f"{lance_io.SNAPSHOT_TAG_PREFIX}{second.candidate}"]["version"] in kept
