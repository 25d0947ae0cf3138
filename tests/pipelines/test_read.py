"""Reading inputs with the real local Beam runner: formats, column mapping, every reject reason."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from features.adapters import ParseOptions
from features.errors import InputError
from features.schemas import Interaction
from pipelines.transforms import read
from pipelines.transforms.read import InputSpec, ReadRecords, input_mappings, parse_mapping, read_input


def _read(spec: InputSpec, tmp_path: Path) -> tuple[list, list]:
    """Run ReadRecords for real and return (records, rejects) as the pipeline produced them."""
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        outputs = p | ReadRecords(spec)
        for name in ("records", "rejects"):
            target = tmp_path / f"{name}.pickle"  # workers get copies of closures: hand results back on disk
            _ = outputs[name] | f"Collect{name}" >> beam.combiners.ToList() | f"Keep{name}" >> beam.Map(lambda xs, t=target: t.write_bytes(pickle.dumps(xs)))
    return pickle.loads((tmp_path / "records.pickle").read_bytes()), pickle.loads((tmp_path / "rejects.pickle").read_bytes())


def test_contract_csv_with_header_in_any_column_order(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("timestamp,item_id,user_id,event\n1433878777,i1,u1,view\n2015-06-09T19:39:37Z,i2,u2,\n")
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        events = p | ReadRecords(InputSpec("interactions", str(path)))
        assert_that(
            events["records"],
            equal_to([Interaction("u1", "i1", 1_433_878_777.0, "view"), Interaction("u2", "i2", 1_433_878_777.0, None)]),
        )


def test_quoted_csv_fields_may_span_lines(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text('item_id,title,text\ni1,Sleeve,"first line\nsecond line"\ni2,Case,\n')
    records, rejects = _read(InputSpec("items", str(path)), tmp_path)
    assert sorted(r.item_id for r in records) == ["i1", "i2"] and rejects == []
    assert next(r for r in records if r.item_id == "i1").text == "first line\nsecond line"


@pytest.mark.parametrize("extension", ["jsonl", "parquet"])
def test_jsonl_and_parquet_with_a_column_mapping(tmp_path, extension):
    rows = [{"userId": "u1", "movieId": "m1", "ts": "09.06.2015 19:39"}, {"userId": "u2", "movieId": "m2", "ts": "10.06.2015 19:39"}]
    path = tmp_path / f"ratings.{extension}"
    if extension == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    spec = InputSpec(
        "interactions",
        str(path),
        mapping=parse_mapping(["user_id=userId", "item_id=movieId", "timestamp=ts"]),
        options=ParseOptions(timestamp_format="%d.%m.%Y %H:%M"),
    )
    records, rejects = _read(spec, tmp_path)
    assert rejects == []
    assert sorted((r.user_id, r.item_id, r.timestamp) for r in records) == [("u1", "m1", 1_433_878_740.0), ("u2", "m2", 1_433_965_140.0)]


def test_every_bad_row_is_rejected_with_file_line_and_reason(tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [
        '{"user_id": "u1", "item_id": "i1", "timestamp": 1}',  # 1: good
        '{"item_id": "i1", "timestamp": 1}',  # 2: missing id
        '{"user_id": "u1", "item_id": "i1", "timestamp": "soon"}',  # 3: unparseable timestamp
        '{"user_id": "u1", "item_id": "i1", "timestamp": 1, "value": -2}',  # 4: negative weight
        '{"user_id": ["u1"], "item_id": "i1", "timestamp": 1}',  # 5: wrong type
        '{"user_id": "u1", "item_id": "i1", "timestamp": 1, "event": "teleport"}',  # 6: unknown event
        "{not json",  # 7: not JSON
        "[1, 2]",  # 8: not an object
    ]
    path.write_text("\n".join(lines) + "\n")
    records, rejects = _read(InputSpec("interactions", str(path)), tmp_path)
    assert [r.user_id for r in records] == ["u1"]
    by_line = {r["line"]: r for r in rejects}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8]
    expected = {2: "'user_id'", 3: "timestamp", 4: "negative value", 5: "expected a string", 6: "unknown event", 7: "not valid JSON", 8: "JSON object"}
    for line, text in expected.items():
        assert text in by_line[line]["reason"], by_line[line]
        assert by_line[line]["file"].endswith("events.jsonl") and by_line[line]["kind"] == "interactions"
    assert by_line[2]["row"] == {"item_id": "i1", "timestamp": 1}


def test_too_long_text_and_wrong_column_count_are_rejected(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,title\ni1,short\ni2," + "x" * 50 + "\ni3,a,b\n")
    records, rejects = _read(InputSpec("items", str(path), options=ParseOptions(max_text_chars=20)), tmp_path)
    assert [r.item_id for r in records] == ["i1"]
    reasons = sorted(r["reason"] for r in rejects)
    assert "exceeds the limit of 20" in reasons[1] or "exceeds the limit of 20" in reasons[0]
    assert any("expected 2 columns" in r for r in reasons)


def test_missing_and_empty_inputs_are_named(tmp_path):
    with pytest.raises(InputError, match="nothing.csv' matches no file"):
        ReadRecords(InputSpec("interactions", str(tmp_path / "nothing.csv")))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="empty.csv' is empty"):
        ReadRecords(InputSpec("interactions", str(empty), "ms-store"))


def test_bad_mapping_flag_is_refused():
    with pytest.raises(InputError, match="--map"):
        parse_mapping(["user_id"])


def _write(path: Path, rows: list[dict]) -> Path:
    """rows as CSV with a header, JSON lines or Parquet, by the path's extension."""
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text(",".join(rows[0]) + "\n" + "".join(",".join(map(str, r.values())) + "\n" for r in rows))
    return path


