"""Normalisation of item and QA text before it is embedded or indexed."""

from __future__ import annotations

import re
import unicodedata

from features.schemas import Item, QADocument

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


def document_text(document: QADocument) -> str:
    """What an answer is indexed under: the question it answers, then the answer.

    The question comes first because the encoder truncates long inputs and users ask in
    the words of questions, not of answers.
    """
    parts = [normalize_text(document.question), normalize_text(document.answer)]
    return "\n".join(p for p in parts if p)
