"""Whole runs of build-recs: the reject threshold, deduplication, and a run killed before its commit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from features.errors import InputError
from pipelines import build_recs, lance_io, publish
from registry.log import published_version

pytestmark = [pytest.mark.usefixtures("fake_model"), pytest.mark.slow]  # real Beam and Lance, no model; whole runs, one killed


@pytest.fixture
def published(fake_warehouse, tmp_path):
    """A private copy of the session warehouse, published, that a test may break."""
    copy = tmp_path / "warehouse"
    shutil.copytree(fake_warehouse, copy)
    return copy


def _state(path) -> dict:
    return {name: (lance_io.table_versions(str(path), [name])[name], published_version(str(path), name)) for name in ("users", "items")}


def _inputs(tmp_path, bad_rows: int, duplicates: int = 0):
    events = tmp_path / "events.csv"
    good = [f"u{u},i{(u + j) % 4},{1_600_000_000 + 60 * j},view" for u in range(10) for j in range(3)]
    bad = [f",i1,{1_600_000_000},view" for _ in range(bad_rows)]  # missing user_id
    events.write_text("user_id,item_id,timestamp,event\n" + "\n".join(good + good[:duplicates] + bad) + "\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"i{i},Item number {i}\n" for i in range(4)))
    return ["--interactions", str(events), "--items", str(items), "--input-format", "contract"]


def test_too_many_rejects_fail_the_run_and_publish_nothing(published, tmp_path):
    before = _state(published)
    rejects = tmp_path / "rejects"
    with pytest.raises(InputError, match=r"1 of 31 interactions rows rejected \(3.23%\), above the limit of 1.00%"):
        build_recs.run(["--warehouse", str(published), "--rejects", str(rejects), *_inputs(tmp_path, bad_rows=1)])
    assert _state(published) == before
    (reject,) = [json.loads(line) for line in (rejects / "interactions.jsonl").read_text().splitlines()]
    assert reject["line"] == 32 and "user_id" in reject["reason"] and reject["file"].endswith("events.csv")


def test_a_higher_threshold_lets_the_run_through_and_duplicates_are_counted(published, tmp_path):
    before = _state(published)
    result = build_recs.run(
        ["--warehouse", str(published), "--max-reject-fraction", "0.05", "--rejects", str(tmp_path / "r"), *_inputs(tmp_path, bad_rows=1, duplicates=4)]
    )
    assert result.rows == {"users": 10, "items": 4}
    assert result.versions["users"] > before["users"][0] and result.versions["items"] > before["items"][0]
    assert _state(published)["users"][1] == before["users"][1]  # built, not yet published
    line = next(line for line in result.stages.splitlines() if line.strip().startswith("interactions"))
    assert line.split()[1:4] == ["35", "1", "4"]  # read, rejected, duplicates


def test_a_run_killed_before_its_commit_changes_nothing_and_a_rerun_succeeds(published, tmp_path):
    before = _state(published)
    args = ["--warehouse", str(published), "--rejects", str(tmp_path / "r"), *_inputs(tmp_path, bad_rows=0)]
    script = textwrap.dedent(
        f"""
        import os, signal
        from pipelines import build_recs, lance_io
        from pipelines.transforms import encode
        from tests.conftest import LoadedFakeEncoder
        encode.SentenceTransformerEncoder = LoadedFakeEncoder  # no model: the kill is what is tested
        lance_io.commit_fragments = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        build_recs.run({args!r})
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert any((published / "users.lance" / "data").iterdir())  # fragments were written...
    assert _state(published) == before  # ...but no version refers to them
    result = build_recs.run(args)
    assert result.rows["users"] == 10
    publish.run(["--warehouse", str(published), "--candidate", result.candidate, "--force", "--allow-shrink"])
    assert _state(published)["users"][1] == result.versions["users"]


def test_a_config_file_sets_defaults_flags_win_and_mistakes_are_named(tmp_path):
    from pipelines.options import tuned_record

    tuned = tmp_path / "tuned.json"
    tuned.write_text(json.dumps({"kind": "recs", "config": {"factors": 48, "alpha": 9.0}, "split": {"kind": "temporal", "last_n": 1}}))
    args, _ = build_recs.parse_args(["--config", str(tuned), "--alpha", "3"])
    assert args.factors == 48 and args.alpha == 3.0
    record = tuned_record(args)
    assert record["config"] == {"factors": 48, "alpha": 9.0} and record["overridden"] == {"alpha": 3.0} and record["split"]["last_n"] == 1
    for content, message in (({"kind": "qa", "config": {}}, "configures qa, not recs"), ({"kind": "recs"}, "no 'config' object"),
                             ({"kind": "recs", "config": {"factorz": 8}}, r"unknown settings \['factorz'\]")):
        tuned.write_text(json.dumps(content))
        with pytest.raises(InputError, match=message):
            build_recs.parse_args(["--config", str(tuned)])
