"""Inputs read from and tables written to a real S3-compatible server (moto) on 127.0.0.1.

Endpoint and credentials come from the environment only, as they would in production.
"""

from __future__ import annotations

import logging

import boto3
import lance
import pytest
from apache_beam.io.filesystems import FileSystems
from moto.server import ThreadedMotoServer

from pipelines import build_qa, build_recs, lance_io, publish

BUCKET = "recqa-test"


@pytest.fixture
def s3(monkeypatch):
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,  # boto3 (Beam's S3 file system) and Lance both read it
        "AWS_ALLOW_HTTP": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    yield client
    FileSystems.set_options(None)  # Beam keeps the last pipeline's options globally
    server.stop()


@pytest.mark.slow  # a real S3 server and multi-process Beam jobs
@pytest.mark.usefixtures("fake_model")  # real Beam, Lance and S3 (moto), no model
def test_jobs_read_inputs_from_s3_and_write_published_tables_there(s3, tmp_path):
    events = "user_id,item_id,timestamp\n" + "".join(f"u{u},i{(u + j) % 3},{1_600_000_000 + j}\n" for u in range(6) for j in range(20))
    events += "u9,i1,yesterday\n"  # one bad row of 121: under 1%, and its reject lands on S3
    s3.put_object(Bucket=BUCKET, Key="in/events.csv", Body=events.encode())
    s3.put_object(Bucket=BUCKET, Key="in/items.csv", Body=b"item_id,title\ni0,Red mug\ni1,Blue mug\ni2,Green kettle\n")
    s3.put_object(Bucket=BUCKET, Key="in/docs.jsonl", Body=b'{"doc_id": "d1", "question": "Boil?", "answer": "Use the kettle."}\n{"doc_id": "d2", "answer": "Mugs hold tea."}\n')
    warehouse = f"s3://{BUCKET}/warehouse"
    common = ["--warehouse", warehouse, "--input-format", "contract"]

    recs = build_recs.run([*common, "--interactions", f"s3://{BUCKET}/in/events.csv", "--items", f"s3://{BUCKET}/in/items.csv"])
    qa = build_qa.run([*common, "--documents", f"s3://{BUCKET}/in/*.jsonl"])
    published = publish.run(["--warehouse", warehouse, "--candidate", recs.candidate, "--candidate", qa.candidate, "--force"])

    assert recs.rows == {"users": 6, "items": 3} and qa.rows == {"answers": 2}
    assert published.versions == {**recs.versions, **{"answers": qa.versions["answers"]}}
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="warehouse/")["Contents"]}
    assert any(k.startswith("warehouse/users.lance/") for k in keys)
    (rejects,) = [k for k in keys if k.startswith("warehouse/_rejects/build-recs-")]
    assert b"yesterday" in s3.get_object(Bucket=BUCKET, Key=rejects)["Body"].read()
    items = lance.dataset(lance_io.table_uri(warehouse, "items"), version=lance_io.PUBLISHED_TAG).to_table()
    assert sorted(items.column("title").to_pylist()) == ["Blue mug", "Green kettle", "Red mug"]

    # evaluation reads the candidate's own inputs from S3 with the build's readers, and its verdict lands there
    from evaluation import evaluate_recs
    from registry.log import find_candidate

    figures = evaluate_recs.run(["--warehouse", warehouse, "--candidate", recs.candidate, "--methods", "popularity", "--out", str(tmp_path)])
    assert figures["dataset"]["events"] == 120 and figures["dataset"]["inputs"]["interactions"]["rejected"] == 1
    assert figures["dataset"]["inputs"]["interactions"]["path"] == f"s3://{BUCKET}/in/events.csv"
    assert find_candidate(warehouse, recs.candidate).evaluation is not None
