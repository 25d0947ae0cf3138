"""Steps of build_recs: deduplication, the ALS fit over all interactions, the table rows."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np

from features.errors import InputError
from features.factorization import Factors, fit_als
from features.interactions import InteractionMatrix, WeightConfig, build_matrix
from features.schemas import ALSConfig, Interaction, Item


class DropDuplicateEvents(beam.PTransform):
    """Exact duplicate events (every field equal) are dropped and counted."""

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        return (
            events
            | "Key" >> beam.Map(lambda e: (e.user_id, e.item_id, e.timestamp, e.event, e.value))
            | "Distinct" >> beam.Distinct()
            | "Unkey" >> beam.ParDo(_CountUniqueDoFn())
        )


class _CountUniqueDoFn(beam.DoFn):
    def setup(self) -> None:
        self._unique = beam.metrics.Metrics.counter("interactions", "unique")

    def process(self, key: tuple) -> Iterator[Interaction]:
        self._unique.inc()
        yield Interaction(*key)


@dataclass(frozen=True)
class TrainedModel:
    """The matrix and the factors of one fit, travelling as one element through the pipeline."""

    matrix: InteractionMatrix
    factors: Factors


def train(interactions: list[Interaction], item_ids: list[str], weights: WeightConfig, config: ALSConfig) -> TrainedModel:
    """Fit ALS over every interaction; catalogue items nobody touched get a column too."""
    started = time.perf_counter()
    if not interactions:
        raise InputError("no interactions were read: nothing to train on", field="interactions")
    matrix = build_matrix(interactions, item_ids=item_ids, config=weights)
    if matrix.matrix.nnz == 0:
        raise InputError("no interactions left after the minimum-support filter", field="min_user_interactions")
    model = TrainedModel(matrix=matrix, factors=fit_als(matrix.matrix, config))
    beam.metrics.Metrics.counter("als", "msecs").inc(int((time.perf_counter() - started) * 1000))
    beam.metrics.Metrics.counter("als", "read").inc(len(interactions))
    return model


def user_rows(model: TrainedModel) -> Iterator[dict[str, Any]]:
    """One users-table row per user: the vector and the items already seen."""
    for user_idx, user_id in enumerate(model.matrix.user_ids):
        yield {
            "user_id": user_id,
            "vector": model.factors.user_factors[user_idx],
            "seen_item_ids": model.matrix.seen_item_ids(user_idx),
        }


def item_factors(model: TrainedModel) -> Iterator[tuple[str, tuple[np.ndarray, int]]]:
    """(item_id, (ALS vector, popularity)) for every item of the matrix."""
    popularity = model.matrix.item_popularity()
    for item_idx, item_id in enumerate(model.matrix.item_ids):
        yield item_id, (model.factors.item_factors[item_idx], int(popularity[item_idx]))


def merge_item(element: tuple[str, dict[str, Iterable[Any]]]) -> tuple[str, tuple[Item, np.ndarray, int]]:
    """Catalogue entry + factors of one item; an item missing from the catalogue is titled by its id."""
    item_id, groups = element
    catalogue = list(groups["catalogue"])
    factors = list(groups["factors"])
    if len(catalogue) > 1:
        raise InputError(f"item_id '{item_id}' appears {len(catalogue)} times in the items input", field="item_id")
    item = catalogue[0] if catalogue else Item(item_id=item_id, title=item_id)
    vector, popularity = factors[0]  # train() gives every catalogue item a column
    return item_id, (item, vector, popularity)


def item_row(merged: tuple[str, tuple[Item, np.ndarray, int]], content_vector: np.ndarray) -> dict[str, Any]:
    """An items-table row from the merged item and the content vector of its own text."""
    item_id, (item, vector, popularity) = merged
    return {
        "item_id": item_id,
        "title": item.title,
        "text": item.text,
        "category": item.category,
        "popularity": popularity,
        "vector": vector,
        "content_vector": content_vector,
    }
