"""The API's documentation against the code: OpenAPI descriptions and the README's API table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from features.retrieval import BM25_WEIGHT
from serving.answers import AnswerIndex
from serving.api import AnswerRequest, RecommendRequest, ScoredAnswer, ScoredItem, SearchItemsRequest, SimilarItemsRequest
from serving.service import RecQA

README = Path(__file__).resolve().parents[2] / "README.md"
REQUESTS = {"/recommend": RecommendRequest, "/similar_items": SimilarItemsRequest, "/search_items": SearchItemsRequest, "/answer": AnswerRequest}


def _description(model: type[BaseModel], field: str) -> str:
    return model.model_fields[field].description or ""


def test_hybrid_is_described_as_the_fusion_the_code_runs():
    import inspect

    fusion = inspect.signature(AnswerIndex.__init__).parameters["fusion"].default
    assert fusion == "score"  # the served hybrid: cosine + weight x BM25
    mode = _description(AnswerRequest, "mode")
    assert "cosine + w x BM25" in mode and "bm25-weight" in mode and f"default {BM25_WEIGHT}" in mode
    assert "fused by reciprocal rank" not in mode and "reciprocal-rank-fusion" not in _description(ScoredAnswer, "score")
    endpoint = RecQA.apis["answer"].func.__doc__ or ""
    assert "BM25" in endpoint and "cosine + w x BM25" in endpoint


def test_popular_scores_are_described_on_the_scale_they_are_served():
    score = _description(ScoredItem, "score")
    assert "divided by the largest count" in score and "0..1" in score


def _readme_api_rows() -> dict[str, str]:
    """README API table: endpoint -> body column, for the POST endpoints."""
    section = README.read_text().split("## API", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`POST (/\w+)`", cells[0]) if cells else None
        if match:
            rows[match.group(1)] = cells[1]
    return rows


def _resolve(model: type[BaseModel], dotted: str) -> bool:
    """Whether `a.b` is a field `a` of `model` whose (optional) model type has a field `b`."""
    head, _, rest = dotted.partition(".")
    field = model.model_fields.get(head)
    if field is None:
        return False
    if not rest:
        return True
    nested = [arg for arg in getattr(field.annotation, "__args__", (field.annotation,)) if isinstance(arg, type) and issubclass(arg, BaseModel)]
    return any(_resolve(inner, rest) for inner in nested)


def test_every_request_field_in_the_readme_table_exists_at_its_nesting():
    rows = _readme_api_rows()
    assert set(rows) == set(REQUESTS) == {method.route for method in RecQA.apis.values()}
    for route, body in rows.items():
        named = re.findall(r"`([\w.]+)`", re.sub(r"\([^)]*\)", "", body))  # parentheses hold values, not fields
        assert named, route
        missing = [name for name in named if not _resolve(REQUESTS[route], name)]
        assert not missing, f"{route}: README names {missing}, not fields of {REQUESTS[route].__name__}"
        top_level = {name.split(".")[0] for name in named}
        assert top_level == set(REQUESTS[route].model_fields), f"{route}: README and the model list different fields"


@pytest.mark.parametrize("model", [*REQUESTS.values(), ScoredItem, ScoredAnswer])
def test_every_field_is_described(model):
    assert all(field.description for field in model.model_fields.values()), model.__name__
