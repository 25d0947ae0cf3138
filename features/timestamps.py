"""Timestamp parsing for the input contract: epoch seconds or milliseconds, ISO 8601."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from features.errors import InputError

# Epoch values above this are taken as milliseconds (in seconds it would be year 5138).
_EPOCH_MILLIS_THRESHOLD = 100_000_000_000

# Non-ISO layouts seen in the bundled data; ms-store writes "2015/06/09T19:39:37".
_EXTRA_FORMATS = ("%Y/%m/%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S")


def parse_timestamp(value: object, *, row: str | None = None) -> float:
    """Seconds since the epoch (UTC) from a number, a numeric string or an ISO 8601 string.

    Naive datetimes are taken as UTC so that the same input always gives the same number.
    """
    if isinstance(value, bool) or value is None or value == "":
        raise InputError("missing or invalid timestamp", field="timestamp", row=row)
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            return _parse_datetime_text(text, row)
    if not math.isfinite(number) or number < 0:
        raise InputError(f"timestamp {value!r} is not a non-negative number", field="timestamp", row=row)
    return number / 1000.0 if number > _EPOCH_MILLIS_THRESHOLD else number


def _parse_datetime_text(text: str, row: str | None) -> float:
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        for layout in _EXTRA_FORMATS:
            try:
                parsed = datetime.strptime(text, layout)
                break
            except ValueError:
                continue
    if parsed is None:
        raise InputError(f"cannot parse timestamp {text!r}", field="timestamp", row=row)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()
