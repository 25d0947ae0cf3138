"""Timestamp parsing for the input contract: epoch seconds or milliseconds, ISO 8601, strftime."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from features.errors import InputError

# Epoch values above this are taken as milliseconds (in seconds it would be year 5138).
_EPOCH_MILLIS_THRESHOLD = 100_000_000_000

# Non-ISO layouts seen in the bundled data; ms-store writes "2015/06/09T19:39:37".
_EXTRA_FORMATS = ("%Y/%m/%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S")

AUTO = "auto"
EPOCH_SECONDS = "epoch_s"
EPOCH_MILLIS = "epoch_ms"
ISO_8601 = "iso"
NAMED_FORMATS = (AUTO, EPOCH_SECONDS, EPOCH_MILLIS, ISO_8601)


def check_timestamp_format(fmt: str) -> str:
    """A format is one of NAMED_FORMATS or a strftime pattern (it contains a '%' directive)."""
    if fmt not in NAMED_FORMATS and "%" not in fmt:
        raise InputError(f"expected one of {list(NAMED_FORMATS)} or a strftime pattern, got {fmt!r}", field="timestamp_format")
    return fmt


def parse_timestamp(value: object, *, row: str | None = None, fmt: str = AUTO) -> float:
    """Seconds since the epoch (UTC) from a number, a numeric string, ISO 8601 or a strftime pattern.

    `auto` takes numbers as epoch seconds, or milliseconds when too large for seconds, and
    text as ISO 8601. Naive datetimes are taken as UTC so the same input always gives the same number.
    """
    if isinstance(value, bool) or value is None or value == "":
        raise InputError("missing or invalid timestamp", field="timestamp", row=row)
    if isinstance(value, datetime):
        return _utc(value).timestamp()
    text = value if isinstance(value, str) else None
    if fmt in (AUTO, EPOCH_SECONDS, EPOCH_MILLIS):
        try:
            number = float(value)
        except (TypeError, ValueError):
            if fmt != AUTO or text is None:
                raise InputError(f"timestamp {value!r} is not a number", field="timestamp", row=row) from None
            return _parse_text(text.strip(), row, None)
        if not math.isfinite(number) or number < 0:
            raise InputError(f"timestamp {value!r} is not a non-negative number", field="timestamp", row=row)
        if fmt == EPOCH_MILLIS or (fmt == AUTO and number > _EPOCH_MILLIS_THRESHOLD):
            return number / 1000.0
        return number
    if text is None:
        raise InputError(f"timestamp {value!r} is not text", field="timestamp", row=row)
    return _parse_text(text.strip(), row, None if fmt == ISO_8601 else fmt)


def _parse_text(text: str, row: str | None, pattern: str | None) -> float:
    parsed: datetime | None = None
    layouts = (pattern,) if pattern else _EXTRA_FORMATS
    if pattern is None:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
    for layout in layouts if parsed is None else ():
        try:
            parsed = datetime.strptime(text, layout)
            break
        except ValueError:
            continue
    if parsed is None:
        expected = f"pattern {pattern!r}" if pattern else "ISO 8601"
        raise InputError(f"cannot parse timestamp {text!r} as {expected}", field="timestamp", row=row)
    return _utc(parsed).timestamp()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
