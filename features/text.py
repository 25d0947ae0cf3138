"""Normalisation of item and QA text before it is embedded or indexed."""

from __future__ import annotations

import json
import re
import unicodedata

from collections.abc import Mapping
from typing import Any

from features.schemas import ANSWER_TEXT_COLUMN, META_CHUNKING, Item, QADocument

_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str | None) -> str:
    """NFC, control characters dropped, runs of whitespace collapsed: stable input for the encoder."""
    if not text:
        return ""
    text = unicodedata.normalize("NFC", text)
    text = "".join(c if unicodedata.category(c)[0] != "C" or c in "\t\n" else " " for c in text)
    return _WHITESPACE.sub(" ", text).strip()


def item_text(item: Item) -> str:
    """What an item's content vector encodes: its title, then its text where it has one."""
    parts = [normalize_text(item.title), normalize_text(item.text)]
    return ". ".join(p for p in parts if p)


# all-MiniLM-L6-v2 reads 256 word pieces; ~160 words leave room for the question in front.
DEFAULT_CHUNK_WORDS = 160
DEFAULT_CHUNK_OVERLAP_WORDS = 32


def chunk_words(text: str, size: int = DEFAULT_CHUNK_WORDS, overlap: int = DEFAULT_CHUNK_OVERLAP_WORDS) -> list[str]:
    """Split text into windows of `size` words, each sharing `overlap` words with the previous.

    Text past the encoder's window would be silently truncated; chunks keep all of it
    searchable. A text that fits is one chunk, unchanged but for whitespace.
    """
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"need size > 0 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    words = normalize_text(text).split(" ")
    if len(words) <= size:
        return [" ".join(words)]
    step = size - overlap
    starts = range(0, len(words) - overlap, step)
    return [" ".join(words[start : start + size]) for start in starts]


def answer_chunks(document: QADocument, size: int = DEFAULT_CHUNK_WORDS, overlap: int = DEFAULT_CHUNK_OVERLAP_WORDS) -> list[dict[str, Any]]:
    """The answers-table rows of one document, without the vector: one per chunk of the answer,
    each indexed and embedded after the question. build-qa writes these, and the service makes
    the same of a document written since, so both are searched alike.

    The question comes first because the encoder truncates long inputs and users ask in the
    words of questions, not of answers.
    """
    question = normalize_text(document.question)
    return [
        {
            "doc_id": document.doc_id,
            "chunk_id": chunk_id,
            "question": document.question,
            "answer": document.answer,
            "source": document.source,
            "tags": list(document.tags),
            ANSWER_TEXT_COLUMN: f"{question}\n{chunk}" if question else chunk,
        }
        for chunk_id, chunk in enumerate(chunk_words(document.answer, size, overlap))
    ]


def chunking_of(metadata: Mapping[bytes, bytes] | None) -> tuple[int, int]:
    """(words per chunk, overlap) an answers table was built with: the defaults for a table
    built before build-qa recorded them."""
    recorded = json.loads((metadata or {}).get(META_CHUNKING, b"{}") or b"{}")
    return int(recorded.get("chunk_words", DEFAULT_CHUNK_WORDS)), int(recorded.get("chunk_overlap", DEFAULT_CHUNK_OVERLAP_WORDS))
