"""Input records, Lance table names and schemas, and the configs shared by writer and reader.

The input contract (documented in data/README.md) is what users map their own data onto:
interactions, items and QA documents. Table schemas live here so that the pipelines that
write a table and the service that reads it can never disagree about a column.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pyarrow as pa

from features.ivf import search_nprobes

USERS_TABLE = "users"
ITEMS_TABLE = "items"
ANSWERS_TABLE = "answers"
RECQA_TABLES = (USERS_TABLE, ITEMS_TABLE, ANSWERS_TABLE)  # what publish releases and the service serves

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_WAREHOUSE = "./warehouse"
PUBLISHED_TAG = "published"  # the Lance tag readers follow; only `recqa publish` moves it

# Keys of the Lance schema metadata every table carries (bytes, as Arrow stores them).
META_ENCODER = b"recqa.encoder"
META_DIMENSION = b"recqa.dimension"
META_ALS = b"recqa.als"
META_FIT = b"recqa.fit"  # one id per build-recs run: users and items of one fit share it
META_BM25_WEIGHT = b"recqa.bm25_weight"  # the hybrid fusion weight build-qa was told to serve with (tuned)
META_CHUNKING = b"recqa.chunking"  # JSON {"chunk_words", "chunk_overlap"}: how build-qa chunked, so written answers are chunked alike
META_CANDIDATE = b"recqa.candidate"  # the candidate (features/candidates.py) whose build wrote this version


def fit_of(metadata: dict[bytes, bytes] | None) -> tuple[bytes | None, bytes | None]:
    """What says two tables hold one ALS fit: its settings and the run's id (publish and service compare it)."""
    metadata = metadata or {}
    return metadata.get(META_ALS), metadata.get(META_FIT)


@dataclass(frozen=True)
class Interaction:
    """One user-item event of the input contract."""

    user_id: str
    item_id: str
    timestamp: float  # seconds since the epoch, UTC
    event: str | None = None
    value: float | None = None


@dataclass(frozen=True)
class Item:
    """One catalogue entry of the input contract."""

    item_id: str
    title: str
    text: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class QADocument:
    """One answer of the QA input contract, with the question it answers where known."""

    doc_id: str
    answer: str
    question: str | None = None
    source: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ALSConfig:
    """Hyper-parameters of implicit ALS; recorded in the table metadata of every run."""

    factors: int = 32
    regularization: float = 0.05
    alpha: float = 2.0
    iterations: int = 15
    random_state: int = 42


@dataclass(frozen=True)
class IndexConfig:
    """How a vector column is indexed and searched; the writer and the reader share it.

    Lance silently scans everything when a query's distance type differs from the index's,
    so the service takes its metric from here rather than from its own constant.
    """

    column: str
    distance_type: str  # "dot" for ALS factors, "cosine" for normalised text embeddings
    min_rows_for_ann: int = 50_000  # below this an exact scan is fast and exact
    kmeans_iterations: int = 10  # IVF training; 50 (Lance's default) triples build time for no recall
    nprobes: int | None = None  # None: derived from the indexed rows (`searched`, features/ivf.py)
    refine_factor: int = 10  # PQ alone recalls poorly; re-ranking k * this on full vectors fixes it

    def searched(self, rows: int) -> "IndexConfig":
        """This config as a query searches an index built over `rows` rows: nprobes derived
        from them unless set."""
        return self if self.nprobes is not None else replace(self, nprobes=search_nprobes(rows))


ALS_INDEX = IndexConfig(column="vector", distance_type="dot")
CONTENT_INDEX = IndexConfig(column="content_vector", distance_type="cosine")
# Answers are searched 4 chunks deep per answer asked for, so refine 5 re-ranks as many rows as
# refine 20 would for k alone: on SciFact refine 5 has refine 10's nDCG@10 at every nprobes
# (benchmarks/RESULTS.md, "Served nDCG@10 against exact search").
ANSWER_INDEX = IndexConfig(column="vector", distance_type="cosine", refine_factor=5)
ANSWER_TEXT_COLUMN = "text"


@dataclass(frozen=True)
class FTSConfig:
    """How the answers' text is tokenized for the full-text (BM25) index; the writer and the tuning share it.

    The index keeps its tokenizer and applies it to every query, so a reader needs nothing but
    the index: build-qa builds with this, `recqa tune qa` rebuilds scratch indexes with it.
    The defaults are LanceDB's own (and what every answers table was built with before).
    """

    stem: bool = True  # "running" and "runs" both index as "run"
    remove_stop_words: bool = True  # "the", "and", ... are not indexed
    language: str = "English"  # of the stemmer and the stop-word list


ANSWER_FTS = FTSConfig()


def table_uri(warehouse: str, name: str) -> str:
    """Where LanceDB keeps table `name` of a warehouse: `<warehouse>/<name>.lance`."""
    return f"{warehouse.rstrip('/')}/{name}.lance"


def _vector(dimension: int) -> pa.DataType:
    return pa.list_(pa.float32(), dimension)


def users_schema(factors: int) -> pa.Schema:
    """Users: the ALS vector and the items already seen (serving excludes them)."""
    return pa.schema(
        [
            pa.field("user_id", pa.string(), nullable=False),
            pa.field(ALS_INDEX.column, _vector(factors)),
            pa.field("seen_item_ids", pa.list_(pa.string())),
        ]
    )


def items_schema(factors: int, dimension: int) -> pa.Schema:
    """Items: catalogue fields, popularity, ALS vector and content embedding."""
    return pa.schema(
        [
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("title", pa.string()),
            pa.field("text", pa.string()),
            pa.field("category", pa.string()),
            pa.field("popularity", pa.int64()),
            pa.field(ALS_INDEX.column, _vector(factors)),
            pa.field(CONTENT_INDEX.column, _vector(dimension)),
        ]
    )


def answers_schema(dimension: int) -> pa.Schema:
    """Answers: one row per chunk of an answer, with the text indexed for BM25 and its embedding."""
    return pa.schema(
        [
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("chunk_id", pa.int32(), nullable=False),
            pa.field("question", pa.string()),
            pa.field("answer", pa.string()),
            pa.field("source", pa.string()),
            pa.field("tags", pa.list_(pa.string())),
            pa.field(ANSWER_TEXT_COLUMN, pa.string()),
            pa.field(ANSWER_INDEX.column, _vector(dimension)),
        ]
    )


@dataclass(frozen=True)
class TableMetadata:
    """What a reader must check before trusting a table's vectors."""

    encoder: str
    dimension: int
    extra: dict[bytes, bytes] = field(default_factory=dict)

    def to_arrow(self) -> dict[bytes, bytes]:
        return {META_ENCODER: self.encoder.encode(), META_DIMENSION: str(self.dimension).encode(), **self.extra}
