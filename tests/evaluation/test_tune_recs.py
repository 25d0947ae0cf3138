"""`recqa tune recs`: a seeded search on a validation split of the training part, as served."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from evaluation.recs import Dataset
from evaluation.search import Range
from evaluation.tune_recs import EVENT_PREFIX, build_config, parse_args, run, search_space, split_events, tune
from features.errors import InputError
from features.interactions import SECONDS_PER_DAY
from features.schemas import Interaction, Item
from pipelines import build_recs

BLOCK_USERS, BLOCK_ITEMS, SEEN = 24, 12, 9  # two blocks: users of a block touch 9 of its 12 items


def blocks(seed: int = 0) -> Dataset:
    """A checkerboard of events: the right recommendations are the unseen items of the user's block."""
    rng = random.Random(seed)
    events = []
    for user in range(2 * BLOCK_USERS):
        block = user // BLOCK_USERS
        items = [f"i{block * BLOCK_ITEMS + j:02d}" for j in range(BLOCK_ITEMS)]
        events += [Interaction(f"u{user:02d}", item, float(rng.randrange(1_000_000))) for item in rng.sample(items, SEEN)]
    return Dataset(events, [Item(f"i{j:02d}", f"item {j}") for j in range(2 * BLOCK_ITEMS)], (), {"interactions": {"rows": len(events)}})


def _tune(*flags: str, dataset: Dataset | None = None, **kwargs):
    tune_args, build_args = parse_args(["--out", "unused.json", "--k", "5", *flags])
    return tune(dataset or blocks(), tune_args, build_args, **kwargs)


def _argv(config: dict) -> list[str]:
    """build-recs flags that set each config key, as `--config` would set the parser's defaults."""
    argv = []
    for dest, value in config.items():
        for one in value if isinstance(value, list) else [] if value is None else [value]:
            argv += [f"--{dest.replace('_', '-')}", str(one)]
    return argv


def test_the_search_finds_a_far_better_config_than_a_deliberately_bad_start():
    result = _tune("--trials", "8", "--factors", "1", "--iterations", "1")  # rank 1 cannot tell two blocks apart
    assert result["default"] < 0.3
    assert result["best"] > result["default"] + 0.2
    assert result["chosen"] == "search" and result["config"]["factors"] >= 2
    assert result["trials"][0]["params"]["factors"] == 8  # the start, clipped into the space, is tried first
    assert result["best"] == max(t["ndcg@5"] for t in result["trials"])


def test_the_config_keys_are_build_recs_dests_and_parse_back_to_the_same_values():
    result = _tune("--trials", "3")
    args, rest = build_recs.parse_args(_argv(result["config"]))
    assert rest == []
    assert set(result["config"]) <= set(vars(args))
    assert {dest: getattr(args, dest) for dest in result["config"]} == result["config"]


def test_the_test_split_is_never_read():
    dataset = blocks()
    held = {(e.user_id, e.item_id) for e in split_events(dataset.events, "temporal", 1, None, 0).test}
    # the held-out events point at another item at the same (latest) time: the split keeps them out
    altered = [dataclasses.replace(e, item_id="i99") if (e.user_id, e.item_id) in held else e for e in dataset.events]
    first = _tune("--trials", "4", dataset=dataset)
    second = _tune("--trials", "4", dataset=dataclasses.replace(dataset, events=altered))
    for result in (first, second):
        result.pop("seconds")
        for trial in result["trials"]:
            trial.pop("seconds")
    assert first == second


def test_a_best_point_on_the_edge_of_a_narrowed_space_is_reported(capsys):
    lines = []
    result = _tune("--trials", "4", space={"factors": Range(1, 2, integer=True)}, progress=lines.append)
    assert result["config"]["factors"] == 2  # 1 factor cannot separate the blocks: the optimum lies above
    assert result["on_edge"] == ["factors"]
    assert any(line.startswith("warning: the best point is on the edge") and "factors=2 in [1, 2]" in line for line in lines)


