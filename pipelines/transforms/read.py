"""Read input files into input-contract records (Interaction, Item, QADocument).

Formats: `contract` (CSV with a header row, or JSON lines, by extension), and the two
bundled datasets (`ms-store` CSV without header, `stackfaq` JSON).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from features import adapters
from features.errors import InputError

# Longest excerpt of a bad line quoted in an error message.
_ROW_EXCERPT_CHARS = 120

CONTRACT = "contract"
MS_STORE = "ms-store"
STACKFAQ = "stackfaq"


def check_input(path: str, what: str) -> str:
    """Fail early, naming the path, when an input matches no file."""
    try:
        matches = FileSystems.match([path])[0].metadata_list
    except Exception as error:  # noqa: BLE001 - file systems raise their own types
        raise InputError(f"cannot read {what} input '{path}': {error}") from error
    if not matches:
        raise InputError(f"{what} input '{path}' matches no file")
    if all(m.size_in_bytes == 0 for m in matches):
        raise InputError(f"{what} input '{path}' is empty")
    return path


def _row_label(filename: str, line: str) -> str:
    excerpt = line if len(line) <= _ROW_EXCERPT_CHARS else line[:_ROW_EXCERPT_CHARS] + "..."
    return f"{os.path.basename(filename)}: {excerpt!r}"


def _csv_fields(line: str) -> list[str]:
    return next(csv.reader(io.StringIO(line)), [])


def _read_header(path: str) -> list[str]:
    first = FileSystems.match([path])[0].metadata_list[0].path
    with FileSystems.open(first) as handle:
        header = io.TextIOWrapper(handle, encoding="utf-8").readline().strip()
    return _csv_fields(header.lstrip("\ufeff"))


class _ParseLines(beam.PTransform):
    """(filename, line) -> record, with the file and line named in any error."""

    def __init__(self, path: str, parse: Callable[[str, str], Any], skip_header: bool) -> None:
        super().__init__()
        self._path = path
        self._parse = parse
        self._skip_header = skip_header

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        parse = self._parse
        return (
            pbegin
            | "ReadLines" >> beam.io.ReadFromTextWithFilename(self._path, skip_header_lines=int(self._skip_header))
            | "DropBlank" >> beam.Filter(lambda pair: pair[1].strip() != "")
            | "Parse" >> beam.Map(lambda pair: parse(pair[1], _row_label(*pair)))
        )


def _contract_parser(path: str, from_mapping: Callable[[dict, str], Any]) -> tuple[Callable[[str, str], Any], bool]:
    if path.endswith((".jsonl", ".json", ".ndjson")):

        def parse_json(line: str, row: str) -> Any:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"not valid JSON: {error.msg}", row=row) from None
            if not isinstance(record, dict):
                raise InputError("expected a JSON object", row=row)
            return from_mapping(record, row)

        return parse_json, False
    columns = _read_header(path)

    def parse_csv(line: str, row: str) -> Any:
        fields = _csv_fields(line)
        if len(fields) != len(columns):
            raise InputError(f"expected {len(columns)} columns {columns}, got {len(fields)}", row=row)
        return from_mapping(dict(zip(columns, fields)), row)

    return parse_csv, True


class ReadInteractions(beam.PTransform):
    """Interactions from `contract` files or the bundled `ms-store` usage CSV."""

    def __init__(self, path: str, input_format: str = CONTRACT) -> None:
        super().__init__()
        self._path = check_input(path, "interactions")
        self._format = input_format

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if self._format == MS_STORE:
            parse, header = (lambda line, row: adapters.ms_store_interaction(_csv_fields(line), row)), False
        elif self._format == CONTRACT:
            parse, header = _contract_parser(self._path, adapters.interaction_from_mapping)
        else:
            raise InputError(f"unknown interactions format '{self._format}'", field="input_format")
        return pbegin | _ParseLines(self._path, parse, header)


class ReadItems(beam.PTransform):
    """Items from `contract` files or the bundled `ms-store` catalogue CSV."""

    def __init__(self, path: str, input_format: str = CONTRACT) -> None:
        super().__init__()
        self._path = check_input(path, "items")
        self._format = input_format

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if self._format == MS_STORE:
            parse, header = (lambda line, row: adapters.ms_store_item(_csv_fields(line), row)), False
        elif self._format == CONTRACT:
            parse, header = _contract_parser(self._path, adapters.item_from_mapping)
        else:
            raise InputError(f"unknown items format '{self._format}'", field="input_format")
        return pbegin | _ParseLines(self._path, parse, header)


def _stackfaq_file(path: str) -> Iterator[Any]:
    for metadata in FileSystems.match([path])[0].metadata_list:
        with FileSystems.open(metadata.path) as handle:
            try:
                data = json.load(io.TextIOWrapper(handle, encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise InputError(f"not valid JSON: {error.msg}", row=metadata.path) from None
        yield from adapters.stackfaq_documents(data)


class ReadDocuments(beam.PTransform):
    """QA documents from `contract` files or the bundled `stackfaq` JSON."""

    def __init__(self, path: str, input_format: str = CONTRACT) -> None:
        super().__init__()
        self._path = check_input(path, "documents")
        self._format = input_format

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if self._format == STACKFAQ:
            return pbegin | "Path" >> beam.Create([self._path]) | "ReadStackFAQ" >> beam.FlatMap(_stackfaq_file)
        if self._format == CONTRACT:
            parse, header = _contract_parser(self._path, adapters.document_from_mapping)
            return pbegin | _ParseLines(self._path, parse, header)
        raise InputError(f"unknown documents format '{self._format}'", field="input_format")
