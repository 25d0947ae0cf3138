"""The BentoML service: each endpoint validates, asks the Store, and shapes the response.

The tables and the model load once per worker in `__init__`, never at import; the questions
of concurrent requests share forward passes (serving/encoders.py).
A warehouse that cannot be opened leaves the process up (liveness) but not ready, with the reason.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import anyio
import anyio.to_thread
import bentoml
from bentoml import server_context
from bentoml._internal.configuration.containers import BentoMLContainer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from features.schemas import ALS_INDEX, ANSWER_INDEX, ANSWERS_TABLE, CONTENT_INDEX, ITEMS_TABLE, IndexConfig
from ingest.forward import IngestProcess, IngestUnavailable
from ingest.routes import INGEST_PREFIX
from serving.api import (
    AnswerDocument,
    AnswerFilters,
    AnswerRequest,
    ItemFilters,
    AnswerResponse,
    Item,
    RecommendRequest,
    RecommendResponse,
    ScoredAnswer,
    ScoredItem,
    SearchItemsRequest,
    SearchItemsResponse,
    SimilarItemsRequest,
    SimilarItemsResponse,
)
from serving.docs import docs_routes, openapi_spec
from serving.encoders import MAX_BATCH_SIZE, available_cores, encoder_lanes, load_batch_encoder, lone_encoder
from serving.errors import error_body, error_response
from serving.front import FrontDoor, RestorePath, without_unexported_tracing
from serving.guard import GuardMiddleware
from serving.recommender import Recommender
from serving.settings import GuardSettings, LogSettings, ServiceSettings, WorkerSettings
from serving.startup import QueryEncoders, ServedState, limit_blas_threads, served_versions_text, service_metrics
from serving.store import ANSWER_TABLES, RECOMMENDATION_TABLES, Store

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 30
# BentoML runs sync APIs on a pool of this many threads (its default is 1: one request at a
# time). Handlers mostly wait on Lance (Rust) or the model (ONNX Runtime, PyTorch), which
# release the GIL, so concurrent requests overlap and their questions are batched.
API_THREADS = 32
# /recommend runs on the event loop while one user's scores take at most this many multiply-adds
# (items x factors; the full-size catalogue is 100,000 x 64): numpy over memory, no I/O, which
# under load costs the loop less than handing the request to a thread and back
# (benchmarks/RESULTS.md, "Serving, thirteenth run"). A larger catalogue would hold the loop,
# and every other request with it, for longer: it goes to threads. So does a request with
# `recent_item_ids`, whatever the size: folding them in loops over the user's history in
# Python and, after a change to the catalogue, makes the items' YᵀY again.
LOOP_MAX_SCORING = 200_000 * 64
WORKERS = WorkerSettings.from_env().workers


def served_workers() -> int:
    """The processes BentoML runs this service in: RECQA_WORKERS, unless a BentoML configuration
    (BENTOML_CONFIG, BENTOML_CONFIG_OPTIONS) sets `services.recqa.workers`, which then wins."""
    try:
        value = BentoMLContainer.config.services.get().get("recqa", {}).get("workers", WORKERS)
    except KeyError:  # no BentoML configuration loaded: the service's own setting
        return WORKERS
    return max(1, int(available_cores())) if value == "cpu_count" else int(value or 1)  # as BentoML's allocator reads it


def _version(request: Request) -> JSONResponse:
    """GET /version: what is served, or 503 with the reason it is not ready yet (the error shape plus the same fields)."""
    service = bentoml.get_current_service()
    info = service.version_info()
    if info["ready"]:
        return JSONResponse(info)
    return JSONResponse(error_body(503, f"not ready: {info['reason']}", **info), status_code=503)


def _item(request: Request) -> JSONResponse:
    """GET /items/{item_id}: one catalogue item; 404 naming item_id when unknown."""
    return bentoml.get_current_service().item(request.path_params["item_id"])


def _answer_document(request: Request) -> JSONResponse:
    """GET /answers/{doc_id}: one answer document; 404 naming doc_id when unknown."""
    return bentoml.get_current_service().answer_document(request.path_params["doc_id"])


def _admin_reload(request: Request) -> JSONResponse:
    """POST /admin/reload: check the release log now instead of at the next poll."""
    return _admin_answer(bentoml.get_current_service().admin_reload())


def _admin_flush(request: Request) -> JSONResponse:
    """POST /admin/cache/flush: empty the semantic cache of /answer."""
    return _admin_answer(bentoml.get_current_service().admin_flush())


def _admin_answer(result: dict[str, Any]) -> JSONResponse:
    if "reason" in result:
        return error_response(503, f"not ready: {result['reason']}")
    return JSONResponse(result)


# BentoML APIs are POST with a JSON body; plain routes live in a small Starlette app mounted
# beside them. The admin routes are reached only through GuardMiddleware's token check.
_info_app = Starlette(
    routes=[
        Route("/version", _version, methods=["GET"]),
        Route("/items/{item_id:path}", _item, methods=["GET"]),
        Route("/answers/{doc_id:path}", _answer_document, methods=["GET"]),
        Route("/admin/reload", _admin_reload, methods=["POST"]),
        Route("/admin/cache/flush", _admin_flush, methods=["POST"]),
    ]
)
# The write API (ingest/): same port, its own token (GuardMiddleware), forwarded to a process
# of its own (the writer, and the model its commits' texts are embedded with ahead), started
# with the service when RECQA_INGEST_TOKEN is set, over the warehouse of the service settings.
# FrontDoor hands its requests straight to its guard: none goes through BentoML's layers, whose
# work per request is on the event loop the reads share.
def _server_pid() -> int:
    """The process whose workers share one writer: BentoML's arbiter, which started this worker,
    or this process when the app runs in it (an in-process test)."""
    return os.getppid() if server_context.worker_index is not None else os.getpid()


_ingest = IngestProcess(lambda: ServiceSettings.from_env().warehouse, _server_pid)
_ingest_routes = _ingest.routes()
_ingest_door = GuardMiddleware(Starlette(routes=_ingest_routes), json_routes=frozenset(route.path for route in _ingest_routes))


class RecQAService(bentoml.Service):
    """BentoML's service with `FrontDoor` around the app it builds (under `bentoml serve` and `to_asgi` alike).

    BentoML installs its request-metrics middleware outermost, labelling each request by its
    path; only a layer outside it can keep unknown paths from each becoming a series. Its
    OpenTelemetry middleware is left out unless BentoML's tracing has an exporter.
    """

    def to_asgi(self, is_main: bool = True) -> Any:
        app = super().to_asgi(is_main)  # loads the service's configuration first, tracing included
        return FrontDoor(without_unexported_tracing(app, BentoMLContainer.config.tracing.exporter_type.get()), {INGEST_PREFIX: _ingest_door})


@bentoml.asgi_app(_info_app, path="/")
@bentoml.service(
    name="recqa",
    workers=WORKERS,  # RECQA_WORKERS (serving/settings.py): one unless asked
    threads=API_THREADS,
    traffic={"timeout": REQUEST_TIMEOUT_SECONDS},
    logging={"access": {"enabled": LogSettings.from_env().access_log}},  # off unless RECQA_ACCESS_LOG (serving/settings.py)
    service_class=RecQAService,
)
class RecQA:
    def __init__(self) -> None:
        self.workers = served_workers()
        guard = GuardSettings.from_env()  # this start's tokens
        limit_blas_threads()
        self.settings = ServiceSettings.from_env()  # a bad variable stops the start, naming it
        self.encoder_lanes = encoder_lanes(self.settings.encoder_threads, workers=self.workers)  # this worker's forward passes at once
        self.metrics = service_metrics()
        self._recommend_threads = anyio.CapacityLimiter(API_THREADS)  # /recommend's thread path, as BentoML's sync APIs
        self.state = ServedState.start(self.settings, self._encoders)
        _ingest.on_commit = self.metrics.observe_commit  # the writer's commits by stage, in /metrics
        _ingest_door.settings = guard  # the write API's door sees no lifespan of its own
        if _ingest_door.settings.ingest_token and server_context.worker_index in (None, 1):
            try:
                _ingest.start()  # it loads its model meanwhile: the first write does not wait; the other workers share it
            except IngestUnavailable as error:  # the reads still serve; each write answers 503 with this reason
                logger.error("the write API cannot start its writer: %s", error)

    def _encoders(self) -> QueryEncoders:
        settings = self.settings
        threads, lanes = settings.encoder_threads, self.encoder_lanes
        wide = threads * lanes if lanes > 1 else None  # a lone question on every lane's cores
        model = load_batch_encoder(settings.model_name, settings.encoder_backend, threads, settings.encoder_precision, wide)
        return QueryEncoders.of(model, self.metrics.observe_batch, lanes, lone_encoder(model))

    @bentoml.on_shutdown
    def stop_following(self) -> None:
        """Stop polling the release log: a stopped service (or one of an in-process test) keeps no poller."""
        self.state.stop()
        _ingest.close()  # queued writes are committed (and answered) before the ingest process goes

    def version_info(self) -> dict[str, Any]:
        """Served table versions, the encoder, and the search parameters of each served vector index."""
        store = self.state.current()
        return {
            "ready": store is not None,
            "reason": None if store is not None else self.state.not_ready_reason,
            "tables": store.versions if store is not None else {},
            "model": self.settings.model_name,
            "indexes": {  # before a release, every index the service would search
                f"{table}.{config.column}": {
                    "distance_type": config.distance_type,
                    "nprobes": config.nprobes,
                    "refine_factor": config.refine_factor,
                    "ann_min_rows": config.min_rows_for_ann,
                }
                for table, config in _searched_indexes(store)
            },
            "encoder": {
                "backend": self.settings.encoder_backend,
                "batch_precision": self.settings.encoder_precision,
                "threads": self.settings.encoder_threads,
                "max_batch": MAX_BATCH_SIZE,  # concurrent questions per batch (one encoder call)
                "lanes": self.encoder_lanes,  # forward passes at once, in this worker
                "workers": self.workers,
            },
            "cache": {"threshold": self.settings.cache_threshold, "capacity": self.settings.cache_capacity},
            # which path searches the served answers version: memory or Lance (serving/memory.py)
            "answer_search": store.answers.search_info() if store is not None and store.answers is not None
            else {"budget_mb": self.settings.memory_budget_mb},
            # the same for the items' content vectors (/search_items, /similar_items by content)
            "item_search": store.recommender.content_search_info() if store is not None and store.recommender is not None
            else {"budget_mb": self.settings.memory_budget_mb},
        }

    def admin_reload(self) -> dict[str, Any]:
        """Re-check the release log now; says whether the served versions changed."""
        follower = self.state.follower
        if follower is None:
            return {"reason": self.state.not_ready_reason}
        swapped = follower.refresh()
        store = follower.current()
        if store is None:
            return {"reason": self.state.not_ready_reason}
        logger.info("admin reload: %s", "swapped" if swapped else "unchanged")
        return {"swapped": swapped, "tables": store.versions}

    def admin_flush(self) -> dict[str, Any]:
        """Empty the semantic cache; says how many entries went."""
        if self.state.cache is None:
            return {"reason": self.state.not_ready_reason}
        flushed = self.state.cache.clear()
        logger.info("admin cache flush: %d entries", flushed)
        return {"flushed": flushed}

    def __is_ready__(self) -> bool:
        return self.state.current() is not None

    def _store(self, needed: tuple[str, ...]) -> Store | JSONResponse:
        """The Store this request uses from start to end, even if a reload swaps in another; or
        the 503 to answer with: not ready (the reason), or the release lacks the `needed` tables.

        A response of our own, not an exception: BentoML would replace a 5xx's message with a
        generic one, and the caller should see why (the front door logs it at ERROR).
        """
        store = self.state.current()
        if store is None:
            return error_response(503, f"not ready: {self.state.not_ready_reason}")
        reason = store.absent(needed)
        if reason is not None:
            return error_response(503, reason, missing_tables=[t for t in needed if t not in store.versions])
        return store

    def item(self, item_id: str) -> JSONResponse:
        """An item of the served catalogue as `Item`, or the error response."""
        store = self._store(RECOMMENDATION_TABLES)
        if isinstance(store, JSONResponse):
            return store
        recommender = store.recommender
        if not item_id.strip() or not recommender.has_item(item_id):
            return _unknown("item_id", item_id)
        found = Item(
            item_id=item_id,
            title=recommender.title(item_id),
            category=recommender.category(item_id),
            popularity=recommender.popularity(item_id),
            version=store.versions,
        )
        return JSONResponse(found.model_dump())

    def answer_document(self, doc_id: str) -> JSONResponse:
        """An answer document of the served answers table as `AnswerDocument`, or the error response."""
        store = self._store(ANSWER_TABLES)
        if isinstance(store, JSONResponse):
            return store
        found = store.answers.document(doc_id) if doc_id.strip() else None
        if found is None:
            return _unknown("doc_id", doc_id)
        return JSONResponse(AnswerDocument(**found, version=store.versions).model_dump())

    def __metrics__(self, exported: str) -> str:
        """BentoML's /metrics text plus the served version of each served table."""
        store = self.state.current()
        return exported + served_versions_text(store.versions if store is not None else {})

    @staticmethod
    def _items(recommender: Recommender, ranked: list[tuple[str, float]], known: list[str] | None = None) -> list[ScoredItem]:
        """The ranked ids as response items; with `known` (the user's items) each says which one it is most like."""
        reasons = recommender.reasons(known or (), [i for i, _ in ranked])
        return [
            ScoredItem(item_id=i, title=recommender.title(i), category=recommender.category(i), score=s, reason=reason)
            for (i, s), reason in zip(ranked, reasons)
        ]

    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    async def recommend(self, **fields: Any) -> RecommendResponse:
        """Items for a user, excluding what they already have; unknown users get popular items."""
        req = RecommendRequest.model_construct(**fields)
        store = self._store(RECOMMENDATION_TABLES)
        if isinstance(store, JSONResponse):
            return store
        if not req.recent_item_ids and store.recommender.scoring_size <= LOOP_MAX_SCORING:
            return self._recommend(req, store)  # memory only, no I/O: see LOOP_MAX_SCORING
        return await anyio.to_thread.run_sync(self._recommend, req, store, limiter=self._recommend_threads)

    def _recommend(self, req: RecommendRequest, store: Store) -> RecommendResponse:
        recommender = store.recommender
        filters = req.filters or ItemFilters()
        found = recommender.for_user(req.user_id, req.k, req.exclude_seen, req.recent_item_ids, filters.category, filters.exclude_item_ids)
        items = self._items(recommender, found.items, found.known)
        return RecommendResponse(user_id=req.user_id, version=store.versions, strategy=found.strategy, items=items)

    @bentoml.api(route="/similar_items", input_spec=SimilarItemsRequest)
    def similar_items(self, **fields: Any) -> SimilarItemsResponse:
        """Neighbours of an item: by cosine of ALS factors (`behaviour`, users' co-interaction) or of
        content embeddings (`content`); a cold item uses content. 404 naming item_id when unknown."""
        req = SimilarItemsRequest.model_construct(**fields)
        store = self._store(RECOMMENDATION_TABLES)
        if isinstance(store, JSONResponse):
            return store
        recommender = store.recommender
        if not recommender.has_item(req.item_id):
            return _unknown("item_id", req.item_id)
        signal = "content" if req.signal == "behaviour" and recommender.is_cold(req.item_id) else req.signal
        ranked = recommender.similar_items(req.item_id, req.k, signal)
        return SimilarItemsResponse(item_id=req.item_id, signal=signal, items=self._items(recommender, ranked))

    @bentoml.api(route="/search_items", input_spec=SearchItemsRequest)
    def search_items(self, **fields: Any) -> SearchItemsResponse:
        """Items whose title and text embedding is nearest (cosine) the free text's embedding, filters applied first."""
        req = SearchItemsRequest.model_construct(**fields)
        store = self._store(RECOMMENDATION_TABLES)
        if isinstance(store, JSONResponse):
            return store
        filters = req.filters or ItemFilters()
        ranked = store.recommender.search_items(store.encode(req.query), req.k, filters.category, filters.exclude_item_ids)
        return SearchItemsResponse(query=req.query, items=self._items(store.recommender, ranked))

    @bentoml.api(route="/answer", input_spec=AnswerRequest)
    def answer(self, **fields: Any) -> AnswerResponse:
        """The k best answers to a question by `mode`: BM25 keyword search, embedding (cosine) search,
        or `hybrid`, both fused by weighted scores (cosine + w x BM25, w from the answers table's
        metadata); optionally re-ranked by MMR (`diversity`). Near-identical questions are answered
        from a semantic cache."""
        req = AnswerRequest.model_construct(**fields)
        store = self._store(ANSWER_TABLES)
        if isinstance(store, JSONResponse):
            return store
        filters = req.filters or AnswerFilters()
        pending = store.answers.start(req.question, req.k, req.mode, filters.source, filters.tags, req.diversity)
        vector = store.encode(req.question)  # the keyword search runs meanwhile
        params = (req.k, req.mode, _frozen(filters.source), _frozen(filters.tags), req.diversity)
        cache = self.state.cache
        assert cache is not None  # set before the store that _store() returned
        hits = cache.get(vector, params, store.cache_version)  # the overlay too: a delete empties it
        cached = hits is not None
        self.metrics.count_lookup(cached)
        if cached:
            pending.cancel()
        else:
            hits = pending.finish(vector)
            cache.put(vector, params, store.cache_version, hits)
        return AnswerResponse(
            question=req.question,
            mode=req.mode,
            cached=cached,
            version=store.versions,
            answers=[ScoredAnswer(doc_id=h.id, score=h.score, **{**h.fields, "tags": h.fields["tags"] or []}) for h in hits],
        )


