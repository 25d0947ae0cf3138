"""`RecQAClient`: one method per endpoint, the JSON answers typed, every refusal a `RecQAError`.

It imports httpx only (a dependency of the service's own stack), never `serving`: a caller
gets the client without BentoML, Lance or the model. The response types mirror
serving/api.py; the server's OpenAPI spec (`/openapi.json`) is the reference.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

import httpx

DEFAULT_TIMEOUT_SECONDS = 30.0


class ScoredItem(TypedDict):
    item_id: str
    title: str | None
    category: str | None
    score: float
    reason: str | None


class RecommendResponse(TypedDict):
    user_id: str
    version: dict[str, int]
    strategy: Literal["als", "fold_in", "popular"]
    items: list[ScoredItem]


class SimilarItemsResponse(TypedDict):
    item_id: str
    signal: str
    items: list[ScoredItem]


class SearchItemsResponse(TypedDict):
    query: str
    items: list[ScoredItem]


class ScoredAnswer(TypedDict):
    doc_id: str
    chunk_id: int
    text: str
    question: str | None
    source: str | None
    tags: list[str]
    score: float


class AnswerResponse(TypedDict):
    question: str
    mode: str
    cached: bool
    version: dict[str, int]
    answers: list[ScoredAnswer]


class RecQAError(Exception):
    """The server refused a request (`status` is its HTTP status) or could not be reached (`status` None).

    `message` is the server's own error text; `field` the request field it names, if any.
    """

    def __init__(self, message: str, status: int | None = None, body: Any = None, field: str | None = None) -> None:
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.message = message
        self.status = status
        self.body = body
        self.field = field


class RecQAClient:
    """A client of one recqa server; `token` is sent as `Authorization: Bearer` (RECQA_API_TOKEN)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> "RecQAClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        recent_item_ids: list[str] | None = None,
        category: list[str] | None = None,
        exclude_item_ids: list[str] | None = None,
    ) -> RecommendResponse:
        """Items for a user, best first (`strategy` says how they were found)."""
        body: dict[str, Any] = {"user_id": user_id, "k": k, "exclude_seen": exclude_seen, "recent_item_ids": recent_item_ids or []}
        return self._post("/recommend", _with_filters(body, category=category, exclude_item_ids=exclude_item_ids))

    def similar_items(self, item_id: str, k: int = 10, *, signal: Literal["behaviour", "content"] = "behaviour") -> SimilarItemsResponse:
        """Neighbours of an item; an unknown item is a RecQAError with status 404."""
        return self._post("/similar_items", {"item_id": item_id, "k": k, "signal": signal})

    def search_items(
        self, query: str, k: int = 10, *, category: list[str] | None = None, exclude_item_ids: list[str] | None = None
    ) -> SearchItemsResponse:
        """Items whose title and text are closest to free text."""
        body = {"query": query, "k": k}
        return self._post("/search_items", _with_filters(body, category=category, exclude_item_ids=exclude_item_ids))

    def answer(
        self,
        question: str,
        k: int = 5,
        *,
        mode: Literal["hybrid", "vector", "keyword"] = "hybrid",
        source: list[str] | None = None,
        tags: list[str] | None = None,
        diversity: float | None = None,
    ) -> AnswerResponse:
        """Answers nearest to the question, best first."""
        body: dict[str, Any] = {"question": question, "k": k, "mode": mode}
        if diversity is not None:
            body["diversity"] = diversity
        return self._post("/answer", _with_filters(body, source=source, tags=tags))

    def version(self) -> dict[str, Any]:
        """What the server serves; a server not ready yet answers too (`ready` false, `reason` why)."""
        response = self._send("GET", "/version")
        if response.status_code in (200, 503) and isinstance(_json(response), dict) and "ready" in _json(response):
            return _json(response)
        raise _error(response)

    def _post(self, route: str, body: dict[str, Any]) -> Any:
        response = self._send("POST", route, json=body)
        if response.status_code != 200:
            raise _error(response)
        return response.json()

    def _send(self, method: str, route: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, route, **kwargs)
        except httpx.HTTPError as error:
            raise RecQAError(f"{method} {self._http.base_url}{route} failed: {error}") from error


def _with_filters(body: dict[str, Any], **filters: list[str] | None) -> dict[str, Any]:
    given = {name: values for name, values in filters.items() if values is not None}
    return {**body, "filters": given} if given else body


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error(response: httpx.Response) -> RecQAError:
    """The server's error, in its one shape `{"error", "field", "status"}`; a body of another
    shape (a proxy's page) is kept as text."""
    body = _json(response)
    if isinstance(body, dict) and "error" in body:
        return RecQAError(str(body["error"]), response.status_code, body, field=body.get("field"))
    return RecQAError(response.text.strip() or response.reason_phrase, response.status_code, body)
