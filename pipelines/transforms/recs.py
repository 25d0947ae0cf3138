"""DoFn-side functions of build_recs: the ALS fit over all interactions and the table rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.errors import InputError
from features.factorization import Factors, fit_als
from features.interactions import InteractionMatrix, build_matrix
from features.schemas import ALSConfig, Interaction, Item


@dataclass(frozen=True)
class TrainedModel:
    """The matrix and the factors of one fit, travelling as one element through the pipeline."""

    matrix: InteractionMatrix
    factors: Factors


def train(interactions: list[Interaction], item_ids: list[str], config: ALSConfig) -> TrainedModel:
    """Fit ALS over every interaction; catalogue items nobody touched get a column too."""
    if not interactions:
        raise InputError("no interactions were read: nothing to train on", field="interactions")
    matrix = build_matrix(interactions, item_ids=item_ids)
    return TrainedModel(matrix=matrix, factors=fit_als(matrix.matrix, config))


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


def item_row(element: tuple[str, dict[str, Iterable[Any]]]) -> dict[str, Any]:
    """An items-table row from the merged item and its content vector."""
    item_id, groups = element
    (item, vector, popularity) = next(iter(groups["item"]))
    (content_vector,) = list(groups["content"])
    return {
        "item_id": item_id,
        "title": item.title,
        "text": item.text,
        "category": item.category,
        "popularity": popularity,
        "vector": vector,
        "content_vector": content_vector,
    }
