"""Batch job: interactions + items -> implicit ALS user/item vectors -> Lance `users`, `items`.

Items also carry a sentence embedding of their title and text (their content vector); items
nobody interacted with keep it, so the service can still find them.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
import pyarrow as pa

from features.adapters import ParseOptions
from features.candidates import RECS, new_candidate_id
from features.changes import META_CHANGES
from features.interactions import DEFAULT_EVENT_WEIGHTS, WeightConfig
from features.schemas import (
    ALS_INDEX,
    CONTENT_INDEX,
    DEFAULT_MODEL_NAME,
    ITEMS_TABLE,
    META_ALS,
    META_CANDIDATE,
    META_FIT,
    USERS_TABLE,
    ALSConfig,
    TableMetadata,
    items_schema,
    users_schema,
)
from features.text import item_text
from features.timestamps import AUTO, check_timestamp_format
from pipelines import lance_io
from pipelines.candidates import build_flags, input_rows, record_build
from pipelines.options import JobResult, job_parser, parse_job_args, pipeline_options, rejects_dir, tuned_record, warn_tuned_snapshot
from pipelines.summary import stage_rows
from pipelines.transforms.changes import apply_changes, folded, snapshot_input
from pipelines.transforms.encode import EncodeTexts, add_encoder_arguments, check_encoding
from pipelines.transforms.lance_write import WriteTable
from pipelines.transforms.quality import CheckRejects
from pipelines.transforms.read import MS_STORE, InputSpec, ReadRecords, files_sha256, input_mappings, parse_mapping
from pipelines.transforms.recs import DropDuplicateEvents, item_factors, item_row, merge_item, train, user_rows
from registry.log import ChangeLog, read_changes

PROG = "recqa build-recs"
DEFAULT_INTERACTIONS = "data/ms-store/demoUsage.csv"
DEFAULT_ITEMS = "data/ms-store/demoCatalog.csv"


def arg_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """Every flag of the job (Beam's aside): what build, validate, tune and evaluate parse."""
    parser = job_parser(prog, __doc__.splitlines()[0])
    parser.add_argument("--interactions", default=DEFAULT_INTERACTIONS, help="interactions file, glob or URI")
    parser.add_argument("--items", default=DEFAULT_ITEMS, help="items (catalogue) file, glob or URI")
    parser.add_argument("--input-format", default=MS_STORE, choices=["contract", "ms-store"], help="layout of both inputs")
    parser.add_argument("--map", action="append", metavar="COLUMN=SOURCE",
                        help="contract column from a differently named source column, in every input that has it (repeatable; default: none)")
    parser.add_argument("--map-interactions", action="append", metavar="COLUMN=SOURCE",
                        help="as --map, for the interactions only; wins over --map (repeatable; default: none)")
    parser.add_argument("--map-items", action="append", metavar="COLUMN=SOURCE",
                        help="as --map, for the items only; wins over --map (repeatable; default: none)")
    parser.add_argument("--timestamp-format", default=AUTO, help="auto, epoch_s, epoch_ms, iso, or a strftime pattern")
    parser.add_argument("--event-weight", action="append", metavar="EVENT=WEIGHT", help="replace the weight of an event (repeatable)")
    parser.add_argument("--half-life-days", type=float, default=None, help="decay weights by age (none by default)")
    parser.add_argument("--min-user-interactions", type=int, default=1,
                        help="users with fewer distinct items are left out of the fit (they get the popular fallback)")
    parser.add_argument("--min-item-interactions", type=int, default=1,
                        help="items with fewer distinct users are left out of the fit (they stay as cold items)")
    parser.add_argument("--model", default=DEFAULT_MODEL_NAME, help="sentence-transformers model name or folder")
    add_encoder_arguments(parser)
    defaults = ALSConfig()
    parser.add_argument("--factors", type=int, default=defaults.factors, help="ALS: dimension of the user and item vectors")
    parser.add_argument("--regularization", type=float, default=defaults.regularization, help="ALS: L2 penalty on the vectors")
    parser.add_argument("--alpha", type=float, default=defaults.alpha, help="ALS: confidence per unit of event weight")
    parser.add_argument("--iterations", type=int, default=defaults.iterations, help="ALS: alternating least-squares sweeps")
    parser.add_argument("--random-state", type=int, default=defaults.random_state, help="ALS: seed of the initial vectors")
    return parser


def parse_args(argv: Sequence[str] | None, prog: str = PROG, also: Sequence[str] = ()) -> tuple[Any, list[str]]:
    """The job's flags, and Beam's flags for Beam; any other flag fails naming it (`also`: a wrapping
    command's flags, suggested for a typo)."""
    return parse_job_args(arg_parser(prog), argv, RECS, also)


def _event_weights(pairs: list[str] | None) -> dict[str, float]:
    weights = dict(DEFAULT_EVENT_WEIGHTS)
    for event, weight in parse_mapping(pairs, "--event-weight").items():
        weights[event.lower()] = float(weight)
    return weights


def _users_schema(row: dict[str, Any], factors: int) -> pa.Schema:
    return users_schema(factors)


def _items_schema(row: dict[str, Any], factors: int) -> pa.Schema:
    return items_schema(factors, len(row[CONTENT_INDEX.column]))


def _commit(
    items_written: list, users_written: list, *checks: bool, warehouse: str, als: ALSConfig, model: str, ann_min_rows: int,
    candidate: str, changes_version: int = 0,
) -> None:
    """The run's only visible change: one commit per table, after every check passed.

    The candidate id doubles as the fit id: users and items of one run carry the same one. Both
    carry the change log version applied, so the service overlays only what came after it.
    """
    assert all(checks)  # CheckRejects raises rather than return False; this makes the wait explicit
    als_meta = {META_ALS: json.dumps(dataclasses.asdict(als)).encode(), META_FIT: candidate.encode(), META_CANDIDATE: candidate.encode(),
                META_CHANGES: str(changes_version).encode()}
    dimension = items_written[0][0].field(CONTENT_INDEX.column).type.list_size if items_written else 0
    lance_io.commit_fragments(warehouse, ITEMS_TABLE, items_written, {**TableMetadata(model, dimension).to_arrow(), **als_meta})
    lance_io.commit_fragments(warehouse, USERS_TABLE, users_written, als_meta)
    configs = [dataclasses.replace(c, min_rows_for_ann=ann_min_rows) for c in (ALS_INDEX, CONTENT_INDEX)]
    lance_io.create_vector_indexes(warehouse, ITEMS_TABLE, configs, candidate=candidate)


def weight_config(args: Any) -> WeightConfig:
    """How the flags turn events into confidences: the build's, and what `recqa tune recs` scores with."""
    return WeightConfig(_event_weights(args.event_weight), args.half_life_days, args.min_user_interactions, args.min_item_interactions)


def input_specs(args: Any) -> tuple[InputSpec, InputSpec]:
    """The interactions and items inputs the flags describe (what `recqa validate recs` checks)."""
    parse = ParseOptions(check_timestamp_format(args.timestamp_format), args.max_text_chars, frozenset(weight_config(args).event_weights))
    mappings = input_mappings(args.map, {"interactions": args.map_interactions, "items": args.map_items})
    return (
        InputSpec("interactions", args.interactions, args.input_format, mappings["interactions"], parse),
        InputSpec("items", args.items, args.input_format, mappings["items"], parse),
    )


def als_config(args: Any) -> ALSConfig:
    """The ALS settings the flags (and --config) ask for."""
    return ALSConfig(args.factors, args.regularization, args.alpha, args.iterations, args.random_state)




def candidate_config(args: Any) -> dict[str, Any]:
    """What a candidate records as its configuration: every setting the build used."""
    weights = weight_config(args)
    return {
        "flags": build_flags(args, ("interactions", "items")),
        "als": dataclasses.asdict(als_config(args)),
        "weights": {**dataclasses.asdict(weights), "event_weights": dict(weights.event_weights)},
        "encoder": args.model,
        "tuned": tuned_record(args),
        "index": {"ann_min_rows": args.ann_min_rows, "als": dataclasses.asdict(ALS_INDEX), "content": dataclasses.asdict(CONTENT_INDEX)},
    }


def run(argv: Sequence[str] | None = None, changes: ChangeLog | None = None) -> JobResult:
    """Build the `users` and `items` tables as new versions, recorded as one candidate.

    `changes`: the change log snapshot to apply over the input files (default: the log of
    --warehouse, read once now; a change acknowledged later is the next build's).
    """
    args, beam_args = parse_args(argv)
    log = changes if changes is not None else read_changes(args.warehouse)
    warn_tuned_snapshot(args, log.version)
    applied = folded(log)
    als = als_config(args)
    weights = weight_config(args)
    interactions_spec, items_spec = input_specs(args)
    candidate = new_candidate_id(RECS)
    check_encoding(args.encoder_backend, args.quantize, args.device)  # a refused flag writes nothing, not even the tag
    lance_io.ensure_candidates_table(args.warehouse)  # now, long before this run appends to it
    lance_io.tag_changes_snapshot(args.warehouse, log.version, candidate)  # kept readable for its evaluation
    rejects = rejects_dir(args, "build-recs")
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    hashes = {spec.kind: files_sha256(spec.path) for spec in (interactions_spec, items_spec)}  # what this run reads
    events = pipeline | "ReadInteractions" >> ReadRecords(interactions_spec)
    catalogue = pipeline | "ReadItems" >> ReadRecords(items_spec)
    events_ok = events | "CheckInteractions" >> CheckRejects("interactions", args.max_reject_fraction, rejects)
    items_ok = catalogue | "CheckItems" >> CheckRejects("items", args.max_reject_fraction, rejects)

    records = apply_changes(catalogue["records"], "items", applied, "ApplyItemChanges")
    interactions = apply_changes(events["records"], "interactions", applied, "ApplyEventChanges") | "DropDuplicates" >> DropDuplicateEvents()
    item_ids = records | "ItemIds" >> beam.Map(lambda item: item.item_id)
    model = (
        interactions
        | "GatherInteractions" >> beam.combiners.ToList()
        | "FitALS" >> beam.Map(train, item_ids=beam.pvalue.AsList(item_ids), weights=weights, config=als)
    )
    users_written = (
        model
        | "UserRows" >> beam.FlatMap(user_rows)
        | "WriteUsers" >> WriteTable(args.warehouse, USERS_TABLE, functools.partial(_users_schema, factors=als.factors))
    )
    merged = (
        {
            "catalogue": records | "KeyItems" >> beam.Map(lambda item: (item.item_id, item)),
            "factors": model | "ItemFactors" >> beam.FlatMap(item_factors),
        }
        | "JoinCatalogue" >> beam.CoGroupByKey()
        | "MergeItem" >> beam.Map(merge_item)
    )
    items_written = (
        merged
        | "ItemText" >> beam.MapTuple(lambda item_id, parts: ((item_id, parts), item_text(parts[0])))
        | "EncodeItems" >> EncodeTexts(args.model, stage="encode-items", backend=args.encoder_backend, quantize=args.quantize,
                                            device=args.device)
        | "ItemRows" >> beam.MapTuple(item_row)
        | "WriteItems" >> WriteTable(args.warehouse, ITEMS_TABLE, functools.partial(_items_schema, factors=als.factors))
    )
    _ = items_written | "Commit" >> beam.Map(
        _commit,
        beam.pvalue.AsSingleton(users_written),
        beam.pvalue.AsSingleton(events_ok),
        beam.pvalue.AsSingleton(items_ok),
        warehouse=args.warehouse,
        als=als,
        model=args.model,
        ann_min_rows=args.ann_min_rows,
        candidate=candidate,
        changes_version=log.version,
    )
    result = pipeline.run()
    result.wait_until_finish()
    counts = input_rows(stage_rows(result), ("interactions", "items"))
    inputs = {**{kind: {**hashes[kind], **counts.get(kind, {})} for kind in hashes}, **snapshot_input(log)}
    config = {**candidate_config(args), "changes_version": log.version}
    built = record_build(args.warehouse, candidate, RECS, [USERS_TABLE, ITEMS_TABLE], config, inputs)
    return JobResult.of_candidate(built, result)


if __name__ == "__main__":
    print(run().summary())
