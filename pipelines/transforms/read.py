"""Read input files into input-contract records, sending every bad row to a rejects output.

Formats: `contract` (CSV with a header row, JSON lines or Parquet, by extension) and the two
bundled datasets (`ms-store` CSV without header, `stackfaq` JSON). Files are read whole per
worker through Beam's file systems, so local paths and `s3://`/`gs://` URIs work alike and
every record keeps its file and line for the rejects output.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from features import adapters
from features.errors import InputError

CONTRACT = "contract"
MS_STORE = "ms-store"
STACKFAQ = "stackfaq"
REJECTS = "rejects"

# The bundled ms-store files have no header; these are their columns in contract names.
_MS_STORE_COLUMNS = {
    "interactions": ("user_id", "item_id", "timestamp"),
    "items": ("item_id", "title", "category"),
}
_MS_STORE_DEFAULTS = {"interactions": {"event": "purchase"}, "items": {}}
# What adapters.stackfaq_records gives each answer.
_STACKFAQ_COLUMNS = ("doc_id", "question", "answer", "source")

PARSERS: dict[str, Callable[..., Any]] = {
    "interactions": adapters.interaction_from_mapping,
    "items": adapters.item_from_mapping,
    "documents": adapters.document_from_mapping,
}


@dataclass(frozen=True)
class InputSpec:
    """One input of a job: where it is, its layout, and how its columns map onto the contract."""

    kind: str  # interactions | items | documents
    path: str
    input_format: str = CONTRACT
    mapping: Mapping[str, str] = field(default_factory=dict)  # contract column -> column in the file
    options: adapters.ParseOptions = adapters.ParseOptions()


@dataclass(frozen=True)
class SourceRecord:
    """A record as read, before validation: where it came from and its raw fields."""

    file: str
    line: int
    fields: dict[str, Any]


def parse_mapping(pairs: list[str] | None, flag: str = "--map") -> dict[str, str]:
    """`--map user_id=userId` flags -> {contract column: source column}."""
    mapping = {}
    for pair in pairs or []:
        target, sep, source = pair.partition("=")
        if not sep or not target.strip() or not source.strip():
            raise InputError(f"expected CONTRACT_COLUMN=SOURCE_COLUMN, got {pair!r}", field=flag)
        mapping[target.strip()] = source.strip()
    return mapping


def map_flag(kind: str) -> str:
    """The flag that maps one input's columns: `--map-interactions`, `--map-items`, `--map-documents`."""
    return f"--map-{kind}"


def input_mappings(shared: list[str] | None, per_input: Mapping[str, list[str] | None]) -> dict[str, dict[str, str]]:
    """Each input's {contract column: source column}: `--map` pairs for every input it has the
    column of, then the input's own `--map-<kind>` pairs, which win.

    Events keyed `Product` and a catalogue keyed `sku` need a mapping each. A contract name no
    input has (a `--map`) or this input lacks (a `--map-<kind>`) is refused, naming the known ones.
    """
    common = parse_mapping(shared)
    known = {column for kind in per_input for column in adapters.CONTRACT_COLUMNS[kind]}
    if unknown := sorted(set(common) - known):
        raise InputError(f"no input has the contract column {', '.join(map(repr, unknown))}; "
                         + "; ".join(f"{kind}: {', '.join(adapters.CONTRACT_COLUMNS[kind])}" for kind in per_input), field="--map")
    mappings = {}
    for kind, pairs in per_input.items():
        own = parse_mapping(pairs, map_flag(kind))
        adapters.check_mapping(kind, own, map_flag(kind))
        mappings[kind] = {**{c: s for c, s in common.items() if c in adapters.CONTRACT_COLUMNS[kind]}, **own}
    return mappings


def ensure_filesystem_options() -> None:
    """Give Beam's file systems default options when no pipeline has set any.

    Reading outside a pipeline (validate, evaluation, tuning, hashing inputs) would otherwise
    fail on s3:// with "Must provide one of client or options"; defaults take credentials and
    the endpoint from the environment, as the pipelines do. Options a pipeline set are kept.
    """
    if getattr(FileSystems, "_pipeline_options", None) is None:
        from apache_beam.options.pipeline_options import PipelineOptions

        FileSystems.set_options(PipelineOptions([]))


def use_beam_options(beam_args: Sequence[str]) -> None:
    """Beam's flags given to a command that reads its inputs outside a pipeline (validate, tune)
    set the options of the file systems it reads through, as they would in the build."""
    if beam_args:
        from apache_beam.options.pipeline_options import PipelineOptions

        FileSystems.set_options(PipelineOptions(list(beam_args)))


