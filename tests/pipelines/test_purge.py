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

pytestmark = [pytest.mark.usefixtures("fake_model"), pytest.mark.slow]  # real Beam and Lance, no model; whole builds and publishes


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


def test_purge_rewrites_the_released_users_table_and_removes_every_version_holding_them(tmp_path, capsys):
    from pipelines import publish
    from registry.log import read_releases
    from serving.reload import StoreFollower
    from serving.store import Store
    from tests.conftest import FakeEncoder

    warehouse = tmp_path / "warehouse"
    inputs = write_inputs(tmp_path)
    gone, kept = "forget-me-7f3a9c", "u4"
    with open(inputs["interactions"], "a") as handle:
        handle.write("".join(f"{gone},i{i},{1_600_000_100 + i}\n" for i in range(3)))
    first = build_recs.run(recs_argv(str(warehouse), inputs))
    publish.run(["--warehouse", str(warehouse), "--candidate", first.candidate, "--force"])
    later = build_recs.run(recs_argv(str(warehouse), inputs))  # a candidate built since: it holds them too
    assert _files_holding(warehouse / "users.lance", gone.encode())
    released = read_releases(str(warehouse)).current

    code, out, err = _recqa(capsys, "purge", "users", gone, "--warehouse", str(warehouse))
    assert code == 0, err
    # only the change log's delete of the id (which keeps every build from bringing them back) names them
    assert {Path(p).relative_to(warehouse).parts[0] for p in _files_holding(warehouse, gone.encode())} <= {"changes.lance"}
    assert [(c.op, c.key) for c in read_changes(str(warehouse)).changes if gone in str(c.record or "") + c.key] == [("delete", gone)]
    current = read_releases(str(warehouse)).current
    assert current.action == "purge" and current.number == released.number + 1
    assert {k: v for k, v in current.tables.items() if k != USERS_TABLE} == {k: v for k, v in released.tables.items() if k != USERS_TABLE}
    users = _rows(str(warehouse), USERS_TABLE, current.tables[USERS_TABLE], "user_id")
    assert gone not in users and kept in users and len(users) == 6  # everyone else as released
    assert f"releases [{released.number}]" in out and "published" in out
    assert later.versions[USERS_TABLE] not in {int(v["version"]) for v in lance_io.dataset(str(warehouse), USERS_TABLE).versions()}
    # the service opens the purged release and serves the user as unknown
    store = StoreFollower(str(warehouse), lambda versions: Store(str(warehouse), FakeEncoder(), versions), 60)
    assert store.refresh() and not store.current().recommender.has_user(gone) and store.current().recommender.has_user(kept)


def test_a_build_committing_during_the_purge_stops_it_before_anything_is_published(tmp_path, capsys, monkeypatch):
    import lance

    from pipelines import publish
    from registry.log import read_releases

    warehouse = tmp_path / "warehouse"
    inputs = write_inputs(tmp_path)
    first = build_recs.run(recs_argv(str(warehouse), inputs))
    publish.run(["--warehouse", str(warehouse), "--candidate", first.candidate, "--force"])
    released = read_releases(str(warehouse)).current
    users = lance_io.dataset(str(warehouse), USERS_TABLE)
    other = users.to_table().slice(0, 2)  # what a build-recs overwrite would land: other rows, other row ids
    restore = lance.LanceDataset.restore

    def restore_then_a_build_commits(self, *args, **kwargs):
        restore(self, *args, **kwargs)
        lance.write_dataset(other, self.uri, mode="overwrite")
        monkeypatch.setattr(lance.LanceDataset, "restore", restore)

    monkeypatch.setattr(lance.LanceDataset, "restore", restore_then_a_build_commits)
    code, out, err = _recqa(capsys, "purge", "users", "u3", "--warehouse", str(warehouse))
    assert code != 0 and "run the purge again" in err and "nothing was published" in err
    assert read_releases(str(warehouse)).current == released  # the release still serves its own version
    served = _rows(str(warehouse), USERS_TABLE, released.tables[USERS_TABLE], "user_id")
    assert "u3" in served and len(served) == 6
