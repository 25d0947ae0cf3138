"""The writes' process's own set-up: its priority below the service's and the precision it embeds in."""

from __future__ import annotations

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
