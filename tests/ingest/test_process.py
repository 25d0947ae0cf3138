"""The writes' process's own set-up: its priority below the service's and the precision it embeds in."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ingest import process
from serving.settings import DEFAULT_INGEST_NICE, ServiceSettings

ROOT = Path(__file__).resolve().parents[2]


def thread_niceness(pid: int | str = "self") -> list[int]:
    """The nice value of each thread of process `pid`, sorted (Linux keeps one per thread)."""
    return sorted(os.getpriority(os.PRIO_PROCESS, int(task.name)) for task in Path(f"/proc/{pid}/task").iterdir())

# In a process of its own (a lowered thread cannot be raised again): a thread started at 0
# before, the calling thread at 3, a thread already at 12; then lowered by 5.
_LOWER = textwrap.dedent("""
    import json, os, threading
    from ingest.process import lower_priority
    from tests.ingest.test_process import thread_niceness as niceness

    go = threading.Event()
    def wait(nice=None):
        if nice is not None:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        go.wait()
    threads = [threading.Thread(target=wait), threading.Thread(target=wait, args=(12,))]
    threads[0].start()
    os.setpriority(os.PRIO_PROCESS, 0, 3)
    threads[1].start()
    unchanged = lower_priority(0), niceness()
    lowered = lower_priority(5), niceness()
    go.set()
    print(json.dumps([unchanged, lowered]))
""")


def test_every_thread_is_lowered_from_the_callers_value_and_none_is_raised():
    done = subprocess.run([sys.executable, "-c", _LOWER], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    unchanged, lowered = json.loads(done.stdout)
    # the threads at 0: the one started here and those the imports started (pylance's allocator's)
    assert unchanged[0] == 3 and set(unchanged[1]) == {0, 3, 12}  # by 0: nothing set
    assert lowered[0] == 8 and set(lowered[1]) == {8, 12} and lowered[1].count(12) == 1  # none left at 0; 12 not raised to 8


def test_an_unset_niceness_lowers_bf16_writes_only():
    assert process.write_niceness(None, "bf16") == DEFAULT_INGEST_NICE
    assert process.write_niceness(None, "fp32") == 0  # lowered, fp32 writes fell behind the reads' load
    assert process.write_niceness(4, "fp32") == 4 and process.write_niceness(0, "bf16") == 0


@pytest.mark.parametrize(("variables", "native", "expected"), [
    ({}, True, "bf16"), ({}, False, "fp32"), ({"RECQA_INGEST_PRECISION": "fp32"}, True, "fp32"),
])
def test_the_process_loads_the_model_in_the_writes_precision(monkeypatch, tmp_path, variables, native, expected):
    loaded = []
    monkeypatch.setattr(process, "load_batch_encoder", lambda *args: loaded.append(args) or object())
    monkeypatch.setattr("serving.encoders.native_bf16", lambda: native)
    monkeypatch.setattr(process, "_run", lambda *args: _noop())
    monkeypatch.setattr(process, "lower_priority", lambda by: by)
    monkeypatch.setattr(process.ServiceSettings, "from_env", classmethod(lambda cls: ServiceSettings.model_validate(variables)))
    assert process.main(["--warehouse", str(tmp_path), "--socket", str(tmp_path / "s")]) == 0
    assert [args[3] for args in loaded] == [expected]


async def _noop() -> None:
    return None


class _Endpoints:
    """The routes' logic at the edge: answers held until released, every call recorded."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self.release = asyncio.Event()
        self.closed_after: list[int] = []

    async def respond(self, route: str, body: bytes):
        from starlette.responses import JSONResponse

        from ingest.routes import COMMIT_HEADER, commit_header
        from ingest.writer import Commit, CommitTimings

        self.calls.append(body)
        await self.release.wait()
        commit = Commit.__new__(Commit)  # only what commit_header reads
        object.__setattr__(commit, "version", 7)
        object.__setattr__(commit, "timings", CommitTimings(records=1, queued=0.2, ahead=0.1, append=0.01))
        return JSONResponse({"ok": True}, headers={COMMIT_HEADER: commit_header(commit)})

    def close(self) -> None:
        self.closed_after.append(len(self.calls))


def test_after_stop_a_new_frame_is_refused_unwritten_and_those_in_flight_are_answered_with_a_commits_timings_once(tmp_path):
    """Another worker's frame that arrives while the writer stops is answered 503 and never
    reaches the writer; the frames already in flight are answered; each commit's timings go out
    with its first answer only (BentoML sums /metrics over the workers)."""
    from ingest.frames import frame, read_frame

    async def scenario():
        ingest, stop, socket = _Endpoints(), asyncio.Event(), str(tmp_path / "ingest.sock")
        served = asyncio.create_task(process.serve(ingest, socket, stop))
        while not os.path.exists(socket):
            await asyncio.sleep(0.01)
        one, two = await asyncio.open_unix_connection(socket), await asyncio.open_unix_connection(socket)
        one[1].write(frame({"id": 1, "route": "items"}, b"a"))
        two[1].write(frame({"id": 2, "route": "items"}, b"b"))
        while len(ingest.calls) < 2:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.sleep(0.05)
        two[1].write(frame({"id": 3, "route": "items"}, b"late"))
        late = await asyncio.wait_for(read_frame(two[0]), 5)  # answered before the held ones
        ingest.release.set()
        first, second = await asyncio.wait_for(read_frame(one[0]), 5), await asyncio.wait_for(read_frame(two[0]), 5)
        await asyncio.wait_for(served, 10)
        return ingest, late, first, second

    ingest, late, first, second = asyncio.run(scenario())
    assert late[0]["id"] == 3 and late[0]["status"] == 503 and b"stopping" in late[1]
    assert ingest.calls == [b"a", b"b"]  # the late frame never reached the writer
    assert ingest.closed_after == [2]  # closed once, after the frames in flight
    assert first[0]["status"] == second[0]["status"] == 200
    assert [head["commit"] is not None for head in (first[0], second[0])].count(True) == 1  # one commit, its timings once
