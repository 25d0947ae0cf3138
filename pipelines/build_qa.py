"""Batch job: QA documents -> chunked sentence embeddings -> Lance `answers` with a full-text index."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import pyarrow as pa

from features.adapters import ParseOptions
from features.candidates import QA, new_candidate_id
from features.changes import META_CHANGES
from features.errors import InputError
from features.retrieval import BM25_WEIGHT
from features.schemas import (
    ANSWER_FTS,
    ANSWER_INDEX,
    ANSWER_TEXT_COLUMN,
    ANSWERS_TABLE,
    DEFAULT_MODEL_NAME,
    META_BM25_WEIGHT,
    META_CHUNKING,
    META_CANDIDATE,
    FTSConfig,
    QADocument,
    TableMetadata,
    answers_schema,
)
from features.text import DEFAULT_CHUNK_OVERLAP_WORDS, DEFAULT_CHUNK_WORDS, answer_chunks, chunk_words
from pipelines import lance_io
from pipelines.candidates import build_flags, input_rows, record_build
from pipelines.options import JobResult, job_parser, parse_job_args, pipeline_options, rejects_dir, tuned_record, warn_tuned_snapshot
from pipelines.summary import stage_rows
from pipelines.transforms.changes import apply_changes, folded, snapshot_input
from pipelines.transforms.encode import EncodeTexts, add_encoder_arguments, check_encoding
from pipelines.transforms.lance_write import WriteTable
from pipelines.transforms.quality import CheckRejects
from pipelines.transforms.read import STACKFAQ, InputSpec, ReadRecords, files_sha256, input_mappings
from registry.log import ChangeLog, read_changes

PROG = "recqa build-qa"
DEFAULT_DOCUMENTS = "data/stackfaq/stackExchange-FAQ.json"


def arg_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """Every flag of the job (Beam's aside): what build, validate, tune and evaluate parse."""
    parser = job_parser(prog, __doc__.splitlines()[0])
    parser.add_argument("--documents", default=DEFAULT_DOCUMENTS, help="QA documents file, glob or URI")
    parser.add_argument("--input-format", default=STACKFAQ, choices=["contract", "stackfaq"], help="layout of the documents")
    parser.add_argument("--map", action="append", metavar="COLUMN=SOURCE",
                        help="contract column from a differently named source column (repeatable; default: none)")
    parser.add_argument("--map-documents", action="append", metavar="COLUMN=SOURCE",
                        help="as --map, for the documents; wins over --map (repeatable; default: none)")
    parser.add_argument("--chunk-words", type=int, default=DEFAULT_CHUNK_WORDS, help="words per chunk of a long answer")
    parser.add_argument("--chunk-overlap", type=int, default=DEFAULT_CHUNK_OVERLAP_WORDS, help="words shared by consecutive chunks")
    parser.add_argument("--model", default=DEFAULT_MODEL_NAME, help="sentence-transformers model name or folder")
    add_encoder_arguments(parser)
    parser.add_argument("--fts-stem", action=argparse.BooleanOptionalAction, default=ANSWER_FTS.stem,
                        help="stem words in the full-text (BM25) index; its queries are tokenized the same way")
    parser.add_argument("--fts-stop-words", action=argparse.BooleanOptionalAction, default=ANSWER_FTS.remove_stop_words,
                        help="leave stop words out of the full-text (BM25) index")
    parser.add_argument("--bm25-weight", type=float, default=BM25_WEIGHT,
                        help=f"hybrid score fusion for the service: BM25 points per unit of cosine (default {BM25_WEIGHT})")
    return parser


def parse_args(argv: Sequence[str] | None, prog: str = PROG, also: Sequence[str] = ()) -> tuple[Any, list[str]]:
    """The job's flags, and Beam's flags for Beam; any other flag fails naming it (`also`: a wrapping
    command's flags, suggested for a typo)."""
    return parse_job_args(arg_parser(prog), argv, QA, also)


def fts_config(args: Any) -> FTSConfig:
    """The full-text tokenizer the flags ask for (what `recqa tune qa` chose, through --config)."""
    return FTSConfig(stem=args.fts_stem, remove_stop_words=args.fts_stop_words)


def chunk_rows(element: tuple[str, Iterable[QADocument]], size: int, overlap: int) -> Iterator[dict[str, Any]]:
    """One row per chunk of the answer; each chunk is indexed and embedded after the question."""
    doc_id, documents = element
    documents = list(documents)
    if len(documents) > 1:
        raise InputError(f"doc_id '{doc_id}' appears {len(documents)} times", field="doc_id")
    yield from answer_chunks(documents[0], size, overlap)


def _with_vector(row: dict[str, Any], vector: Any) -> dict[str, Any]:
    """The chunk's row with the embedding of its own text, carried beside it through the model call."""
    return {**row, ANSWER_INDEX.column: vector}


def _answers_schema(row: dict[str, Any]) -> pa.Schema:
    return answers_schema(len(row[ANSWER_INDEX.column]))


def _commit(
    written: list, ok: bool, *, warehouse: str, model: str, ann_min_rows: int, candidate: str, fts: FTSConfig, bm25_weight: float,
    changes_version: int = 0, chunking: tuple[int, int] = (DEFAULT_CHUNK_WORDS, DEFAULT_CHUNK_OVERLAP_WORDS),
) -> None:
    """The run's only visible change: one commit, then the BM25 and (when large) vector indexes.

    The version carries the change log version applied, so the service overlays only what came after it.
    """
    assert ok
    dimension = written[0][0].field(ANSWER_INDEX.column).type.list_size if written else 0
    extra = {META_CANDIDATE: candidate.encode(), META_BM25_WEIGHT: repr(float(bm25_weight)).encode(),
             META_CHANGES: str(changes_version).encode(),
             META_CHUNKING: json.dumps({"chunk_words": chunking[0], "chunk_overlap": chunking[1]}).encode()}
    metadata = TableMetadata(model, dimension, extra).to_arrow()
    lance_io.commit_fragments(warehouse, ANSWERS_TABLE, written, metadata)
    lance_io.create_fts_index(warehouse, ANSWERS_TABLE, config=fts, candidate=candidate)
    lance_io.create_vector_indexes(warehouse, ANSWERS_TABLE, [dataclasses.replace(ANSWER_INDEX, min_rows_for_ann=ann_min_rows)],
                                   candidate=candidate)


def input_specs(args: Any) -> tuple[InputSpec]:
    """The documents input the flags describe (what `recqa validate qa` checks)."""
    parse = ParseOptions(max_text_chars=args.max_text_chars)
    mapping = input_mappings(args.map, {"documents": args.map_documents})["documents"]
    return (InputSpec("documents", args.documents, args.input_format, mapping, parse),)


def candidate_config(args: Any) -> dict[str, Any]:
    """What a candidate records as its configuration: every setting the build used."""
    return {
        "flags": build_flags(args, ("documents",)),
        "chunking": {"chunk_words": args.chunk_words, "chunk_overlap": args.chunk_overlap},
        "full_text": dataclasses.asdict(fts_config(args)),
        "bm25_weight": args.bm25_weight,
        "encoder": args.model,
        "tuned": tuned_record(args),
        "index": {"ann_min_rows": args.ann_min_rows, "vector": dataclasses.asdict(ANSWER_INDEX), "full_text": ANSWER_TEXT_COLUMN},
    }


def run(argv: Sequence[str] | None = None, changes: ChangeLog | None = None) -> JobResult:
    """Build the `answers` table as a new version, recorded as a candidate.

    `changes`: the change log snapshot to apply over the documents (default: the log of
    --warehouse, read once now; a change acknowledged later is the next build's). Tuning passes
    the real warehouse's snapshot to the builds it runs into scratch warehouses.
    """
    args, beam_args = parse_args(argv)
    log = changes if changes is not None else read_changes(args.warehouse)
    warn_tuned_snapshot(args, log.version)
    chunk_words(" ".join(["x"] * 3), args.chunk_words, args.chunk_overlap)  # refuse bad sizes before running
    (spec,) = input_specs(args)
    candidate = new_candidate_id(QA)
    check_encoding(args.encoder_backend, args.quantize, args.device)  # a refused flag writes nothing, not even the tag
    lance_io.ensure_candidates_table(args.warehouse)  # now, long before this run appends to it
    lance_io.tag_changes_snapshot(args.warehouse, log.version, candidate)  # kept readable for its evaluation
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    hashes = {spec.kind: files_sha256(spec.path)}  # what this run reads (after the pipeline set the file systems' options)
    documents = pipeline | "ReadDocuments" >> ReadRecords(spec)
    checked = documents | "CheckDocuments" >> CheckRejects("documents", args.max_reject_fraction, rejects_dir(args, "build-qa"))
    rows = (
        apply_changes(documents["records"], "documents", folded(log), "ApplyAnswerChanges")
        | "KeyDocuments" >> beam.Map(lambda d: (d.doc_id, d))
        | "GroupById" >> beam.GroupByKey()
        | "Chunk" >> beam.FlatMap(chunk_rows, args.chunk_words, args.chunk_overlap)
    )
    written = (
        rows
        | "ChunkText" >> beam.Map(lambda row: (row, row[ANSWER_TEXT_COLUMN]))
        | "EncodeChunks" >> EncodeTexts(args.model, stage="encode-answers", backend=args.encoder_backend, quantize=args.quantize,
                                            device=args.device)
        | "AnswerRows" >> beam.MapTuple(_with_vector)
        | "WriteAnswers" >> WriteTable(args.warehouse, ANSWERS_TABLE, _answers_schema)
    )
    _ = written | "Commit" >> beam.Map(
        _commit, beam.pvalue.AsSingleton(checked), warehouse=args.warehouse, model=args.model, ann_min_rows=args.ann_min_rows,
        candidate=candidate, fts=fts_config(args), bm25_weight=args.bm25_weight, changes_version=log.version,
        chunking=(args.chunk_words, args.chunk_overlap),
    )
    result = pipeline.run()
    result.wait_until_finish()
    counts = input_rows(stage_rows(result), ("documents",))
    inputs = {**{kind: {**hashes[kind], **counts.get(kind, {})} for kind in hashes}, **snapshot_input(log)}
    config = {**candidate_config(args), "changes_version": log.version}
    built = record_build(args.warehouse, candidate, QA, [ANSWERS_TABLE], config, inputs)
    return JobResult.of_candidate(built, result)


if __name__ == "__main__":
    print(run().summary())
