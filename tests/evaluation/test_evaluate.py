"""The evaluation commands end to end: real tables, the real model, the report and the gates."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from evaluation import evaluate_qa, evaluate_recs
from tests.evaluation.test_beir_subset import scifact_subset

pytestmark = pytest.mark.slow


def test_recs_report_compares_every_method_and_als_beats_popularity(tmp_path):
    """Without a candidate, the build-recs flags given describe the ALS evaluated (here a tuned-like setting)."""
    figures = evaluate_recs.run(["--out", str(tmp_path / "report"), "--factors", "8", "--regularization", "1"])
    results = figures["results"]
    assert set(results) == {"popularity", "item_knn", "bpr", "als"}
    for row in results.values():
        assert all(0.0 <= row[m] <= 1.0 for m in ("precision", "recall", "ndcg", "map", "coverage"))
    assert results["als"]["ndcg"] > results["popularity"]["ndcg"] and results["als"]["recall"] > results["popularity"]["recall"]
    assert figures["split"]["test_users"] == results["als"]["queries"] > 0
    assert set(figures["tuning"]) == {"popularity", "item_knn", "bpr"}  # baselines are tuned; ALS is evaluated as configured
    assert figures["configuration"]["als"]["factors"] == 8 and figures["configuration"]["als"]["regularization"] == 1.0
    assert figures["decision"]["passed"] and figures["decision"]["gates"][0]["name"] == "must-beat popularity"
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["results"]["als"]["ndcg"] == pytest.approx(results["als"]["ndcg"])
    assert saved["dataset"]["sha256"] and "data:image/png;base64," in (tmp_path / "report" / "report.html").read_text()


def test_qa_report_on_stackfaq_has_every_mode_and_the_cache_curve(warehouse, tmp_path):
    figures = evaluate_qa.run(["--warehouse", str(warehouse), "--out", str(tmp_path), "--ann-queries", "0", "--max-queries", "300"])
    results = figures["results"]
    assert set(results) == {"keyword", "vector", "hybrid", "hybrid+mmr", "hybrid-rrf"}
    assert results["vector"]["recall@10"] > 0.9 and results["keyword"]["ndcg@10"] > 0.5
    # BM25 is far weaker than vector search on paraphrased questions: rank fusion lets it drag
    # good vector hits down, score fusion does not
    assert results["keyword"]["ndcg@10"] < results["hybrid-rrf"]["ndcg@10"] < results["vector"]["ndcg@10"] - 0.03
    assert results["hybrid"]["ndcg@10"] >= results["vector"]["ndcg@10"] - 0.005
    assert results["hybrid"]["ndcg@10"] > results["hybrid-rrf"]["ndcg@10"] + 0.03
    thresholds = [c["threshold"] for c in figures["cache"]]
    assert figures["dataset"]["queries"] == 300 and results["vector"]["queries"] == 300
    assert 0.90 in thresholds and all(0 <= c["hit_rate"] <= 1 for c in figures["cache"])
    hit_rates = [c["hit_rate"] for c in figures["cache"]]
    assert hit_rates == sorted(hit_rates, reverse=True)  # a higher threshold never hits more


def test_a_failing_gate_exits_non_zero_with_the_reason(warehouse, tmp_path, capsys):
    code = main(["evaluate", "qa", "--warehouse", str(warehouse), "--out", str(tmp_path), "--modes", "keyword,hybrid",
                 "--ann-queries", "0", "--max-queries", "50", "--min-ndcg", "0.999", "--must-beat", "keyword"])
    assert code == 1
    err = capsys.readouterr().err
    assert "gate FAILED: min-ndcg: ndcg@10" in err and "against a minimum of 0.9990" in err
    assert json.loads((tmp_path / "report.json").read_text())["gates"]["passed"] is False
    assert main(["evaluate", "qa", "--warehouse", str(warehouse), "--out", str(tmp_path), "--modes", "keyword,hybrid",
                 "--ann-queries", "0", "--max-queries", "50", "--min-ndcg", "0.1"]) == 0


def test_scifact_subset_with_an_ivf_pq_index_matches_exact_search(tmp_path):
    folder = scifact_subset(tmp_path / "scifact", queries=60, distractors=400)
    warehouse = tmp_path / "warehouse"
    assert main(["build-qa", "--warehouse", str(warehouse), "--documents", str(folder / "corpus.jsonl"), "--input-format", "contract",
                 "--map", "doc_id=_id", "--map", "question=title", "--map", "answer=text", "--ann-min-rows", "256"]) == 0
    figures = evaluate_qa.run(["--warehouse", str(warehouse), "--beir", str(folder), "--out", str(tmp_path / "report"),
                               "--modes", "keyword,vector,hybrid", "--ann-queries", "60"])
    results, ann = figures["results"], figures["ann"]
    assert results["vector"]["ndcg@10"] > 0.5 and results["keyword"]["ndcg@10"] > 0.5
    assert ann["indexed"] and ann["served_recall@10"] >= 0.8
    assert abs(ann["served_ndcg_loss"]) <= 0.03  # the same sampled queries through the index and exactly
    assert ann["served_ndcg@10"] == pytest.approx(results["vector"]["ndcg@10"], abs=1e-9)  # all 60 queries sampled
    assert results["hybrid"]["ndcg@10"] >= max(results["keyword"]["ndcg@10"], results["vector"]["ndcg@10"]) - 0.02
    assert [p["nprobes"] for p in ann["curve"]][:3] == [1, 2, 5]
    assert (tmp_path / "report" / "report.html").read_text().count("data:image/png;base64,") == 2
