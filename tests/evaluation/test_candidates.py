"""The candidate moves from build to evaluate to publish: what the gate judged is what is released."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import lance
import pytest

from evaluation import evaluate_qa, evaluate_recs
from evaluation.inputs import read_recs
from features.candidates import QA, RECS
from features.errors import InputError
from features.schemas import META_ALS, META_CANDIDATE, table_uri
from pipelines import build_qa, build_recs, publish
from registry.log import find_candidate, read_releases
from tests.conftest import MS_CATALOG, MS_USAGE, STACKFAQ

# Settings a tune run could have chosen; written as `recqa tune recs --out` writes them.
TUNED = {"factors": 8, "regularization": 1.0, "alpha": 2.0, "iterations": 15}


def _contract_inputs(folder: Path) -> tuple[Path, Path]:
    """Events and items whose ids a type-guessing reader would mangle: hex-like and zero-padded."""
    folder.mkdir(parents=True, exist_ok=True)
    users = ["0003000098E85347", *(f"{n:016d}" for n in range(1, 40))]
    items = ["00123", *(f"{n:05d}" for n in range(200, 215))]
    with (folder / "events.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Customer", "Product", "When"])
        for u, user in enumerate(users):
            for step in range(5):
                writer.writerow([user, items[(u + 3 * step) % len(items)], 1_600_000_000 + 3600 * (u * 10 + step)])
    with (folder / "items.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Product", "title"])  # one --map serves both inputs
        writer.writerows([item, f"product {item}"] for item in items)
    return folder / "events.csv", folder / "items.csv"


def _flags(events: Path, items: Path) -> list[str]:
    return ["--input-format", "contract", "--interactions", str(events), "--items", str(items), "--map", "user_id=Customer",
            "--map", "item_id=Product", "--map", "timestamp=When", "--timestamp-format", "epoch_s"]


def test_ids_stay_strings_through_the_pipelines_readers(tmp_path):
    events, items = _contract_inputs(tmp_path / "data")
    args, _ = build_recs.parse_args(_flags(events, items))
    dataset = read_recs(args)
    assert "0003000098E85347" in {e.user_id for e in dataset.events}
    assert "00123" in {e.item_id for e in dataset.events} and "00123" in {i.item_id for i in dataset.items}
    split = evaluate_recs._spec(evaluate_recs._parser().parse_args([])).apply(dataset.events)
    rankings = evaluate_recs.served_rankings(args, split, dataset, 5)
    assert "0003000098E85347" in rankings
    assert all(len(item) == 5 and item.startswith("00") for ranked in rankings.values() for item in ranked)


def test_evaluation_takes_the_builds_flags_and_names_a_bad_row(tmp_path):
    events, items = _contract_inputs(tmp_path / "data")
    figures = evaluate_recs.run([*_flags(events, items), "--methods", "popularity", "--out", str(tmp_path / "report")])
    assert figures["split"]["test_users"] == 40 and figures["dataset"]["events"] == 200
    assert figures["dataset"]["inputs"]["interactions"]["sha256"] == hashlib.sha256(events.read_bytes()).hexdigest()
    with events.open("a") as handle:
        handle.write("\n".join(f"u{n},00123,not-a-time" for n in range(30)) + "\n")
    with pytest.raises(InputError, match=r"(?s)30 of 230 interactions rows rejected.*events.csv:202"):
        evaluate_recs.run([*_flags(events, items), "--methods", "popularity", "--out", str(tmp_path / "report")])
    with pytest.raises(InputError, match="--halflife-days"):
        evaluate_recs.run([*_flags(events, items), "--halflife-days", "3", "--out", str(tmp_path / "report")])


def test_temporal_fraction_and_a_users_own_split_file(tmp_path):
    events, items = _contract_inputs(tmp_path / "data")
    out = str(tmp_path / "report")
    figures = evaluate_recs.run([*_flags(events, items), "--methods", "popularity", "--split", "temporal", "--fraction", "0.4", "--out", out])
    assert figures["split"]["test_events"] == 80  # each user's last 2 of 5 items
    held = tmp_path / "held.csv"
    with events.open(newline="") as source, held.open("w", newline="") as target:
        rows = list(csv.reader(source))
        csv.writer(target).writerows([rows[0], *rows[1:11]])
    figures = evaluate_recs.run([*_flags(events, items), "--methods", "popularity", "--split-file", str(held), "--out", out])
    assert figures["split"]["kind"] == "file" and figures["split"]["test_events"] == 10


@pytest.mark.slow
def test_a_tuned_candidate_is_built_evaluated_and_published_exactly(tmp_path):
    """tune's output -> build -> evaluate -> publish: the release names the judged versions and the report's hash."""
    warehouse = str(tmp_path / "warehouse")
    tuned = tmp_path / "tuned.json"
    tuned.write_text(json.dumps({"kind": "recs", "config": TUNED, "best": 0.3}))
    built = build_recs.run(["--warehouse", warehouse, "--interactions", str(MS_USAGE), "--items", str(MS_CATALOG), "--config", str(tuned)])
    candidate = find_candidate(warehouse, built.candidate, RECS)
    assert candidate.tables == built.versions and candidate.config["als"] == {**candidate.config["als"], **TUNED}
    assert candidate.inputs["interactions"]["sha256"] == hashlib.sha256(MS_USAGE.read_bytes()).hexdigest()
    assert candidate.inputs["interactions"]["rows"] == 11_838 and candidate.rows["users"] > 0

    never = build_recs.run(["--warehouse", warehouse, "--interactions", str(MS_USAGE), "--items", str(MS_CATALOG), "--factors", "4"])
    with pytest.raises(publish.PublishError, match=f"{never.candidate}: never evaluated"):
        publish.run(["--warehouse", warehouse, "--candidate", never.candidate])

    out = tmp_path / "report"
    figures = evaluate_recs.run(["--warehouse", warehouse, "--candidate", built.candidate, "--out", str(out), "--methods", "popularity"])
    assert figures["exit_code"] == 0 and figures["decision"]["passed"]
    assert [g["name"] for g in figures["decision"]["gates"]] == ["must-beat popularity"]  # nothing published: the baseline gates
    assert figures["configuration"]["als"] == candidate.config["als"]
    with pytest.raises(InputError, match="drop these flags"):
        evaluate_recs.run(["--warehouse", warehouse, "--candidate", built.candidate, "--factors", "64"])

    release = publish.run(["--warehouse", warehouse, "--candidate", built.candidate])
    current = read_releases(warehouse).current
    assert release.versions == candidate.tables == {k: current.tables[k] for k in candidate.tables}
    assert current.candidates == {RECS: built.candidate} and not current.forced
    assert current.reports[RECS] == hashlib.sha256((out / "report.json").read_bytes()).hexdigest()
    for name in ("users", "items"):  # what was evaluated is what is served
        served = lance.dataset(table_uri(warehouse, name), version=current.tables[name]).schema.metadata
        assert json.loads(served[META_ALS]) == figures["configuration"]["als"]
        assert served[META_CANDIDATE] == built.candidate.encode()

    # a worse candidate, judged against the published release in the same run, is refused
    worse = build_recs.run(["--warehouse", warehouse, "--interactions", str(MS_USAGE), "--items", str(MS_CATALOG),
                            "--factors", "32", "--regularization", "0.01", "--alpha", "0.1", "--iterations", "2"])
    figures = evaluate_recs.run(["--warehouse", warehouse, "--candidate", worse.candidate, "--out", str(tmp_path / "worse"), "--methods", "popularity"])
    assert "published" in figures["results"] and figures["exit_code"] == 1
    regression = next(g for g in figures["decision"]["gates"] if g["name"] == "max-regression")
    assert not regression["passed"] and regression["figure"] > 0.01
    assert regression["figure"] == pytest.approx(figures["results"]["published"]["ndcg"] - figures["results"]["als"]["ndcg"])
    assert figures["results"]["published"]["ndcg"] == pytest.approx(figures_first_ndcg := figures["decision"]["headline"]["published"])
    assert figures_first_ndcg > 0
    with pytest.raises(publish.PublishError, match=f"{worse.candidate}: its evaluation failed \\(max-regression"):
        publish.run(["--warehouse", warehouse, "--candidate", worse.candidate])
    assert read_releases(warehouse).current.candidates == {RECS: built.candidate}


@pytest.mark.slow
def test_a_qa_candidate_is_scored_on_its_own_version_and_a_qa_only_warehouse_publishes(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    built = build_qa.run(["--warehouse", warehouse, "--documents", str(STACKFAQ)])
    tuned = tmp_path / "tuned-qa.json"  # as `recqa tune qa --out` writes it
    from evaluation.qa import load_stackfaq, split_by_group

    tuned_on, held_out = split_by_group(load_stackfaq(STACKFAQ), 0.5, 0)
    tuned.write_text(json.dumps({"kind": "qa", "config": {"chunk_words": 20, "chunk_overlap": 5, "fts_stem": False, "bm25_weight": 0.02},
                                 "split": {"by": "thread", "train_groups": sorted(set(tuned_on.groups.values()))}}))
    later = build_qa.run(["--warehouse", warehouse, "--documents", str(STACKFAQ), "--config", str(tuned)])
    assert later.versions["answers"] > built.versions["answers"]
    config = find_candidate(warehouse, later.candidate, QA).config
    assert config["chunking"]["chunk_words"] == 20 and config["full_text"]["stem"] is False and config["bm25_weight"] == 0.02
    from serving.answers import AnswerIndex
    from evaluation.qa import open_answers
    from tests.conftest import FakeEncoder

    assert AnswerIndex(open_answers(warehouse, later.versions["answers"]), FakeEncoder())._bm25_weight == 0.02  # served as tuned
    assert AnswerIndex(open_answers(warehouse, built.versions["answers"]), FakeEncoder())._bm25_weight == 0.004
    scored = evaluate_qa.run(["--warehouse", warehouse, "--candidate", later.candidate, "--out", str(tmp_path / "r2"),
                              "--ann-queries", "0", "--modes", "keyword,hybrid"])
    assert scored["dataset"]["queries"] == len(held_out.queries) < len(tuned_on.queries) + len(held_out.queries)  # tuned threads left out
    figures = evaluate_qa.run(["--warehouse", warehouse, "--candidate", built.candidate, "--out", str(tmp_path / "r"),
                               "--ann-queries", "0", "--max-queries", "100", "--modes", "keyword,hybrid"])
    assert figures["table"]["version"] == built.versions["answers"]  # not the newest
    assert figures["decision"]["passed"] and [g["name"] for g in figures["decision"]["gates"]] == ["must-beat keyword"]
    publish.run(["--warehouse", warehouse, "--candidate", built.candidate])
    current = read_releases(warehouse).current
    assert current.tables == {"answers": built.versions["answers"]} and current.candidates == {QA: built.candidate}


def test_with_nothing_published_the_baseline_gate_is_always_judged(tmp_path):
    events, items = _contract_inputs(tmp_path / "data")
    figures = evaluate_recs.run([*_flags(events, items), "--methods", "item_knn", "--out", str(tmp_path / "report")])
    assert "popularity" in figures["results"] and [g["name"] for g in figures["decision"]["gates"]] == ["must-beat popularity"]
    with pytest.raises(InputError, match="--max-regression"):
        evaluate_recs.run([*_flags(events, items), "--max-regression", "1.5", "--out", str(tmp_path / "report")])


def test_a_candidate_is_refused_on_changed_inputs_and_on_a_split_other_than_it_was_tuned_in(tmp_path):
    from features.candidates import Candidate

    events, items = _contract_inputs(tmp_path / "data")
    args, _ = build_recs.parse_args(_flags(events, items))
    dataset = read_recs(args)
    same = Candidate("recs-20260101T000000-000000", RECS, {}, inputs=dataset.inputs)
    evaluate_recs._check_inputs(same, dataset)  # unchanged: fine
    changed = Candidate(same.id, RECS, {}, inputs={**dataset.inputs, "interactions": {**dataset.inputs["interactions"], "sha256": "0" * 64}})
    with pytest.raises(InputError, match=r"interactions input .* changed since candidate recs-20260101T000000-000000 was built"):
        evaluate_recs._check_inputs(changed, dataset)
    tuned = Candidate(same.id, RECS, {}, config={"tuned": {"split": {"kind": "temporal", "last_n": 1, "tuned_on": "validation"}}})
    evaluate_recs._check_tuned_split(evaluate_recs._parser().parse_args([]), tuned)  # the split it was tuned inside: fine
    for flags in (["--split", "random"], ["--last-n", "2"], ["--split-file", "held.csv"]):
        with pytest.raises(InputError, match="was tuned inside the training part of the split"):
            evaluate_recs._check_tuned_split(evaluate_recs._parser().parse_args(flags), tuned)
