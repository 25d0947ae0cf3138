"""Reading inputs with the real local Beam runner: contract formats and clear errors."""

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from features.errors import InputError
from features.schemas import Interaction
from pipelines import build_recs
from pipelines.transforms.read import ReadDocuments, ReadInteractions


def _runner():
    return test_pipeline.TestPipeline(runner="FnApiRunner")


def test_contract_csv_with_header_in_any_column_order(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("timestamp,item_id,user_id,event\n1433878777,i1,u1,view\n2015-06-09T19:39:37Z,i2,u2,\n")
    with _runner() as p:
        events = p | ReadInteractions(str(path), "contract")
        assert_that(
            events,
            equal_to(
                [
                    Interaction("u1", "i1", 1_433_878_777.0, "view"),
                    Interaction("u2", "i2", 1_433_878_777.0, None),
                ]
            ),
        )


def test_contract_jsonl_documents(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"doc_id": "d1", "answer": "Use tildes.", "tags": ["git"]}\n\n')
    with _runner() as p:
        ids = p | ReadDocuments(str(path), "contract") | beam.Map(lambda d: (d.doc_id, d.tags))
        assert_that(ids, equal_to([("d1", ("git",))]))


def test_missing_input_is_named_before_the_pipeline_runs(tmp_path):
    with pytest.raises(InputError, match="nothing.csv' matches no file"):
        build_recs.run(["--warehouse", str(tmp_path / "wh"), "--interactions", str(tmp_path / "nothing.csv")])
    assert not (tmp_path / "wh").exists()


def test_empty_input_is_named(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="empty.csv' is empty"):
        ReadInteractions(str(empty), "ms-store")


def test_bad_row_fails_the_job_naming_file_and_row(tmp_path):
    usage = tmp_path / "usage.csv"
    usage.write_text("u1,i1,2015/06/09T19:39:37\nu2,i2,not-a-time\n")
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("i1,Item one,Accessories\ni2,Item two,Accessories\n")
    with pytest.raises(InputError, match=r"usage.csv: 'u2,i2,not-a-time'.*timestamp"):
        build_recs.run(["--warehouse", str(tmp_path / "wh"), "--interactions", str(usage), "--items", str(catalog)])
    assert not (tmp_path / "wh" / "users.lance").exists()
