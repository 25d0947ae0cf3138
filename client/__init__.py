"""A small typed Python client of the recqa HTTP API (httpx; nothing of the server imported)."""

from client.recqa import (
    AnswerResponse,
    RecommendResponse,
    RecQAClient,
    RecQAError,
    ScoredAnswer,
    ScoredItem,
    SearchItemsResponse,
    SimilarItemsResponse,
)

__all__ = [
    "AnswerResponse",
    "RecommendResponse",
    "RecQAClient",
    "RecQAError",
    "ScoredAnswer",
    "ScoredItem",
    "SearchItemsResponse",
    "SimilarItemsResponse",
]
