"""Where a server's workers meet their one writer: a private folder per server and warehouse,
and the lock that lets one process write (real flock(2) across real processes)."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ingest import process
from ingest.rendezvous import LOCK_HELD, FolderRefused, alive, server_folder, take_lock, writer_running

ROOT = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_one_folder_per_server_and_warehouse_private_and_those_of_exited_servers_removed(tmp_path):
    first = server_folder("/data/w1", 4242, base=str(tmp_path))
    assert server_folder("/data/w1", 4242, base=str(tmp_path)) == first  # every worker of server 4242 finds the same
    assert server_folder("/data/w2", 4242, base=str(tmp_path)) != first  # another warehouse's writes stay apart
    root = Path(first).parent
    assert root.name == f"recqa-ingest-{os.getuid()}" and stat.S_IMODE(root.stat().st_mode) == 0o700

    gone = root / f"{_dead_pid()}-0123456789abcdef"
    gone.mkdir()
    (gone / "writer.lock").touch()
    alive = root / f"{os.getpid()}-0123456789abcdef"
    alive.mkdir()
    finishing = root / f"{_dead_pid()}-fedcba9876543210"  # its server gone, its writer still committing
    finishing.mkdir()
    held = take_lock(str(finishing))
    try:
        server_folder("/data/w1", 4243, base=str(tmp_path))
        assert not gone.exists() and alive.exists()  # an exited server's folder is removed, a running one's kept
        assert finishing.exists()  # a held lock keeps it: removing it would let a second writer in
    finally:
        os.close(held)


def test_a_zombie_is_not_alive():
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":  # exited, not reaped
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not alive(child.pid) and alive(os.getpid())
    child.wait()
    assert not alive(child.pid)


def test_a_folder_others_can_open_is_refused_with_the_fix(tmp_path):
    root = tmp_path / f"recqa-ingest-{os.getuid()}"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    with pytest.raises(FolderRefused, match=rf"{root} must be a folder of user {os.getuid()} .*0700.*TMPDIR"):
        server_folder("/data/w1", 1, base=str(tmp_path))


_HOLD = textwrap.dedent("""
    import sys, time
    from ingest.rendezvous import take_lock
    held = take_lock(sys.argv[1])
    print("held" if held is not None else "refused", flush=True)
    time.sleep(600)
""")


def test_one_process_holds_the_lock_and_it_is_free_again_once_that_process_is_killed(tmp_path):
    folder = str(tmp_path)
    assert not writer_running(folder)  # the probe takes and gives back the lock
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, folder], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert writer_running(folder) and take_lock(folder) is None
        second = subprocess.Popen([sys.executable, "-c", _HOLD, folder], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert second.stdout.readline().strip() == "refused"
        second.kill()
        second.wait()
        holder.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel drops the lock with the process
        holder.wait(10)
        assert not writer_running(folder)
        mine = take_lock(folder)
        assert mine is not None
        os.close(mine)
    finally:
        holder.kill()


def test_the_ingest_process_leaves_the_writes_to_the_one_holding_the_lock_without_loading_a_model(tmp_path, monkeypatch):
    held = take_lock(str(tmp_path))
    assert held is not None
    monkeypatch.setattr(process, "load_batch_encoder", lambda *args: pytest.fail("loaded a model it will not use"))
    try:
        assert process.main(["--warehouse", str(tmp_path / "w"), "--socket", str(tmp_path / "ingest.sock")]) == LOCK_HELD
    finally:
        os.close(held)


def _write(ingest) -> "object":
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    with TestClient(Starlette(routes=ingest.routes())) as client:
        return client.post("/ingest/items", json={"items": [{"item_id": "i", "title": "t"}]})


def test_a_folder_others_can_open_makes_each_write_a_503_naming_the_fix_and_starts_nothing(tmp_path, monkeypatch):
    from ingest.forward import IngestProcess

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # what TMPDIR sets
    (tmp_path / f"recqa-ingest-{os.getuid()}").mkdir(mode=0o755)
    os.chmod(tmp_path / f"recqa-ingest-{os.getuid()}", 0o755)
    ingest = IngestProcess(lambda: str(tmp_path / "w"))
    answer = _write(ingest)
    assert answer.status_code == 503 and "not written" in answer.text and "TMPDIR" in answer.text
    assert ingest._process is None


def test_a_socket_path_too_long_for_unix_sockets_is_a_503_naming_the_fix(tmp_path, monkeypatch):
    from ingest.forward import IngestProcess

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    answer = _write(IngestProcess(lambda: str(tmp_path / "w")))
    assert answer.status_code == 503 and "not written" in answer.text and "shorter folder" in answer.text


def test_an_orphaned_worker_starts_no_writer_that_would_watch_the_wrong_server(monkeypatch):
    """A worker whose arbiter was killed sees init as its parent: a writer it started would
    never stop. It answers 503 instead."""
    from ingest.forward import IngestProcess

    short = tempfile.mkdtemp(prefix="recqa-t-", dir="/tmp")  # pytest's tmp_path is too long for a socket path
    monkeypatch.setattr(tempfile, "tempdir", short)
    parents = iter([os.getpid(), 1])  # the server when the folder was made, then init
    try:
        ingest = IngestProcess(lambda: os.path.join(short, "w"), lambda: next(parents))
        assert ingest.folder  # made for this process as the server
        answer = _write(ingest)
        assert answer.status_code == 503 and f"pid {os.getpid()}" in answer.text and "gone" in answer.text
        assert ingest._process is None
    finally:
        shutil.rmtree(short, ignore_errors=True)
