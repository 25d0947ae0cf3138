"""`recqa purge users`: a user's events gone from every file of the change log and from _rejects/."""

from __future__ import annotations

import pytest

from pathlib import Path

from features.changes import EVENTS, fold, parse_records
from features.schemas import USERS_TABLE
from pipelines import build_recs, lance_io
from registry.log import read_changes
from tests.pipelines.test_build_changes import _rows, recs_argv, write_inputs
from tests.pipelines.test_ingest import _recqa

pytestmark = pytest.mark.usefixtures("fake_model")  # real Beam and Lance, no model


def _files_holding(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_purge_removes_a_users_events_from_every_file_and_no_build_brings_them_back(tmp_path, capsys):
    warehouse = tmp_path / "warehouse"
    inputs = write_inputs(tmp_path)
    with open(inputs["interactions"], "a") as handle:
        handle.write("u3,i1,not-a-time\n")  # a rejected row of theirs, written under _rejects/
    events, _ = parse_records(EVENTS, [{"user_id": "u3", "item_id": "only-u3-bought-this", "timestamp": 1_600_000_900},
                                       {"user_id": "u4", "item_id": "i1", "timestamp": 1_600_000_900}])
    lance_io.append_changes(str(warehouse), events)
    built = build_recs.run([*recs_argv(str(warehouse), inputs), "--max-reject-fraction", "0.1"])
    assert "u3" in _rows(str(warehouse), USERS_TABLE, built.versions[USERS_TABLE], "user_id")
    assert _files_holding(warehouse / "_rejects", b'"u3"') and _files_holding(warehouse / "changes.lance", b"only-u3-bought-this")

    code, out, err = _recqa(capsys, "purge", "users", "u3", "--warehouse", str(warehouse))
    assert code == 0, err
    assert "1 logged event(s) removed" in out and "1 rejected row(s)" in out
    assert f"users table versions [{built.versions[USERS_TABLE]}]" in out  # what purge leaves, said
    assert not _files_holding(warehouse / "changes.lance", b"only-u3-bought-this")  # old versions included
    assert not _files_holding(warehouse / "_rejects", b'"u3"')
    folded = fold(read_changes(str(warehouse)).changes)
    assert folded.forgotten == {"u3"} and [e.user_id for e in folded.events] == ["u4"]  # others' writes kept

    again = build_recs.run([*recs_argv(str(warehouse), inputs), "--max-reject-fraction", "0.1"])
    assert "u3" not in _rows(str(warehouse), USERS_TABLE, again.versions[USERS_TABLE], "user_id")
