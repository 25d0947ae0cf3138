"""The served versions of the tables one release names, read-only.

A warehouse may hold the recommendation tables (`users` + `items`, from build-recs), the
`answers` table (from build-qa), or both; a release names some of them, and the Store opens
exactly those. What needs an absent table is refused by `absent()`, naming it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping

import numpy as np

from features.changes import ANSWERS, EVENTS, ITEMS, USERS, Change, ChangeSet, fold
from features.encoders import Encoder
from features.errors import TableContractError
from features.schemas import ANSWERS_TABLE, ITEMS_TABLE, RECQA_TABLES, USERS_TABLE
from features.text import chunking_of
from registry.log import ChangeCursor, change_cursor, read_new_changes
from serving.answers import AnswerIndex
from serving.fresh_answers import FreshAnswers
from serving.logged_vectors import LoggedVectors
from serving.memory import DEFAULT_MEMORY_BUDGET_MB
from serving.overlay import advance_answers, advance_items, applied_changes
from serving.recommender import FreshRecommender, Recommender

logger = logging.getLogger(__name__)

# What each kind of endpoint reads, and the job that builds it.
RECOMMENDATION_TABLES = (USERS_TABLE, ITEMS_TABLE)
ANSWER_TABLES = (ANSWERS_TABLE,)
_BUILT_BY = {RECOMMENDATION_TABLES: ("build-recs", "answers only"), ANSWER_TABLES: ("build-qa", "recommendations only")}


class Store:
    """One published set: a recommender over `users` + `items` and an answer index over
    `answers`, either of which is None when the release does not name its tables.

    `with_changes` gives the same tables with the change log's later writes applied over them
    (serving/overlay.py); `changes` is the log version a Store reflects (0: none read yet).
    """

    def __init__(
        self, warehouse: str, encoder: Encoder, versions: Mapping[str, int], writes_encoder: Encoder | None = None,
        memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB,
    ) -> None:
        import lancedb

        named = [name for name in RECQA_TABLES if name in versions]
        if not named:
            raise TableContractError(f"the release of '{warehouse}' names none of the tables {list(RECQA_TABLES)}: run `recqa publish`")
        if (USERS_TABLE in named) != (ITEMS_TABLE in named):
            present, missing = (USERS_TABLE, ITEMS_TABLE) if USERS_TABLE in named else (ITEMS_TABLE, USERS_TABLE)
            raise TableContractError(
                f"the release names '{present}' but no '{missing}': users and items come from one build-recs run "
                f"and are published together (run `recqa build-recs`, then publish both)"
            )
        db = lancedb.connect(warehouse)
        tables = {name: _open_version(db, warehouse, name, int(versions[name])) for name in named}
        self._warehouse = warehouse
        self._encoder = encoder
        self.recommender = Recommender(tables[USERS_TABLE], tables[ITEMS_TABLE], encoder, memory_budget_mb) if USERS_TABLE in tables else None
        self.answers = AnswerIndex(tables[ANSWERS_TABLE], encoder, memory_budget_mb=memory_budget_mb) if ANSWERS_TABLE in tables else None
        self.versions = {name: int(table.version) for name, table in tables.items()}
        # the change-log version each part's build applied: the overlay is what came after it
        self.applied = {
            part: applied_changes(tables[name].schema.metadata) for part, name in (("recs", ITEMS_TABLE), ("qa", ANSWERS_TABLE)) if name in tables
        }
        self._base_recommender, self._base_answers = self.recommender, self.answers
        self._chunking = chunking_of(tables[ANSWERS_TABLE].schema.metadata) if ANSWERS_TABLE in tables else None
        # the overlay of each part: how far it has read the log, the fold so far, and what it built
        self._cursors: dict[str, ChangeCursor] = {}
        self._recs_changes, self._qa_changes = ChangeSet(), ChangeSet()
        self._item_content: dict[str, np.ndarray] = {}
        self._fresh_answers: FreshAnswers | None = None
        # the change log's texts: embedded before their commit (ingest/ahead.py) and kept in the log,
        # or, when the log holds no vector for them, by the follower (serving/logged_vectors.py)
        self._writes = encoder if writes_encoder is None else writes_encoder
        self._folded: dict = {}
        self.changes = 0
        self._qa_changes_at = 0  # the log version the answers overlay last changed at

    @property
    def cache_version(self) -> tuple:
        """What a cached answer was computed on: the answers' table versions and their overlay.
        Writes that leave the answers as they were (events, items) keep the cache."""
        return (tuple(sorted(self.versions.items())), self._qa_changes_at)

    def with_changes(self, version: int) -> "Store":
        """This Store's tables with the change log at `version` applied over them: each part
        reads only the log rows it has not read yet and rebuilds only what they touch, sharing
        the rest (tables, an unchanged part's overlay, the fresh answers' append-only store)."""
        other = copy.copy(self)
        other.changes, other._cursors = version, dict(self._cursors)
        reads: dict = {}  # by cursor: one read of the log when both parts stand at the same place

        def new_changes(part: str):
            cursor = self._cursors.get(part)
            if cursor is None:  # the first step: from the version the part's build applied
                key = ("applied", self.applied[part])
                if key not in reads:
                    reads[key] = change_cursor(self._warehouse, self.applied[part])
                cursor = reads[key]
            if cursor not in reads:
                reads[cursor] = read_new_changes(self._warehouse, version, cursor)
            new, other._cursors[part] = reads[cursor]
            return new

        if self._base_recommender is not None:
            new = [change for change in new_changes("recs") if change.kind in (ITEMS, EVENTS, USERS)]  # answers leave it as it was
            if new:
                recs = other._recs_changes = fold(new, self._recs_changes)
                vectors = LoggedVectors(self._writes, new)
                other._item_content = advance_items(self._item_content, recs, (c.key for c in new if c.kind == ITEMS), vectors.encode)
                _report(vectors, "items")
                fresh = recs.items or recs.events or recs.forgotten
                other.recommender = FreshRecommender(self._base_recommender, recs, other._item_content, self._folded) if fresh else self._base_recommender
        if self._base_answers is not None:
            new = [change for change in new_changes("qa") if change.kind == ANSWERS]  # the rest leaves the answers as they were
            if new:
                qa = other._qa_changes = fold(new, self._qa_changes)
                other._qa_changes_at = version
                vectors = LoggedVectors(self._writes, new)
                other._fresh_answers = advance_answers(
                    self._fresh_answers, qa, (c.key for c in new), vectors.encode, self._corpus_size(), self._chunking, self._base_answers.analyzer
                )
                _report(vectors, "answers")
                other.answers = self._base_answers.with_fresh(other._fresh_answers)
        return other

    def _corpus_size(self) -> int:
        """Chunks in the served answers table (the corpus size fresh BM25 scores are put on)."""
        if self._fresh_answers is not None:
            return self._fresh_answers.corpus_size
        return self._base_answers.rows()

    def absent(self, needed: tuple[str, ...]) -> str | None:
        """Why this Store cannot serve what reads the `needed` tables, or None when it can."""
        missing = [name for name in needed if name not in self.versions]
        if not missing:
            return None
        job, serves = _BUILT_BY[needed]  # the other part is what is served: a release names one at least
        names = " and ".join(f"'{name}'" for name in missing)
        return (
            f"the published release has no {names} table{'s' if len(missing) > 1 else ''}: "
            f"this warehouse serves {serves} (run `recqa {job}`, then publish)"
        )

    def encode(self, text: str) -> np.ndarray:
        return self._encoder.encode([text])[0]


def _report(vectors: LoggedVectors, part: str) -> None:
    """Say when a step embedded texts the log held no vector for: expected after `recqa upsert
    --no-embed`; otherwise the writer's model or chunking differs from this service's."""
    if vectors.embedded:
        logger.info("the change log's %s: %d texts embedded here (no vector logged for them), %d vectors taken from the log",
                    part, vectors.embedded, vectors.taken)


def _open_version(db, warehouse: str, name: str, version: int):
    """The table at the released version; a table or version that is gone breaks the contract."""
    try:
        table = db.open_table(name)
    except (FileNotFoundError, ValueError) as error:
        raise TableContractError(f"warehouse '{warehouse}' has no table '{name}', which the release names: {error}") from error
    try:
        table.checkout(version)  # a run's versions are served only once released
    except Exception as error:  # noqa: BLE001 - lance reports a missing version in several ways
        raise TableContractError(f"table '{name}' has no version {version}: {error}") from error
    return table
