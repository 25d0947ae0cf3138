"""Batch job: interactions + items -> implicit ALS user/item vectors -> Lance `users`, `items`.

Items also carry a sentence embedding of their title and text (their content vector).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import apache_beam as beam

from features.schemas import (
    DEFAULT_MODEL_NAME,
    ITEMS_TABLE,
    META_ALS,
    USERS_TABLE,
    ALSConfig,
    TableMetadata,
    items_schema,
    users_schema,
)
from features.text import item_text
from pipelines import lance_io
from pipelines.options import JobResult, job_parser, pipeline_options
from pipelines.transforms.encode import EncodeTexts
from pipelines.transforms.read import MS_STORE, ReadInteractions, ReadItems
from pipelines.transforms.recs import item_factors, item_row, merge_item, train, user_rows

DEFAULT_INTERACTIONS = "data/ms-store/demoUsage.csv"
DEFAULT_ITEMS = "data/ms-store/demoCatalog.csv"


def _parse(argv: Sequence[str] | None) -> tuple[Any, list[str]]:
    parser = job_parser("recqa build-recs", __doc__.splitlines()[0])
    parser.add_argument("--interactions", default=DEFAULT_INTERACTIONS, help="interactions file or glob")
    parser.add_argument("--items", default=DEFAULT_ITEMS, help="items (catalogue) file or glob")
    parser.add_argument(
        "--input-format", default=MS_STORE, choices=["contract", "ms-store"], help="layout of both inputs"
    )
    parser.add_argument("--model", default=DEFAULT_MODEL_NAME, help="sentence-transformers model name or folder")
    defaults = ALSConfig()
    parser.add_argument("--factors", type=int, default=defaults.factors)
    parser.add_argument("--regularization", type=float, default=defaults.regularization)
    parser.add_argument("--alpha", type=float, default=defaults.alpha)
    parser.add_argument("--iterations", type=int, default=defaults.iterations)
    parser.add_argument("--random-state", type=int, default=defaults.random_state)
    return parser.parse_known_args(argv)


def _als_metadata(als: ALSConfig) -> dict[bytes, bytes]:
    return {META_ALS: json.dumps(asdict(als)).encode()}


def _write_tables(
    item_rows: list[dict[str, Any]], user_rows: list[dict[str, Any]], warehouse: str, als: ALSConfig, model: str
) -> None:
    """Write both tables in one step, after every row of both exists.

    Both tables come from one fit, so neither is written unless the whole run got this far.
    """
    dimension = len(item_rows[0]["content_vector"]) if item_rows else 0
    items = lance_io.to_arrow(item_rows, items_schema(als.factors, dimension))
    users = lance_io.to_arrow(user_rows, users_schema(als.factors))
    item_metadata = {**TableMetadata(encoder=model, dimension=dimension).to_arrow(), **_als_metadata(als)}
    lance_io.write_table(warehouse, ITEMS_TABLE, items, item_metadata)
    lance_io.write_table(warehouse, USERS_TABLE, users, _als_metadata(als))


def run(argv: Sequence[str] | None = None) -> JobResult:
    """Build the `users` and `items` tables; returns their new versions and row counts."""
    args, beam_args = _parse(argv)
    als = ALSConfig(
        factors=args.factors,
        regularization=args.regularization,
        alpha=args.alpha,
        iterations=args.iterations,
        random_state=args.random_state,
    )
    with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
        interactions = pipeline | "ReadInteractions" >> ReadInteractions(args.interactions, args.input_format)
        items = pipeline | "ReadItems" >> ReadItems(args.items, args.input_format)
        item_ids = items | "ItemIds" >> beam.Map(lambda item: item.item_id)
        model = (
            interactions
            | "GatherInteractions" >> beam.combiners.ToList()
            | "FitALS" >> beam.Map(train, item_ids=beam.pvalue.AsList(item_ids), config=als)
        )
        users = model | "UserRows" >> beam.FlatMap(user_rows) | "GatherUsers" >> beam.combiners.ToList()
        merged = {
            "catalogue": items | "KeyItems" >> beam.Map(lambda item: (item.item_id, item)),
            "factors": model | "ItemFactors" >> beam.FlatMap(item_factors),
        } | "JoinCatalogue" >> beam.CoGroupByKey() | "MergeItem" >> beam.Map(merge_item)
        content = (
            merged
            | "ItemText" >> beam.MapTuple(lambda item_id, merged_item: (item_id, item_text(merged_item[0])))
            | "EncodeItems" >> EncodeTexts(args.model)
        )
        _ = (
            {"item": merged, "content": content}
            | "JoinContent" >> beam.CoGroupByKey()
            | "ItemRows" >> beam.Map(item_row)
            | "GatherItems" >> beam.combiners.ToList()
            | "WriteTables" >> beam.Map(_write_tables, beam.pvalue.AsSingleton(users), args.warehouse, als, args.model)
        )
    return JobResult.of(args.warehouse, [USERS_TABLE, ITEMS_TABLE])


if __name__ == "__main__":
    print(run().summary())