def check_input(path: str, what: str) -> str:
    """Fail early, naming the path, when an input matches no file or only empty ones."""
    ensure_filesystem_options()
    try:
        matches = FileSystems.match([path])[0].metadata_list
    except Exception as error:  # noqa: BLE001 - each file system raises its own types
        raise InputError(f"cannot read {what} input '{path}': {error}") from error
    if not matches:
        raise InputError(f"{what} input '{path}' matches no file")
    if all(m.size_in_bytes == 0 for m in matches):
        raise InputError(f"{what} input '{path}' is empty")
    return path


def check_spec(spec: InputSpec) -> InputSpec:
    """Fail before reading when the spec's kind or format is unknown or its path matches nothing."""
    check_input(spec.path, spec.kind)
    if spec.kind not in PARSERS:
        raise InputError(f"unknown input kind '{spec.kind}'", field="kind")
    allowed = {"interactions": (CONTRACT, MS_STORE), "items": (CONTRACT, MS_STORE), "documents": (CONTRACT, STACKFAQ)}
    if spec.input_format not in allowed[spec.kind]:
        raise InputError(f"unknown {spec.kind} format '{spec.input_format}'", field="input_format")
    adapters.check_mapping(spec.kind, spec.mapping, map_flag(spec.kind))
    check_columns(spec)
    return spec


def check_columns(spec: InputSpec) -> None:
    """Fail before any row is read when a file lacks a mapped source column or a required contract
    column: its CSV header, Parquet schema or first JSON line is read, not its rows."""
    defaults = tuple(_MS_STORE_DEFAULTS.get(spec.kind, {})) if spec.input_format == MS_STORE else ()
    for metadata in FileSystems.match([spec.path])[0].metadata_list:
        if metadata.size_in_bytes == 0:
            continue
        columns = file_columns(fileio.ReadableFile(metadata), spec)
        if columns is not None:
            adapters.check_columns(spec.kind, spec.mapping, columns, metadata.path, map_flag(spec.kind), defaults)


def file_columns(readable: fileio.ReadableFile, spec: InputSpec) -> list[str] | None:
    """The column names of one file as its reader gives them; None when they cannot be told
    without reading rows (a first JSON line that is not an object: its row is rejected then)."""
    path = readable.metadata.path
    if spec.input_format == STACKFAQ:
        return list(_STACKFAQ_COLUMNS)
    if spec.input_format == MS_STORE:
        return list(_MS_STORE_COLUMNS[spec.kind])
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        with readable.open() as handle:
            return list(pq.ParquetFile(handle).schema_arrow.names)
    if path.endswith((".jsonl", ".json", ".ndjson")):
        with _text(readable) as text:
            line = next((line for line in text if line.strip()), "")
        try:
            first = json.loads(line)
        except json.JSONDecodeError:
            return None
        return list(first) if isinstance(first, dict) else None
    with _text(readable) as text:
        return next(csv.reader(text), [])


def parse_source(source: SourceRecord, spec: InputSpec) -> Any:
    """The contract record of one source record, or an InputError naming its row and field."""
    row = f"{source.file}:{source.line}"
    fields = source.fields
    if "__error__" in fields:
        raise InputError(fields["__error__"], row=row)
    defaults = _MS_STORE_DEFAULTS.get(spec.kind, {}) if spec.input_format == MS_STORE else {}
    record = {**defaults, **{target: fields.get(column) for target, column in spec.mapping.items()}}
    for name, value in fields.items():
        record.setdefault(name, value)
    return PARSERS[spec.kind](record, row, spec.options)


def reject(source: SourceRecord, spec: InputSpec, error: InputError) -> dict[str, Any]:
    """The rejects-output record of a source record that failed to parse."""
    reason = f"field '{error.field}': {error.reason}" if error.field else error.reason
    return {"kind": spec.kind, "file": source.file, "line": source.line, "reason": reason, "row": _jsonable(source.fields)}


def read_file(readable: fileio.ReadableFile, spec: InputSpec) -> Iterator[SourceRecord]:
    """Every record of one file, with its 1-based line (row for Parquet)."""
    path = readable.metadata.path
    if spec.input_format == STACKFAQ:
        yield from _read_stackfaq(readable, path)
    elif spec.input_format == MS_STORE:
        yield from _read_csv(readable, path, _MS_STORE_COLUMNS[spec.kind])
    elif path.endswith(".parquet"):
        yield from _read_parquet(readable, path)
    elif path.endswith((".jsonl", ".json", ".ndjson")):
        yield from _read_jsonl(readable, path)
    else:
        yield from _read_csv(readable, path, None)


def _text(readable: fileio.ReadableFile) -> io.TextIOWrapper:
    return io.TextIOWrapper(readable.open(), encoding="utf-8-sig", newline="")


def _read_csv(readable: fileio.ReadableFile, path: str, columns: tuple[str, ...] | None) -> Iterator[SourceRecord]:
    reader = csv.reader(_text(readable))
    header = list(columns) if columns else next(reader, [])
    for fields in reader:
        if not any(value.strip() for value in fields):
            continue
        if len(fields) != len(header):
            yield SourceRecord(path, reader.line_num, {"__error__": f"expected {len(header)} columns {header}, got {len(fields)}", "__raw__": fields})
            continue
        yield SourceRecord(path, reader.line_num, dict(zip(header, fields)))