def test_a_point_inside_the_space_is_not_on_the_edge():
    result = _tune("--trials", "1", "--factors", "8", space={"factors": Range(2, 64, integer=True)})
    assert result["config"]["factors"] == 8 and result["on_edge"] == []  # 8 sits at 40% of [2, 64] on a log scale


def test_weights_are_searched_only_where_the_data_varies():
    day = SECONDS_PER_DAY
    short = [Interaction("u", "a", 0.0), Interaction("u", "b", 10 * day)]
    space, notes = search_space(short, build_recs.weight_config(parse_args(["--out", "x"])[1]))
    assert set(space) == {"factors", "regularization", "alpha", "iterations"} and notes["span_days"] == 10

    mixed = [Interaction("u", "a", 0.0, "view"), Interaction("u", "b", 100 * day, "view"), Interaction("v", "a", 50 * day, "cart")]
    space, notes = search_space(mixed, build_recs.weight_config(parse_args(["--out", "x"])[1]))
    assert notes["reference_event"] == {"kind": "view", "weight": 1.0}  # the most frequent kind keeps its weight
    assert (space[EVENT_PREFIX + "cart"].low, space[EVENT_PREFIX + "cart"].high) == (1 / 32, 32)
    assert (space["half_life_days"].low, space["half_life_days"].high) == pytest.approx((2.0, 200.0))


def test_searched_weights_become_build_flags_that_the_build_applies_after_the_given_ones():
    _, build_args = parse_args(["--out", "x", "--event-weight", "cart=3", "--half-life-days", "9"])
    config = build_config(build_args, {EVENT_PREFIX + "cart": 0.5, "decay": False})
    assert config["event_weight"] == ["cart=3", "cart=0.5"] and config["half_life_days"] is None
    weights = build_recs.weight_config(build_recs.parse_args(_argv(config))[0])
    assert weights.event_weights["cart"] == 0.5 and weights.half_life_days is None
    assert build_config(build_args, {})["half_life_days"] == 9  # not searched: the flag's value


def test_an_unknown_flag_is_rejected_by_name_and_beam_flags_pass(capsys):
    with pytest.raises(InputError, match=r"unknown flag --fctors \(did you mean --factors\?\)"):
        parse_args(["--out", "x", "--fctors", "3"])
    with pytest.raises(InputError, match=r"unknown flag --trails \(did you mean --trials\?\)"):  # tune's own flags
        parse_args(["--out", "x", "--trails", "3"])
    tune_args, build_args = parse_args(["--out", "x", "--runner=FnApiRunner", "--factors", "7", "--trials", "3"])
    assert (tune_args.trials, build_args.factors) == (3, 7)


def test_run_reads_the_inputs_as_the_build_and_writes_the_json(tmp_path):
    dataset = blocks()
    interactions, items = tmp_path / "interactions.csv", tmp_path / "items.csv"
    interactions.write_text("user_id,item_id,timestamp\n" + "".join(f"{e.user_id},{e.item_id},{int(e.timestamp)}\n" for e in dataset.events))
    items.write_text("item_id,title\n" + "".join(f"{i.item_id},{i.title}\n" for i in dataset.items))
    out = tmp_path / "tuned" / "recs.json"
    result = run(["--input-format", "contract", "--interactions", str(interactions), "--items", str(items),
                  "--out", str(out), "--trials", "2", "--k", "5", "--space", "factors=4:16"])
    written = json.loads(out.read_text())
    assert result["out"] == str(out)
    assert {"kind", "config", "metric", "best", "default", "trials", "on_edge", "space", "split", "dataset"} <= set(written)
    assert written["kind"] == "recs" and written["metric"] == "ndcg@5" and len(written["trials"]) == 2
    assert written["space"]["factors"] == {"low": 4.0, "high": 16.0, "log": True, "integer": True}
    assert written["dataset"]["inputs"]["interactions"]["rows"] == len(dataset.events)
    assert "sha256" in json.dumps(written["dataset"]["inputs"])
