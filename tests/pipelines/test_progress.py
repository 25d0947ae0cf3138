"""Progress of long work: a bar on a terminal; elsewhere log lines with the total and the time left."""

from __future__ import annotations

import io
import logging
import re

import apache_beam as beam
import numpy as np
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from evaluation.search import Range, search
from pipelines import progress as progress_module
from pipelines.progress import Progress
from pipelines.transforms import encode

LINE = re.compile(r"^(?P<desc>[\w -]+): (?P<done>[\d,]+)/(?P<total>[\d,]+) (?P<unit>\w+) \(\d+%\), [\d.]+/s(, ETA [\d:]+)?$")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pipelines.progress"]


def test_off_a_terminal_lines_with_count_total_and_eta_are_logged_and_no_bar_is_drawn(caplog):
    stream = io.StringIO()
    caplog.set_level(logging.INFO, logger="pipelines.progress")
    with Progress(10, "encode-things", "texts", stream=stream, interval_seconds=0) as progress:
        for _ in range(4):
            progress.update(2)
    lines = _lines(caplog)
    steps = [LINE.match(line) for line in lines[:-1]]
    assert all(steps), lines
    assert [int(m["done"]) for m in steps] == [2, 4, 6, 8]
    assert {m["total"] for m in steps} == {"10"} and {m["unit"] for m in steps} == {"texts"}
    assert ", ETA " in lines[0]  # work remains: the time left is shown
    assert lines[-1].startswith("encode-things: 8 texts done in ")
    assert stream.getvalue() == ""  # no bar, no carriage returns in a log file


def test_off_a_terminal_lines_come_no_more_often_than_the_interval(caplog):
    caplog.set_level(logging.INFO, logger="pipelines.progress")
    with Progress(1000, "score", "queries", stream=io.StringIO(), interval_seconds=3600) as progress:
        for _ in range(1000):
            progress.update()
    assert _lines(caplog) == []  # quick work says nothing, not even a closing line


def test_on_a_terminal_a_bar_with_the_total_is_drawn_and_nothing_is_logged(caplog):
    stream = _Terminal()
    caplog.set_level(logging.INFO, logger="pipelines.progress")
    with Progress(10, "trials", "trials", stream=stream, interval_seconds=0) as progress:
        progress.update(3)
        progress.write("trial 3/10: a line above the bar")
    drawn = stream.getvalue()
    assert "trials:" in drawn and "/10" in drawn and "\r" in drawn
    assert "trial 3/10: a line above the bar\n" in drawn
    assert _lines(caplog) == []


class _FakeSentenceTransformer:
    def __init__(self, name: str) -> None:
        self.name = name

    def load(self) -> "_FakeSentenceTransformer":
        return self

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 3), dtype=np.float32)


def test_encoding_in_a_pipeline_reports_progress_against_the_exact_number_of_texts(monkeypatch, caplog):
    monkeypatch.setattr(encode, "SentenceTransformerEncoder", _FakeSentenceTransformer)
    monkeypatch.setattr(progress_module, "LOG_INTERVAL_SECONDS", 0.0)
    caplog.set_level(logging.INFO, logger="pipelines.progress")
    count = 700  # several batches of at most MAX_BATCH_SIZE
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        keys = (
            pipeline
            | beam.Create([(f"k{i}", f"text {i}") for i in range(count)])
            | encode.EncodeTexts("fake", stage="encode-test")
            | beam.Map(lambda pair: pair[0])
        )
        assert_that(keys, equal_to([f"k{i}" for i in range(count)]))
    steps = [LINE.match(line) for line in _lines(caplog) if "done in" not in line]
    assert steps and all(steps), _lines(caplog)
    assert {m["total"] for m in steps} == {f"{count}"}
    assert int(steps[-1]["done"].replace(",", "")) == count


def test_tuning_trial_lines_carry_the_count_and_the_time_left():
    lines: list[str] = []
    search(lambda params: params["x"], {"x": Range(1.0, 10.0)}, {"x": 2.0}, trials=3, seed=0, metric="score", progress=lines.append)
    assert [line.split(":")[0] for line in lines] == ["trial 1/3", "trial 2/3", "trial 3/3"]
    assert all(", ETA " in line for line in lines[:2]) and ", ETA" not in lines[2]