def _read_jsonl(readable: fileio.ReadableFile, path: str) -> Iterator[SourceRecord]:
    for number, line in enumerate(_text(readable), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield SourceRecord(path, number, {"__error__": f"not valid JSON: {error.msg}", "__raw__": line[:200]})
            continue
        if not isinstance(record, dict):
            yield SourceRecord(path, number, {"__error__": "expected a JSON object", "__raw__": line[:200]})
            continue
        yield SourceRecord(path, number, record)


def _read_parquet(readable: fileio.ReadableFile, path: str) -> Iterator[SourceRecord]:
    import pyarrow.parquet as pq

    number = 0
    with readable.open() as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=65_536):
            for record in batch.to_pylist():
                number += 1
                yield SourceRecord(path, number, record)


def _read_stackfaq(readable: fileio.ReadableFile, path: str) -> Iterator[SourceRecord]:
    try:
        data = json.load(_text(readable))
    except json.JSONDecodeError as error:
        raise InputError(f"not valid JSON: {error.msg}", row=path) from None
    for number, (_, record) in enumerate(adapters.stackfaq_records(data), start=1):
        yield SourceRecord(path, number, record)


_SAMPLE_REJECTS = 3


@dataclass(frozen=True)
class InputRead:
    """An input read whole in this process: its valid records, the count rejected, a few rejects."""

    records: list[Any]
    valid: int
    rejected: int
    sample: list[dict[str, Any]]
    files: list[str]


def read_input(spec: InputSpec, keep_records: bool = True) -> InputRead:
    """Every row of an input, parsed with the same readers and rules as ReadRecords, without Beam.

    For what runs in one process on one input (validate, evaluation, tuning): the same file
    systems (local, s3://, gs://), layouts, --map and parse options as the build, so ids stay
    the strings they are and a row the build rejects is rejected here too.
    """
    check_spec(spec)
    records: list[Any] = []
    valid, rejected, sample, files = 0, 0, [], []
    for metadata in FileSystems.match([spec.path])[0].metadata_list:
        files.append(metadata.path)
        for source in read_file(fileio.ReadableFile(metadata), spec):
            try:
                record = parse_source(source, spec)
            except InputError as error:
                rejected += 1
                if len(sample) < _SAMPLE_REJECTS:
                    sample.append(reject(source, spec, error))
                continue
            valid += 1
            if keep_records:
                records.append(record)
    return InputRead(records, valid, rejected, sample, sorted(files))


def files_sha256(path: str) -> dict[str, Any]:
    """sha256 over the bytes of every file the input matches (in name order), and their count.

    Ties a candidate or a report to the exact data it was built or scored on; read through
    Beam's file systems, so remote inputs hash the same way as local ones.
    """
    import hashlib

    ensure_filesystem_options()
    digest = hashlib.sha256()
    files = sorted(m.path for m in FileSystems.match([path])[0].metadata_list)
    for name in files:
        with FileSystems.open(name) as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return {"path": path, "sha256": digest.hexdigest(), "files": len(files)}


class ParseRecordDoFn(beam.DoFn):
    """SourceRecord -> contract record, or a reject (the row, the file and line, the reason)."""

    def __init__(self, spec: InputSpec) -> None:
        self._spec = spec

    def setup(self) -> None:
        self._read = beam.metrics.Metrics.counter(self._spec.kind, "read")
        self._rejected = beam.metrics.Metrics.counter(self._spec.kind, "rejected")
        self._msecs = beam.metrics.Metrics.counter(self._spec.kind, "read_msecs")

    def process(self, source: SourceRecord) -> Iterator[Any]:
        started = time.perf_counter()
        self._read.inc()
        try:
            yield parse_source(source, self._spec)
        except InputError as error:
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, reject(source, self._spec, error))
        finally:
            self._msecs.inc(int((time.perf_counter() - started) * 1000))


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (str, int, float, bool, type(None), list)) else str(v)) for k, v in fields.items()}


class ReadRecords(beam.PTransform):
    """Files -> (valid records, rejects): the `main` and `rejects` outputs of the parse step."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        check_spec(spec)
        self._spec = spec

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        spec = self._spec
        outputs = (
            pbegin
            | "Match" >> fileio.MatchFiles(spec.path)
            | "Open" >> fileio.ReadMatches()
            | "ReadFile" >> beam.FlatMap(read_file, spec)
            | "Parse" >> beam.ParDo(ParseRecordDoFn(spec)).with_outputs(REJECTS, main="records")
        )
        return {"records": outputs.records, REJECTS: outputs[REJECTS]}
