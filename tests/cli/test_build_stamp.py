"""`make run` skips the build only when the data, code and settings are unchanged and what
that build published is still the published release."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from cli import build_stamp
from features.schemas import ANSWERS_TABLE
from pipelines import lance_io
from registry.log import read_releases

SETTINGS = {"TRIALS": "30"}


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "features").mkdir()
    (root / "data" / "events.csv").write_text("user,item\nu1,i1\n")
    (root / "features" / "model.py").write_text("ALPHA = 1\n")
    return root


def _publish(warehouse: str, rows: int) -> int:
    version = lance_io.write_table(warehouse, ANSWERS_TABLE, pa.table({"doc_id": [str(i) for i in range(rows)]}))
    lance_io.publish_release(warehouse, read_releases(warehouse), {ANSWERS_TABLE: version}, retain_releases=5)
    return version


@pytest.fixture
def built(project, tmp_path) -> tuple[Path, str, Path]:
    """A project whose build published a release and left its stamp."""
    warehouse = str(tmp_path / "warehouse")
    _publish(warehouse, 2)
    stamp = tmp_path / "reports" / ".build-stamp.json"
    build_stamp.write(stamp, warehouse, SETTINGS, root=project)
    return project, warehouse, stamp


def test_unchanged_inputs_and_release_skip_the_build(built):
    project, warehouse, stamp = built
    assert "unchanged" in build_stamp.is_up_to_date(stamp, warehouse, SETTINGS, root=project)


@pytest.mark.parametrize("changed", ["data/events.csv", "features/model.py", "features/new.py"])
def test_a_changed_or_new_input_file_rebuilds(built, changed):
    project, warehouse, stamp = built
    (project / changed).write_text("something else\n")
    assert build_stamp.is_up_to_date(stamp, warehouse, SETTINGS, root=project) is None


def test_changed_settings_rebuild(built):
    project, warehouse, stamp = built
    assert build_stamp.is_up_to_date(stamp, warehouse, {"TRIALS": "5"}, root=project) is None


def test_a_later_publish_or_rollback_rebuilds(built):
    project, warehouse, stamp = built
    _publish(warehouse, 3)
    assert build_stamp.is_up_to_date(stamp, warehouse, SETTINGS, root=project) is None
    lance_io.rollback_release(warehouse)  # back to what the build published
    assert build_stamp.is_up_to_date(stamp, warehouse, SETTINGS, root=project) is not None


def test_an_emptied_warehouse_or_a_missing_stamp_rebuilds(built, tmp_path):
    project, warehouse, stamp = built
    assert build_stamp.is_up_to_date(stamp, str(tmp_path / "elsewhere"), SETTINGS, root=project) is None
    stamp.unlink()
    assert build_stamp.is_up_to_date(stamp, warehouse, SETTINGS, root=project) is None


def test_no_stamp_is_written_when_nothing_was_published(project, tmp_path):
    with pytest.raises(ValueError, match="nothing is published"):
        build_stamp.write(tmp_path / "stamp.json", str(tmp_path / "warehouse"), SETTINGS, root=project)


def test_the_command_exits_zero_only_when_the_build_can_be_skipped(built, capsys):
    _, warehouse, stamp = built  # the command hashes the real project
    argv = ["check", "--stamp", str(stamp), "--warehouse", warehouse]
    # the stamp was written with the fixture's settings; the command adds WAREHOUSE to them
    assert build_stamp.main(argv) == 1
    assert build_stamp.main(["write", "--stamp", str(stamp), "--warehouse", warehouse, "--setting", "TRIALS=30"]) == 0
    assert build_stamp.main([*argv, "--setting", "TRIALS=30"]) == 0
    assert "make build skipped" in capsys.readouterr().out
