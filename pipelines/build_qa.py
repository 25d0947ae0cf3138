"""Batch job: QA documents -> sentence embeddings -> Lance `answers` with a full-text index."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam

from features.errors import InputError
from features.schemas import (
    ANSWER_TEXT_COLUMN,
    ANSWERS_TABLE,
    DEFAULT_MODEL_NAME,
    QADocument,
    TableMetadata,
    answers_schema,
)
from features.text import document_text
from pipelines import lance_io
from pipelines.options import JobResult, job_parser, pipeline_options
from pipelines.transforms.encode import EncodeTexts
from pipelines.transforms.read import STACKFAQ, ReadDocuments

DEFAULT_DOCUMENTS = "data/stackfaq/stackExchange-FAQ.json"


def _parse(argv: Sequence[str] | None) -> tuple[Any, list[str]]:
    parser = job_parser("recqa build-qa", __doc__.splitlines()[0])
    parser.add_argument("--documents", default=DEFAULT_DOCUMENTS, help="QA documents file or glob")
    parser.add_argument("--input-format", default=STACKFAQ, choices=["contract", "stackfaq"])
    parser.add_argument("--model", default=DEFAULT_MODEL_NAME, help="sentence-transformers model name or folder")
    return parser.parse_known_args(argv)


def answer_row(element: tuple[str, dict[str, Iterable[Any]]]) -> dict[str, Any]:
    """An answers-table row from a document and its embedding; a repeated doc_id is an error."""
    doc_id, groups = element
    documents: list[QADocument] = list(groups["document"])
    if len(documents) > 1:
        raise InputError(f"doc_id '{doc_id}' appears {len(documents)} times", field="doc_id")
    document = documents[0]
    (vector,) = list(groups["vector"])[:1]
    return {
        "doc_id": doc_id,
        "question": document.question,
        "answer": document.answer,
        "source": document.source,
        "tags": list(document.tags),
        ANSWER_TEXT_COLUMN: document_text(document),
        "vector": vector,
    }


def _write_answers(rows: list[dict[str, Any]], warehouse: str, model: str) -> int:
    dimension = len(rows[0]["vector"]) if rows else 0
    table = lance_io.to_arrow(rows, answers_schema(dimension))
    lance_io.write_table(warehouse, ANSWERS_TABLE, table, TableMetadata(encoder=model, dimension=dimension).to_arrow())
    return lance_io.create_fts_index(warehouse, ANSWERS_TABLE)


def run(argv: Sequence[str] | None = None) -> JobResult:
    """Build the `answers` table; returns its new version and row count."""
    args, beam_args = _parse(argv)
    with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
        documents = pipeline | "ReadDocuments" >> ReadDocuments(args.documents, args.input_format)
        vectors = (
            documents
            | "DocumentText" >> beam.Map(lambda d: (d.doc_id, document_text(d)))
            | "EncodeDocuments" >> EncodeTexts(args.model)
        )
        _ = (
            {"document": documents | "KeyDocuments" >> beam.Map(lambda d: (d.doc_id, d)), "vector": vectors}
            | "JoinVectors" >> beam.CoGroupByKey()
            | "AnswerRows" >> beam.Map(answer_row)
            | "GatherAnswers" >> beam.combiners.ToList()
            | "WriteAnswers" >> beam.Map(_write_answers, args.warehouse, args.model)
        )
    return JobResult.of(args.warehouse, [ANSWERS_TABLE])


if __name__ == "__main__":
    print(run().summary())