# Body limit, tokens and the JSON content type: checked before BentoML parses anything (settings read at app start).
RecQA.add_asgi_middleware(RestorePath)  # first: everything after it sees the requested path
RecQA.add_asgi_middleware(
    GuardMiddleware, json_routes=frozenset(method.route for method in RecQA.apis.values())
)


def _unknown(field: str, value: str) -> JSONResponse:
    """404 naming the field and the id that is not served."""
    return error_response(404, f"{field}: unknown {field} {value!r}: no such id in the served release", field)


# Our docs page and spec instead of BentoML's (see serving/docs.py).
_info_app.routes.extend(docs_routes(lambda: openapi_spec(RecQA.openapi_spec.asdict(), [*_info_app.routes, *_ingest_routes])))


def _frozen(values: list[str] | None) -> tuple[str, ...] | None:
    """A hashable, order-free form of a filter list for the cache key."""
    return None if values is None else tuple(sorted(values))


def _searched_indexes(store: Store | None) -> list[tuple[str, IndexConfig]]:
    """Each vector index of the served tables, as the served versions search it (nprobes
    derived from their rows); before a release, every index the builds make, nprobes None
    where the served version's rows will decide it. The items' ALS index is listed with the
    settings it was built with and no nprobes: /recommend scores those vectors in memory."""
    if store is None:
        return [(ITEMS_TABLE, ALS_INDEX), (ITEMS_TABLE, CONTENT_INDEX), (ANSWERS_TABLE, ANSWER_INDEX)]
    searched = []
    if store.recommender is not None:
        searched += [(ITEMS_TABLE, ALS_INDEX), (ITEMS_TABLE, store.recommender.content_index)]
    if store.answers is not None:
        searched.append((ANSWERS_TABLE, store.answers.index_config))
    return searched
