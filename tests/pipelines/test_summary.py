"""The end-of-run summary of a real build: stages in pipeline order, and where the rejects went."""

from __future__ import annotations

import json

import pytest

from pipelines import build_qa, build_recs
from pipelines.summary import StageRow, format_table
pytestmark = pytest.mark.usefixtures("fake_model")


def _recs_inputs(tmp_path, bad_rows: int) -> list[str]:
    events = tmp_path / "events.csv"
    good = [f"u{u},i{(u + j) % 4},{1_600_000_000 + 60 * j}" for u in range(10) for j in range(3)]
    events.write_text("user_id,item_id,timestamp\n" + "\n".join(good + [f",i1,{1_600_000_000}"] * bad_rows) + "\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"i{i},Item number {i}\n" for i in range(4)))
    return ["--interactions", str(events), "--items", str(items), "--input-format", "contract"]


def _stages(table: str) -> list[str]:
    return [line.split()[0] for line in table.splitlines()[1:] if line.strip() and not line.strip().startswith(("rejects", "no rejects"))]


def test_a_build_lists_its_stages_in_pipeline_order_and_says_where_its_rejects_went(tmp_path):
    rejects = tmp_path / "rejects"
    result = build_recs.run(["--warehouse", str(tmp_path / "wh"), "--max-reject-fraction", "0.1", "--rejects", str(rejects),
                             *_recs_inputs(tmp_path, bad_rows=2)])
    assert _stages(result.stages) == ["interactions", "items", "als", "encode-items", "write-items", "write-users"]
    written = rejects / "interactions.jsonl"
    assert len(written.read_text().splitlines()) == 2
    assert result.stages.splitlines()[-1].strip() == f"rejects: 2 interactions rows in {written}"


def test_a_build_without_rejects_says_so(tmp_path):
    documents = tmp_path / "docs.jsonl"
    documents.write_text("".join(json.dumps({"doc_id": f"d{i}", "question": f"How do I fix {i}?", "answer": f"Restart {i}."}) + "\n"
                                 for i in range(5)))
    result = build_qa.run(["--warehouse", str(tmp_path / "wh"), "--documents", str(documents), "--input-format", "contract",
                           "--rejects", str(tmp_path / "rejects")])
    assert _stages(result.stages) == ["documents", "encode-answers", "write-answers"]
    assert result.stages.splitlines()[-1].strip() == "no rejects"
    assert not (tmp_path / "rejects").exists()


def test_stages_are_ordered_as_the_pipeline_runs_them_not_by_name():
    rows = [StageRow(name, {"written": 1}, 0.0) for name in ("write-users", "encode-items", "als", "items", "interactions", "write-items")]
    lines = format_table(rows).splitlines()[1:]
    assert [line.split()[0] for line in lines[:-1]] == ["interactions", "items", "als", "encode-items", "write-items", "write-users"]
