"""Every RECQA_* variable is read through serving/settings.py; a bad one fails naming itself."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from serving.settings import GuardSettings, LogSettings, ServiceSettings, SettingsError, WorkerSettings
from tests.serving.conftest import in_process

ROOT = Path(__file__).resolve().parents[2]


def test_unset_variables_give_the_documented_defaults():
    settings = ServiceSettings.from_env({})
    assert settings == ServiceSettings()
    assert (settings.cache_capacity, settings.encoder_backend, settings.encoder_precision) == (2_048, "onnx", "fp32")
    assert (settings.ingest_precision, settings.ingest_nice) == ("auto", None)
    assert GuardSettings.from_env({}).max_body_bytes == 1 << 20


def test_each_variable_sets_its_field():
    env = {
        "RECQA_WAREHOUSE": "s3://bucket/wh", "RECQA_MODEL": "/models/m", "RECQA_RELOAD_SECONDS": "0.5",
        "RECQA_CACHE_CAPACITY": "16", "RECQA_CACHE_THRESHOLD": "0.8", "RECQA_ENCODER_THREADS": "2",
        "RECQA_ENCODER_BACKEND": "torch", "RECQA_UNRELATED": "x", "RECQA_ENCODER_PRECISION": "bf16",
        "RECQA_INGEST_PRECISION": "fp32", "RECQA_INGEST_NICE": "0",
    }
    assert ServiceSettings.from_env(env) == ServiceSettings(
        warehouse="s3://bucket/wh", model_name="/models/m", reload_seconds=0.5, cache_capacity=16,
        cache_threshold=0.8, encoder_threads=2, encoder_backend="torch", encoder_precision="bf16",
        ingest_precision="fp32", ingest_nice=0,
    )
    guard = GuardSettings.from_env({"RECQA_MAX_BODY_BYTES": "2048", "RECQA_API_TOKEN": "t", "RECQA_INGEST_TOKEN": "i"})
    assert (guard.max_body_bytes, guard.api_token, guard.admin_token, guard.ingest_token) == (2048, "t", "", "i")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("RECQA_CACHE_CAPACITY", "abc", "valid integer"),
        ("RECQA_CACHE_CAPACITY", "0", "greater than or equal to 1"),
        ("RECQA_CACHE_THRESHOLD", "1.5", "less than or equal to 1"),
        ("RECQA_RELOAD_SECONDS", "soon", "valid number"),
        ("RECQA_ENCODER_THREADS", "-1", "greater than or equal to 1"),
        ("RECQA_ENCODER_BACKEND", "tensorflow", "'onnx' or 'torch'"),
        ("RECQA_ENCODER_PRECISION", "int8", "'fp32' or 'bf16'"),
        ("RECQA_WAREHOUSE", "", "at least 1 character"),
        ("RECQA_INGEST_PRECISION", "int8", "'auto', 'fp32' or 'bf16'"),
        ("RECQA_INGEST_NICE", "20", "less than or equal to 19"),
        ("RECQA_INGEST_NICE", "-5", "greater than or equal to 0"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_the_value_and_what_is_expected(variable, value, expected):
    with pytest.raises(SettingsError) as raised:
        ServiceSettings.from_env({variable: value})
    message = str(raised.value)
    assert raised.value.variable == variable
    assert message.startswith(f"{variable}={value!r} is not valid: ") and expected in message and "\n" not in message
    assert "default" in message


def test_a_bad_body_limit_fails_and_tokens_are_never_echoed():
    with pytest.raises(SettingsError, match=r"^RECQA_MAX_BODY_BYTES='1k' is not valid: input should be a valid integer"):
        GuardSettings.from_env({"RECQA_MAX_BODY_BYTES": "1k"})
    assert "s3cret" not in str(SettingsError("RECQA_API_TOKEN", "s3cret", "a string", ""))


def test_the_service_reads_no_recqa_variable_outside_the_settings_module():
    """One place for the service's configuration: no other module of serving/ or ingest/ reads os.environ."""
    readers = [
        str(path.relative_to(ROOT))
        for folder in ("serving", "ingest")
        for path in (ROOT / folder).glob("*.py")
        if path.name != "settings.py" and re.search(r"os\.environ|getenv\(", path.read_text())
    ]
    assert readers == []


