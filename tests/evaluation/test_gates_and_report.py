"""Gates give reasons and exit codes; the report carries every figure and its plots."""

from __future__ import annotations

import base64
import json
import re

from evaluation import report
from evaluation.gates import Gates

RESULTS = {"als": {"ndcg": 0.30, "recall": 0.40}, "popularity": {"ndcg": 0.35, "recall": 0.20}, "bpr": {"ndcg": 0.10}}


def test_a_candidate_meeting_every_gate_passes():
    assert Gates({"ndcg": 0.2, "recall": 0.4}, ("bpr",)).check("als", RESULTS) == []


def test_each_failed_gate_gives_its_reason():
    failures = Gates({"ndcg": 0.5, "recall": 0.3}, ("popularity", "bpr", "item_knn")).check("als", RESULTS)
    assert failures == [
        "als ndcg 0.3000 < minimum 0.5000",
        "als ndcg 0.3000 does not beat popularity 0.3500",
        "baseline 'item_knn' was not evaluated",
    ]


def test_a_missing_metric_fails_its_minimum():
    assert Gates({"map": 0.0}).check("als", RESULTS) == ["als map nan < minimum 0.0000"]


def test_report_json_has_every_figure_and_html_embeds_real_pngs(tmp_path):
    rows = {"a": {"ndcg": 0.5, "recall": 0.7}, "b": {"ndcg": 0.2, "recall": 0.3}}
    bars = report.bar_plot("title", rows, ["ndcg", "recall"])
    curve = report.line_plot("curve", {"x": [(1.0, 0.5), (2.0, 0.9)]}, "ms", "recall")
    figures = {"results": rows, "git_commit": "abc", "gates": {"passed": False, "failures": ["too low"]}}
    json_path, html_path = report.write(tmp_path, figures, [("Methods", report.table_text(rows, ["ndcg", "recall"]), [bars, curve])])
    assert json.loads(json_path.read_text())["results"] == rows
    page = html_path.read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 2 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "FAILED: too low" in page and "0.5000" in page


def test_file_hash_changes_with_content(tmp_path):
    path = tmp_path / "f"
    path.write_text("a")
    first = report.file_hash([path])
    path.write_text("b")
    assert report.file_hash([path]) != first and len(first) == 64
