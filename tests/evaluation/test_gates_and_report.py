"""Gates give reasons and exit codes; the report carries every figure and its plots."""

from __future__ import annotations

import base64
import html
import json
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from evaluation import report  # noqa: E402
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


def _decision(baselines=None, published=0.29, candidate="recs-20261130T101500-3fa9c1", passed=True):
    return {
        "candidate": candidate,
        "kind": "recs",
        "passed": passed,
        "headline": {"metric": "ndcg@10", "candidate": 0.31, "published": published, "published_release": 3 if published is not None else None},
        "gates": [
            {"name": "max-regression", "threshold": 0.01, "figure": -0.02, "passed": True, "text": "ndcg@10 rose 0.020 above the published release (allowed fall 0.010)"},
            {"name": "min-coverage", "threshold": 0.25, "figure": 0.125, "passed": passed, "text": "coverage 0.125 below 0.250"},
        ],
        "baselines": {"popularity": 0.12, "item_knn": 0.20} if baselines is None else baselines,
    }


def _figures(**decision):
    return {
        "decision": _decision(**decision),
        "date": "2026-11-30T10:15:00+00:00",
        "dataset": {"sha256": "ab" * 32, "events": 1234, "items": 56},
        "split": {"kind": "temporal", "train_events": 1000, "test_events": 234},
        "configuration": {"factors": 32, "regularization": 0.05},
        "results": {"als": {"ndcg": 0.31}},
        "git_commit": "abc",
        "gates": {"passed": True, "failures": []},
    }


def _page(tmp_path, figures) -> str:
    rows = {"als": {"ndcg": 0.31, "recall": 0.4}}
    _, html_path = report.write(tmp_path, figures, [("Methods", report.table_text(rows, ["ndcg", "recall"]), [])])
    return html_path.read_text()


def test_the_decision_comes_first_with_every_gate_and_the_run_it_was_made_on(tmp_path):
    page = _page(tmp_path, _figures())
    decision = page.index("id='decision'")
    assert decision < page.index("<h2>Methods</h2>") and decision < page.index("id='run'") < page.index("<h2>Methods</h2>")
    assert "Decision: PASSED" in page and "recs-20261130T101500-3fa9c1" in page
    assert "ndcg@10: candidate 0.3100 against 0.2900 for published release 3 (+0.0200)" in page
    for name, threshold, figure in [("max-regression", "0.0100", "-0.0200"), ("min-coverage", "0.2500", "0.1250")]:
        row = re.search(f"<tr[^>]*><td>{name}</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", page)
        assert row and row.groups() == (threshold, figure, "pass")
    assert "2026-11-30T10:15:00+00:00" in page and "ab" * 32 in page and "1234 events, 56 items" in page
    assert "train_events 1000" in page and "&quot;factors&quot;: 32" in page
    assert "<tr><td>item_knn</td><td>0.2000</td><td>-35.5%</td></tr><tr><td>popularity</td>" in page  # best baseline first


def test_a_failed_gate_and_nothing_published_are_stated(tmp_path):
    page = _page(tmp_path, _figures(published=None, passed=False))
    assert "Decision: FAILED" in page and "nothing published: baselines gate" in page
    assert re.search(r"<tr class='fail'><td>min-coverage</td>.*<td>FAIL</td>", page)


@pytest.mark.parametrize(
    ("baselines", "warning"),
    [
        ({"popularity": 0.12, "item_knn": 0.20}, None),
        ({"item_knn": 0.3065}, None),  # 1.1% below: just outside the margin
        ({"item_knn": 0.3071}, "baseline item_knn is within 1% of the candidate on ndcg@10: 0.3071 against 0.3100"),
        ({"item_knn": 0.31}, "baseline item_knn is within 1% of the candidate"),
        ({"popularity": 0.12, "item_knn": 0.35}, "baseline item_knn beats the candidate on ndcg@10: 0.3500 against 0.3100"),
        ({}, None),
    ],
)
def test_a_baseline_that_beats_or_nearly_matches_the_candidate_is_flagged(tmp_path, baselines, warning, capsys):
    figures = _figures(baselines=baselines)
    page = _page(tmp_path, figures)
    if warning is None:
        assert "class='warning'" not in page and report.baseline_warnings(figures["decision"]) == []
    else:
        assert re.search(f"<p class='warning'>[^<]*{re.escape(warning)}", page)
        assert page.index("class='warning'") < page.index("<h2>Methods</h2>")
        report.finish(tmp_path, figures, [], "table")
        assert "WARNING: " + warning in capsys.readouterr().out


