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


def _not_blank(value: str) -> str:
    # min_length=1 lets "   " through; a question or id of only whitespace is a mistake to name.
    if not value.strip():
        raise ValueError("must contain some non-whitespace text")
    return value


Text = Annotated[str, AfterValidator(_not_blank)]


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
    user_id: Text = Field(min_length=1, max_length=256, description="External id of the user to recommend for.")
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return.")
    exclude_seen: bool = Field(True, description="Leave out items the user has already interacted with.")
    recent_item_ids: list[str] = Field(
        default_factory=list,
        max_length=MAX_FILTER_VALUES,
        description="Items of the current session; the user's vector is folded in from them (and their history, if any).",
    )
    filters: ItemFilters | None = Field(None, description="Restrict the candidate items.")


class SimilarItemsRequest(_Request):
    item_id: Text = Field(min_length=1, max_length=256, description="External id of the item to find neighbours of.")
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return.")
    signal: Literal["behaviour", "content"] = Field(
        "behaviour", description="`behaviour`: co-interaction (ALS factors); `content`: title/text embedding. Cold items use content."
    )


class SearchItemsRequest(_Request):
    query: Text = Field(min_length=1, max_length=MAX_QUESTION_CHARS, description="Free text describing the item wanted.")
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return.")
    filters: ItemFilters | None = Field(None, description="Restrict the candidate items.")


class AnswerRequest(_Request):
    question: Text = Field(min_length=1, max_length=MAX_QUESTION_CHARS, description="The question, in plain words.")
    k: int = Field(5, ge=1, le=MAX_K, description="How many answers to return.")
    mode: Literal["hybrid", "vector", "keyword"] = Field(
        "hybrid",
        description="`keyword`: BM25 over each chunk's question and answer text (full-text index); `vector`: cosine "
        "similarity of the question's embedding to each chunk's; `hybrid`: both searches, each candidate scored as "
        "cosine + w x BM25 (weighted score fusion, not reciprocal rank), w being the BM25 weight the answers table was "
        "built with (`build-qa --bm25-weight`, default 0.004). An answer counts once, by its best chunk.",
    )
    filters: AnswerFilters | None = Field(None, description="Restrict the candidate answers.")
    diversity: float | None = Field(
        None, ge=0.0, le=1.0, description="MMR lambda: 1 keeps relevance order, lower values favour answers unlike those above."
    )


class ScoredItem(BaseModel):
    item_id: str = Field(description="External id of the item.")
    title: str | None = Field(description="Catalogue title of the item.")
    category: str | None = Field(None, description="Catalogue category of the item, where it has one.")
    score: float = Field(
        description="Higher is better, on the scale of the strategy or signal: `als`/`fold_in`, the dot product of "
        "user and item ALS vectors; `popular`, the item's count of distinct users divided by the largest count (0..1, "
        "the most popular item 1); behaviour neighbours and content search, cosine similarity (-1..1)."
    )
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
    items: list[ScoredItem] = Field(description="Best first, by cosine similarity; the item itself is left out.")


class SearchItemsResponse(BaseModel):
    query: str = Field(description="The query as asked.")
    items: list[ScoredItem] = Field(description="Best first, by cosine similarity of the query's embedding and the item's content embedding.")


class ScoredAnswer(BaseModel):
    doc_id: str = Field(description="Id of the answer document (`GET /answers/{doc_id}` returns it whole).")
    text: str = Field(description="The whole answer (not only the chunk that matched).")
    question: str | None = Field(description="The question this answer was written for, where known.")
    source: str | None = Field(None, description="Where the answer comes from (the `source` filter matches this).")
    tags: list[str] = Field(default_factory=list, description="The answer's tags (the `tags` filter matches any of these).")
    chunk_id: int = Field(description="The chunk of the answer that matched best (0 is the first); long answers are split into chunks.")
    score: float = Field(
        description="Of the best chunk, higher is better: `vector`, cosine similarity; `keyword`, BM25; `hybrid`, "
        "cosine + w x BM25 (see `mode`). With `diversity` the order is MMR's, the score still the relevance one."
    )


class AnswerResponse(BaseModel):
    question: str = Field(description="The question as asked.")
    mode: str = Field(description="The retrieval mode used.")
    cached: bool = Field(description="Answered from the semantic cache: an earlier, near-identical question's answers.")
    version: dict[str, int] = Field(description="Served version of each table.")
    answers: list[ScoredAnswer] = Field(description="Best first.")


class Item(BaseModel):
    """`GET /items/{item_id}`: one catalogue item as served."""

    item_id: str = Field(description="External id of the item.")
    title: str | None = Field(description="Catalogue title.")
    category: str | None = Field(description="Catalogue category.")
    popularity: int = Field(description="Distinct users who interacted with the item in the training data.")
    version: dict[str, int] = Field(description="Served version of each table.")


class AnswerDocument(BaseModel):
    """`GET /answers/{doc_id}`: one answer document as served, its chunks joined back."""

    doc_id: str = Field(description="Id of the answer document.")
    question: str | None = Field(description="The question the answer was written for, where known.")
    text: str = Field(description="The whole answer.")
    source: str | None = Field(description="Where the answer comes from.")
    tags: list[str] = Field(description="The answer's tags.")
    chunks: int = Field(description="How many chunks the answer was split into for search.")
    version: dict[str, int] = Field(description="Served version of each table.")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx response has this shape (some add keys, e.g. `missing_tables` on a 503)."""

    error: str = Field(description="What was wrong, naming the field, and what to send instead.")
    field: str | None = Field(description="The offending request field, dotted for nested ones (`filters.category`), else null.")
    status: int = Field(description="The HTTP status, repeated.")
