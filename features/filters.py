"""Structured request filters compiled to Lance SQL conditions, over whitelisted columns only.

A request never supplies condition text: it names values, and each value becomes a quoted
string literal with its quotes doubled, so `' OR 1=1 --` is looked up as a category, not run.
"""

from __future__ import annotations

from collections.abc import Sequence

# Longest value list accepted per filter field; a longer one is a misuse, not a query.
MAX_FILTER_VALUES = 1_000


def sql_string(value: str) -> str:
    """A SQL string literal for `value`: single quotes doubled, NUL refused."""
    if "\x00" in value:
        raise ValueError("filter values may not contain NUL characters")
    return "'" + value.replace("'", "''") + "'"


def _values(values: Sequence[str], field: str) -> str:
    if len(values) > MAX_FILTER_VALUES:
        raise ValueError(f"{field}: at most {MAX_FILTER_VALUES} values")
    return ", ".join(sql_string(v) for v in values)


def item_condition(categories: Sequence[str] | None = None, exclude_item_ids: Sequence[str] = ()) -> str | None:
    """Condition on the items table: category in a list, item ids excluded."""
    clauses = []
    if categories is not None:
        clauses.append(f"category IN ({_values(categories, 'category')})" if categories else "false")
    if exclude_item_ids:
        clauses.append(f"item_id NOT IN ({_values(exclude_item_ids, 'exclude_item_ids')})")
    return " AND ".join(clauses) or None


def answer_condition(sources: Sequence[str] | None = None, tags: Sequence[str] | None = None) -> str | None:
    """Condition on the answers table: source in a list, and any of the tags."""
    clauses = []
    if sources is not None:
        clauses.append(f"source IN ({_values(sources, 'source')})" if sources else "false")
    if tags is not None:
        clauses.append(f"array_has_any(tags, [{_values(tags, 'tags')}])" if tags else "false")
    return " AND ".join(clauses) or None