def test_a_bad_variable_fails_the_service_start_naming_it(service_app, monkeypatch):
    monkeypatch.setenv("RECQA_CACHE_CAPACITY", "abc")
    with pytest.raises(SettingsError, match=r"^RECQA_CACHE_CAPACITY='abc' is not valid: input should be a valid integer"):
        with TestClient(service_app):
            pass


def test_a_variable_no_longer_read_is_named_in_a_warning(caplog):
    settings = ServiceSettings.from_env({"RECQA_LOCAL_ENCODE": "0"})
    assert settings == ServiceSettings()
    assert "RECQA_LOCAL_ENCODE is set but no longer read" in caplog.text


def test_the_access_log_is_off_unless_asked_and_a_bad_value_names_the_variable():
    assert LogSettings.from_env({}).access_log is False
    with pytest.raises(SettingsError, match=r"^RECQA_ACCESS_LOG='maybe' is not valid: input should be a valid boolean"):
        LogSettings.from_env({"RECQA_ACCESS_LOG": "maybe"})


@pytest.mark.parametrize(("value", "on"), [("1", True), ("true", True), ("on", True), ("0", False), ("false", False)])
def test_the_access_log_variable_reads_the_usual_spellings(value, on):
    assert LogSettings.from_env({"RECQA_ACCESS_LOG": value}).access_log is on


def test_the_service_writes_no_access_line_and_makes_no_span_by_default(service_app, warehouse):
    """Both cost the event loop every request (serving/settings.py, LogSettings; serving/front.py,
    without_unexported_tracing); errors are still logged by the front door."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    access = logging.getLogger("bentoml.access")
    level = access.level
    access.setLevel(logging.INFO)  # a line, were there one, would reach the handler
    access.addHandler(handler)
    try:
        with in_process(service_app, warehouse) as client:
            assert client.get("/livez").status_code == 200
            response = client.post("/search_items", json={"query": "cable", "k": 2})
            assert response.status_code == 200
            assert "x-bentoml-request-id" not in response.headers  # BentoML's server span would name it
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    assert records == []


_MIDDLEWARES = """
import os, tempfile
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp())
from serving.service import RecQA
print(" ".join(m.cls.__name__ for m in RecQA.to_asgi().app.user_middleware))
"""


@pytest.mark.slow
@pytest.mark.parametrize("options", ["services.tracing.exporter_type=in_memory", "services.recqa.tracing.exporter_type=in_memory"])
def test_requests_are_traced_when_bentomls_configuration_names_an_exporter(options, tmp_path):
    """The service's own tracing settings are read after BentoML loads them (a fresh process: they are read once)."""
    env = {**os.environ, "BENTOML_CONFIG_OPTIONS": options, "BENTOML_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("RECQA_ACCESS_LOG", None)
    found = subprocess.run([sys.executable, "-c", _MIDDLEWARES], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr[-2000:]
    middlewares = found.stdout.split()
    assert "OpenTelemetryMiddleware" in middlewares and "AccessLogMiddleware" not in middlewares


def test_one_worker_unless_asked():
    assert WorkerSettings.from_env({}).workers == 1 and WorkerSettings.from_env({"RECQA_WORKERS": "3"}).workers == 3
    for value, expected in (("0", "greater than or equal to 1"), ("two", "valid integer")):
        with pytest.raises(SettingsError, match=rf"^RECQA_WORKERS='{value}' is not valid: .*{expected}"):
            WorkerSettings.from_env({"RECQA_WORKERS": value})