def test_each_input_takes_its_own_mapping_and_it_wins_over_map():
    mappings = input_mappings(["item_id=sku", "title=Name"], {"interactions": ["item_id=Product", "user_id=Customer"], "items": None})
    assert mappings == {"interactions": {"item_id": "Product", "user_id": "Customer"}, "items": {"item_id": "sku", "title": "Name"}}


def test_map_applies_a_column_only_to_the_inputs_that_have_it():
    mappings = input_mappings(["user_id=Customer", "title=Name"], {"interactions": None, "items": None})
    assert mappings == {"interactions": {"user_id": "Customer"}, "items": {"title": "Name"}}


@pytest.mark.parametrize(
    ("shared", "per_input", "message"),
    [
        (None, {"items": ["titel=Name"], "interactions": None}, r"field '--map-items': items have no contract column 'titel'; their columns: item_id, title, text, category"),
        (["usr_id=Customer"], {"interactions": None, "items": None}, r"field '--map': no input has the contract column 'usr_id'; interactions: user_id, .*; items: item_id, title"),
        (None, {"documents": ["user_id=x"]}, r"field '--map-documents': documents have no contract column 'user_id'; their columns: doc_id, answer"),
    ],
)
def test_an_unknown_contract_column_is_refused_naming_the_known_ones(shared, per_input, message):
    with pytest.raises(InputError, match=message):
        input_mappings(shared, per_input)


@pytest.mark.parametrize("extension", ["csv", "jsonl", "parquet"])
def test_a_mapped_column_missing_from_the_file_fails_before_any_row_is_read(tmp_path, extension, monkeypatch):
    path = _write(tmp_path / f"items.{extension}", [{"Customer": "c1", "Product": "p1", "Name": "Case"}])
    monkeypatch.setattr(read, "read_file", lambda *a: pytest.fail("rows were read"))
    spec = InputSpec("items", str(path), mapping={"item_id": "Prodct", "title": "Name"})
    with pytest.raises(InputError) as raised:
        read_input(spec)
    assert str(raised.value) == (f"field '--map-items': {path}: no column 'Prodct' for item_id (columns: Customer, Product, Name); "
                                 "did you mean 'Product'?; set --map-items item_id=COLUMN")
    with pytest.raises(InputError, match="no column 'Prodct'"):  # the Beam read checks as it is built
        ReadRecords(spec)


def test_a_required_contract_column_missing_from_the_header_is_named_with_the_flag(tmp_path):
    path = _write(tmp_path / "events.csv", [{"Customer": "c1", "item_id": "p1", "timestamp": 1}])
    with pytest.raises(InputError, match=r"events.csv: no column 'user_id' \(columns: Customer, item_id, timestamp\); "
                                         r"name the column holding user_id with --map-interactions user_id=COLUMN"):
        read_input(InputSpec("interactions", str(path)))


def test_an_optional_column_may_be_absent_unless_mapped(tmp_path):
    path = _write(tmp_path / "items.csv", [{"item_id": "i1", "title": "Case"}])
    assert read_input(InputSpec("items", str(path))).valid == 1
    with pytest.raises(InputError, match="no column 'Description' for text"):
        read_input(InputSpec("items", str(path), mapping={"text": "Description"}))


def test_every_file_of_a_glob_is_checked(tmp_path):
    _write(tmp_path / "a.csv", [{"user_id": "u", "item_id": "i", "timestamp": 1}])
    _write(tmp_path / "b.csv", [{"user": "u", "item_id": "i", "timestamp": 1}])
    with pytest.raises(InputError, match=r"b.csv: no column 'user_id'"):
        read_input(InputSpec("interactions", str(tmp_path / "*.csv")))
