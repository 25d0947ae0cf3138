"""Request and response models of the HTTP API; the descriptions become the OpenAPI docs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_K = 100
MAX_QUESTION_CHARS = 4_000
MAX_FILTER_VALUES = 1_000


def _no_nul(value: str) -> str:
    # Filter values are quoted into Lance conditions (features/filters.py), which refuse NUL:
    # say so here, as a 400 naming the field, rather than fail inside the search.
    if "\x00" in value:
        raise ValueError("filter values may not contain NUL characters")
    return value


FilterValue = Annotated[str, AfterValidator(_no_nul)]


class _Request(BaseModel):
    # An unknown field is a typo on the caller's side: say so rather than ignore it.
    model_config = ConfigDict(extra="forbid")


class ItemFilters(_Request):
    category: list[FilterValue] | None = Field(
        None, max_length=MAX_FILTER_VALUES, description="Only items whose category is one of these (exact match)."
    )
    exclude_item_ids: list[FilterValue] = Field(
        default_factory=list, max_length=MAX_FILTER_VALUES, description="Never return these items."
    )


class AnswerFilters(_Request):
    source: list[FilterValue] | None = Field(None, max_length=MAX_FILTER_VALUES, description="Only answers from these sources.")
    tags: list[FilterValue] | None = Field(None, max_length=MAX_FILTER_VALUES, description="Only answers with any of these tags.")


class RecommendRequest(_Request):
    user_id: str = Field(min_length=1, max_length=256, description="External id of the user to recommend for.")
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return.")
    exclude_seen: bool = Field(True, description="Leave out items the user has already interacted with.")
    recent_item_ids: list[str] = Field(
        default_factory=list,
        max_length=MAX_FILTER_VALUES,
        description="Items of the current session; the user's vector is folded in from them (and their history, if any).",
    )
    filters: ItemFilters | None = Field(None, description="Restrict the candidate items.")


class SimilarItemsRequest(_Request):
    item_id: str = Field(min_length=1, max_length=256, description="External id of the item to find neighbours of.")
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return.")
    signal: Literal["behaviour", "content"] = Field(
        "behaviour", description="`behaviour`: co-interaction (ALS factors); `content`: title/text embedding. Cold items use content."
    )


class SearchItemsRequest(_Request):
    query: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS, description="Free text describing the item wanted.")
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return.")
    filters: ItemFilters | None = Field(None, description="Restrict the candidate items.")


class AnswerRequest(_Request):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS, description="The question, in plain words.")
    k: int = Field(5, ge=1, le=MAX_K, description="How many answers to return.")
    mode: Literal["hybrid", "vector", "keyword"] = Field(
        "hybrid", description="`keyword`: BM25 full text; `vector`: embedding similarity; `hybrid`: both fused by reciprocal rank."
    )
    filters: AnswerFilters | None = Field(None, description="Restrict the candidate answers.")
    diversity: float | None = Field(
        None, ge=0.0, le=1.0, description="MMR lambda: 1 keeps relevance order, lower values favour answers unlike those above."
    )


class ScoredItem(BaseModel):
    item_id: str = Field(description="External id of the item.")
    title: str | None = Field(description="Catalogue title of the item.")
    score: float = Field(description="Higher is better; comparable only within one response.")
    reason: str | None = Field(None, description="The user's item most like this one (ALS factors), where there is one.")


class RecommendResponse(BaseModel):
    user_id: str = Field(description="The user the items are for.")
    version: dict[str, int] = Field(description="Served version of each table.")
    strategy: Literal["als", "fold_in", "popular"] = Field(
        description="`als`: the user's trained vector; `fold_in`: a vector solved from `recent_item_ids` "
        "(and history); `popular`: an unknown user with no known recent items gets the most popular items."
    )
    items: list[ScoredItem] = Field(description="Best first; never an item the user has already interacted with.")


class SimilarItemsResponse(BaseModel):
    item_id: str = Field(description="The item the neighbours are of.")
    signal: str = Field(description="The signal used: the one asked for, or `content` for a cold item.")
    items: list[ScoredItem] = Field(description="Best first; the item itself is left out.")


class SearchItemsResponse(BaseModel):
    query: str = Field(description="The query as asked.")
    items: list[ScoredItem] = Field(description="Best first, by cosine similarity of the query and the item's content.")


class ScoredAnswer(BaseModel):
    doc_id: str = Field(description="Id of the answer document.")
    text: str = Field(description="The answer.")
    question: str | None = Field(description="The question this answer was written for, where known.")
    score: float = Field(
        description="`vector`: cosine similarity; `keyword`: BM25; `hybrid`: reciprocal-rank-fusion score. Higher is better."
    )


class AnswerResponse(BaseModel):
    question: str = Field(description="The question as asked.")
    mode: str = Field(description="The retrieval mode used.")
    cached: bool = Field(description="Answered from the semantic cache: an earlier, near-identical question's answers.")
    version: dict[str, int] = Field(description="Served version of each table.")
    answers: list[ScoredAnswer] = Field(description="Best first.")
