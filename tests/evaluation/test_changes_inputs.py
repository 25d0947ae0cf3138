"""Evaluation and tuning read the inputs as the build read them: the files plus the same change log snapshot."""

from __future__ import annotations

import json

import pytest

from evaluation import evaluate_recs, tune_recs
from features.changes import ITEMS, parse_deletes
from features.errors import InputError
from pipelines import build_recs, lance_io
from pipelines.options import tuned_snapshot_warning
from registry.log import find_candidate
from tests.pipelines.test_build_changes import log_changes, recs_argv, write_inputs

pytestmark = [pytest.mark.usefixtures("fake_model"), pytest.mark.slow]  # real Beam and Lance, no model; whole builds


def test_a_candidate_is_evaluated_on_exactly_the_snapshot_its_build_applied(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    inputs = write_inputs(tmp_path)
    applied = log_changes(warehouse)
    built = build_recs.run(recs_argv(warehouse, inputs))
    lance_io.append_changes(warehouse, parse_deletes(ITEMS, ["i0"])[0])  # after the build: not the candidate's data
    figures = evaluate_recs.run(["--warehouse", warehouse, "--candidate", built.candidate, "--methods", "popularity",
                                 "--out", str(tmp_path / "report")])
    dataset = figures["dataset"]
    assert dataset["changes_version"] == applied and dataset["inputs"]["changes"]["version"] == applied
    assert dataset["items"] == built.rows["items"] == 4  # i2 deleted, i9 added, i0 still there
    # 18 file events, less u3's 3 (forgotten) and the 5 others on i2 (deleted), plus 2 logged
    assert dataset["events"] == 18 - 3 - 5 + 2


def test_a_changed_snapshot_is_refused_like_changed_files(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    inputs = write_inputs(tmp_path)
    log_changes(warehouse)
    built = build_recs.run(recs_argv(warehouse, inputs))
    candidate = find_candidate(warehouse, built.candidate)
    recorded = dict(candidate.inputs["changes"])
    tampered = {**candidate.inputs, "changes": {**recorded, "sha256": "0" * 64}}
    from dataclasses import replace

    with pytest.raises(InputError, match=f"change log at version {recorded['version']} changed since candidate"):
        evaluate_recs._check_inputs(replace(candidate, inputs=tampered),
                                    evaluate_recs.read_recs(evaluate_recs._build_args(candidate, []),
                                                            evaluate_recs.changes_at(warehouse, recorded["version"])))


def test_tuning_applies_the_latest_snapshot_and_a_build_warns_when_it_applies_another(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    inputs = write_inputs(tmp_path)
    version = log_changes(warehouse)
    (tmp_path / "items.csv").write_text("item_id,title\n" + "".join(f"i{i},Item number {i}\n" for i in range(8)))
    (tmp_path / "events.csv").write_text("user_id,item_id,timestamp\n"  # enough distinct items per user for two splits
                                         + "".join(f"u{u},i{(u + j) % 8},{1_600_000_000 + 60 * j}\n" for u in range(8) for j in range(6)))
    out = tmp_path / "tuned.json"
    result = tune_recs.run(["--warehouse", warehouse, "--input-format", "contract", "--interactions", inputs["interactions"],
                            "--items", inputs["items"], "--out", str(out), "--trials", "1", "--k", "2", "--space", "factors=2:4"])
    written = json.loads(out.read_text())
    assert result["changes_version"] == written["changes_version"] == version
    assert written["dataset"]["items"] == 8 and written["dataset"]["inputs"]["changes"]["version"] == version
    args, _ = build_recs.parse_args(["--config", str(out), "--warehouse", warehouse])
    assert tuned_snapshot_warning(args, version) is None
    later = lance_io.append_changes(warehouse, parse_deletes(ITEMS, ["i0"])[0])
    assert f"tuned on change log version {version}; this build applies version {later}" in tuned_snapshot_warning(args, later)
