"""`recqa validate`: a build's inputs read and parsed as the build would, without a Beam run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from features.errors import InputError
from pipelines import validate
from tests.conftest import MS_CATALOG, MS_USAGE, STACKFAQ

RECQA = str(Path(sys.executable).with_name("recqa"))
GOOD = '{"user_id": "u%d", "item_id": "i1", "timestamp": 1}'


def _events(tmp_path: Path, good: int, bad_lines: list[str]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([GOOD % n for n in range(good)] + bad_lines) + "\n")
    (tmp_path / "items.csv").write_text("item_id,title\ni1,Case\n")
    return path


def test_bundled_recs_inputs_count_every_row_the_csv_module_reads(usage_rows):
    result = validate.run(["recs", "--interactions", str(MS_USAGE), "--items", str(MS_CATALOG)])
    counts = {c.kind: (c.valid, c.rejected) for c in result.inputs}
    catalogue_rows = len(MS_CATALOG.read_text().strip().splitlines())
    assert counts == {"interactions": (len(usage_rows), 0), "items": (catalogue_rows, 0)}


def test_bundled_qa_documents_all_parse(stackfaq_data):
    (counts,) = validate.run(["qa", "--documents", str(STACKFAQ)]).inputs
    assert counts.kind == "documents" and counts.rejected == 0 and counts.valid > 0


def test_too_many_bad_rows_fail_naming_the_file_line_and_field(tmp_path):
    events = _events(tmp_path, 3, ['{"item_id": "i1", "timestamp": 1}'])  # line 4: no user_id
    argv = ["recs", "--input-format", "contract", "--interactions", str(events), "--items", str(tmp_path / "items.csv")]
    with pytest.raises(InputError, match=r"1 of 4 interactions rows rejected .*events.jsonl:4: field 'user_id'"):
        validate.run(argv)


def test_bad_rows_under_the_limit_pass_and_are_counted(tmp_path):
    events = _events(tmp_path, 3, ['{"user_id": "u9", "item_id": "i1", "timestamp": "soon"}'])
    argv = ["recs", "--input-format", "contract", "--interactions", str(events), "--items", str(tmp_path / "items.csv"),
            "--max-reject-fraction", "0.5"]
    counts = {c.kind: c for c in validate.run(argv).inputs}
    assert (counts["interactions"].valid, counts["interactions"].rejected) == (3, 1)
    assert counts["interactions"].sample[0]["line"] == 4 and "timestamp" in counts["interactions"].sample[0]["reason"]


def test_the_builds_input_flags_apply(tmp_path):
    """--map and --timestamp-format mean what they mean to build-recs."""
    events = tmp_path / "ratings.jsonl"
    events.write_text(json.dumps({"userId": "u1", "movieId": "i1", "ts": "09.06.2015 19:39"}) + "\n")
    (tmp_path / "items.csv").write_text("movieId,title\ni1,Case\n")
    argv = ["recs", "--input-format", "contract", "--interactions", str(events), "--items", str(tmp_path / "items.csv"),
            "--map", "user_id=userId", "--map", "item_id=movieId", "--map", "timestamp=ts"]
    with pytest.raises(InputError, match="timestamp"):
        validate.run(argv)  # the auto format cannot read this timestamp
    counts = validate.run([*argv, "--timestamp-format", "%d.%m.%Y %H:%M"]).inputs
    assert [(c.valid, c.rejected) for c in counts] == [(1, 0), (1, 0)]


def test_unknown_kind_is_refused():
    with pytest.raises(InputError, match=r"expected one of \['qa', 'recs'\]"):
        validate.run(["users"])


def test_cli_help_shows_the_builds_input_flags():
    result = subprocess.run([RECQA, "validate", "recs", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "recqa validate recs" in result.stdout and "--interactions" in result.stdout
    usage = subprocess.run([RECQA, "validate", "--help"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 0 and "recqa validate {recs,qa}" in usage.stdout


def test_cli_exit_codes_and_messages(tmp_path):
    ok = subprocess.run([RECQA, "validate", "qa", "--documents", str(STACKFAQ)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "recqa validate: checked" in ok.stdout and "documents" in ok.stdout
    missing = subprocess.run([RECQA, "validate", "recs", "--interactions", str(tmp_path / "none.csv")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1
    assert "none.csv' matches no file" in missing.stderr


def test_the_summary_shows_up_to_three_rejected_rows_even_within_the_limit(tmp_path):
    bad = ['{"user_id": "u9", "item_id": "i1", "timestamp": "soon"}'] * 4 + ['{"item_id": "i1", "timestamp": 1}']
    events = _events(tmp_path, 200, bad)
    argv = ["recs", "--input-format", "contract", "--interactions", str(events), "--items", str(tmp_path / "items.csv"),
            "--max-reject-fraction", "0.05"]
    summary = validate.run(argv).summary()
    examples = [line.strip() for line in summary.splitlines() if line.strip().startswith("e.g.")]
    assert len(examples) == 3
    assert examples[0].startswith(f"e.g. {events}:201: field 'timestamp': ") and "'soon'" in examples[0]
    assert [e.split(": ", 1)[0] for e in examples] == [f"e.g. {events}:{n}" for n in (201, 202, 203)]


@pytest.mark.parametrize(
    ("bad_line", "flags", "hint"),
    [
        ('{"user_id": "u9", "item_id": "i1", "timestamp": "09.06.2015 19:39"}', [], "--timestamp-format"),
        ('{"user_id": "u9", "item_id": "i1", "timestamp": 1, "event": "teleport"}', [], "--event-weight EVENT=WEIGHT"),
        ('{"user_id": "u9", "item_id": "i1", "timestamp": 1}', ["--max-text-chars", "5"], "--max-text-chars"),
    ],
)
def test_too_many_rejects_name_the_flag_that_may_fix_them(tmp_path, bad_line, flags, hint):
    events = _events(tmp_path, 3, [bad_line])
    if "--max-text-chars" in flags:  # the catalogue's title is what is too long
        (tmp_path / "items.csv").write_text("item_id,title\ni1,Case\ni2,A long title\n")
    argv = ["recs", "--input-format", "contract", "--interactions", str(events), "--items", str(tmp_path / "items.csv"), *flags]
    with pytest.raises(InputError) as raised:
        validate.run(argv)
    hints = [line.strip() for line in str(raised.value).splitlines()[1:]]
    assert any(hint in line for line in hints), hints
    assert hints[-1] == "hint: to accept more rejected rows, raise --max-reject-fraction (now 0.01)"
    assert sum(line.startswith("hint:") for line in hints) == 2  # only the hint that fits, and the threshold's


def test_events_and_catalogue_keyed_differently_each_take_their_own_mapping(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("Customer,Product,When\nc1,p1,1\nc2,p2,2\n")
    items = tmp_path / "items.csv"
    items.write_text("sku,Name\np1,Case\np2,Sleeve\n")
    argv = ["recs", "--input-format", "contract", "--interactions", str(events), "--items", str(items),
            "--map", "item_id=sku", "--map-interactions", "item_id=Product", "--map-interactions", "user_id=Customer",
            "--map-interactions", "timestamp=When", "--map-items", "title=Name"]
    counts = {c.kind: (c.valid, c.rejected) for c in validate.run(argv).inputs}
    assert counts == {"interactions": (2, 0), "items": (2, 0)}
    with pytest.raises(InputError, match=r"items.csv: no column 'Nme' for title \(columns: sku, Name\); did you mean 'Name'\?; set --map-items title=COLUMN"):
        validate.run([*argv, "--map-items", "title=Nme"])
