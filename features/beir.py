"""BEIR-format judgements (queries, qrels) parsed from lines, for `recqa evaluate qa --beir`.

BEIR (github.com/beir-cellar/beir) is the layout most public retrieval benchmarks ship in:
`corpus.jsonl` ({"_id", "title", "text"}), `queries*.jsonl` ({"_id", "text"}) and
`qrels/<split>.tsv` (`query-id corpus-id score`, with a header line). The corpus is an input
like any other: build-qa reads it through the contract adapter (`--map doc_id=_id --map
question=title --map answer=text`). The caller reads the files; these functions turn their
lines into records, naming the line of any bad one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from features.errors import InputError


def _json(line: str, row: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"invalid JSON: {error.msg}", row=row) from None
    if not isinstance(record, dict):
        raise InputError("expected a JSON object", row=row)
    return record


def _field(record: dict, name: str, row: str) -> str:
    value = record.get(name)
    if value is None or not str(value).strip():
        raise InputError("missing", field=name, row=row)
    return str(value)


def queries(lines: Iterable[str], label: str = "queries.jsonl") -> dict[str, str]:
    """query id -> query text."""
    result = {}
    for number, line in enumerate(lines, start=1):
        if line.strip():
            row = f"{label}:{number}"
            record = _json(line, row)
            result[_field(record, "_id", row)] = _field(record, "text", row)
    return result


def qrels(lines: Iterable[str], label: str = "qrels.tsv") -> dict[str, dict[str, float]]:
    """query id -> {doc id: graded relevance}; the header line and zero grades are skipped."""
    result: dict[str, dict[str, float]] = {}
    for number, line in enumerate(lines, start=1):
        parts = line.rstrip("\n").split("\t")
        if not line.strip() or (number == 1 and parts[0] == "query-id"):
            continue
        row = f"{label}:{number}"
        if len(parts) != 3:
            raise InputError(f"expected 3 tab-separated columns, got {len(parts)}", row=row)
        try:
            grade = float(parts[2])
        except ValueError:
            raise InputError(f"not a number: {parts[2]!r}", field="score", row=row) from None
        if grade > 0:
            result.setdefault(parts[0], {})[parts[1]] = grade
    return result