def test_every_string_in_the_decision_is_escaped(tmp_path):
    hostile = "<script>alert('x')</script>"
    figures = _figures(candidate=hostile, baselines={hostile: 0.5})
    figures["decision"]["gates"][0].update(name=hostile, text=hostile)
    figures["configuration"] = {hostile: hostile}
    figures["dataset"]["sha256"] = hostile
    page = _page(tmp_path, figures)
    assert "<script>" not in page
    assert page.count(html.escape(hostile)) >= 5


def test_without_a_decision_the_page_is_as_before(tmp_path):
    figures = _figures()
    del figures["decision"]
    page = _page(tmp_path, figures)
    assert "id='decision'" not in page and "id='run'" not in page and "<h2>Methods</h2>" in page


def test_the_console_and_exit_code_carry_the_decision(tmp_path, capsys):
    failed = report.finish(tmp_path, _figures(passed=False), [], "the table")
    out, err = capsys.readouterr()
    assert out.index("decision: recs candidate recs-20261130T101500-3fa9c1 FAILED") < out.index("the table")
    assert "gate min-coverage: FAIL (figure 0.1250, threshold 0.2500)" in out
    assert "coverage 0.125 below 0.250" in err and failed["exit_code"] == 1
    assert report.finish(tmp_path, _figures(), [], "the table")["exit_code"] == 0


def _overlaps(figure, legend) -> bool:
    figure.canvas.draw()
    box = legend.get_window_extent()
    return any(box.overlaps(ax.get_window_extent()) for ax in figure.axes)


def test_coverage_gets_its_own_axis_and_the_legend_covers_no_bar():
    rows = {"als": {"precision": 0.05, "ndcg": 0.12, "coverage": 0.9, "mean_popularity": 0.4}, "popularity": {"precision": 0.03, "ndcg": 0.1, "coverage": 0.02, "mean_popularity": 0.8}}
    figure = report.bar_figure("t", rows, ["precision", "ndcg", "coverage", "mean_popularity"])
    try:
        ranking, catalogue = figure.axes
        assert [t.get_text() for t in ranking.get_xticklabels()] == ["precision", "ndcg"]
        assert [t.get_text() for t in catalogue.get_xticklabels()] == ["coverage", "mean_popularity"]
        assert ranking.get_ylim()[1] < 0.5  # coverage's 0.9 does not set precision's scale
        (legend,) = figure.legends
        assert [t.get_text() for t in legend.get_texts()] == ["als", "popularity"] and not _overlaps(figure, legend)
    finally:
        plt.close(figure)
    assert len(report.bar_figure("t", rows, ["precision", "ndcg"]).axes) == 1
    plt.close("all")


def test_metric_groups_put_each_scale_on_its_own_axis():
    assert report.metric_groups(["ndcg@10", "recall@100", "mrr@10", "coverage", "ms_per_query"]) == [
        ("ranking metric", ["ndcg@10", "recall@100", "mrr@10"]), ("share", ["coverage"]), ("ms_per_query", ["ms_per_query"])
    ]


def test_the_recall_latency_curve_labels_each_point_with_its_settings():
    points = [{"x": 1.5, "y": 0.8, "label": "nprobes 1, refine 1", "group": "refine 1"}, {"x": 4.0, "y": 0.97, "label": "nprobes 20, refine 10", "group": "refine 10"}]
    figure = report.points_figure("recall@10 against latency", points, "ms per query", "recall@10")
    try:
        (axes,) = figure.axes
        assert sorted(t.get_text() for t in axes.texts) == ["nprobes 1, refine 1", "nprobes 20, refine 10"]
        assert sorted((t.get_text(), tuple(t.xy)) for t in axes.texts) == [("nprobes 1, refine 1", (1.5, 0.8)), ("nprobes 20, refine 10", (4.0, 0.97))]
        (legend,) = figure.legends
        assert not _overlaps(figure, legend)
    finally:
        plt.close(figure)
    assert base64.b64decode(report.points_plot("curve", points, "ms", "recall")).startswith(b"\x89PNG")
