"""Progress of long work (encoding, scoring, trials): a bar on a terminal, log lines elsewhere.

On a terminal, tqdm draws a bar with the count, the total, the rate and the time left. When
stderr is not a terminal (a log file, Airflow, CI) a bar would fill the log with carriage
returns, so a plain line with the same figures is logged every `interval_seconds` instead,
and once at the end when the work took that long.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

logger = logging.getLogger(__name__)
LOG_INTERVAL_SECONDS = 10.0


def _duration(seconds: float) -> str:
    """h:mm:ss or m:ss, as tqdm shows it."""
    from tqdm import tqdm

    return tqdm.format_interval(max(0.0, seconds))


class Progress:
    """Counts done units of a known (or unknown, `total=None`) amount of work.

    Use as a context manager; `update(n)` after each piece, `write(line)` for a line that must
    not break the bar. `bar=None` draws a bar only when `stream` (stderr) is a terminal;
    otherwise a line is logged every `interval_seconds` (default `LOG_INTERVAL_SECONDS`).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        *,
        stream: IO[str] | None = None,
        bar: bool | None = None,
        interval_seconds: float | None = None,
        log_lines: bool = True,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.done = 0
        self._stream = stream or sys.stderr
        self._interval = LOG_INTERVAL_SECONDS if interval_seconds is None else interval_seconds
        self._log_lines = log_lines  # False when the caller writes its own line per unit
        self._started = time.monotonic()
        self._last_log = self._started
        self._logged = False
        self._closed = False
        use_bar = _is_terminal(self._stream) if bar is None else bar
        self._bar: Any = None
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self._stream, dynamic_ncols=True, leave=False)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(finished=exc[0] is None)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self._log_lines and now - self._last_log >= self._interval:
            self._last_log = now
            self._logged = True
            logger.info("%s", self.line())

    def eta_seconds(self) -> float | None:
        """Seconds left at the rate so far; None without a total or before the first unit."""
        elapsed = time.monotonic() - self._started
        if not self.total or not self.done or elapsed <= 0:
            return None
        return (self.total - self.done) * elapsed / self.done

    def line(self) -> str:
        """'encode-answers: 902/9,208 texts (10%), 3.0/s, ETA 46:08' (the log line's text)."""
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            eta = self.eta_seconds()
            left = f", ETA {_duration(eta)}" if eta is not None else ""
            return (f"{self.desc}: {self.done:,}/{self.total:,} {self.unit} ({self.done / self.total:.0%}), "
                    f"{rate:.1f}/s{left}")
        return f"{self.desc}: {self.done:,} {self.unit}, {rate:.1f}/s, {_duration(elapsed)} so far"

    def eta_text(self) -> str:
        """', ETA 1:05' while a total is known and work remains; '' otherwise."""
        eta = self.eta_seconds()
        return f", ETA {_duration(eta)}" if eta is not None and self.done < (self.total or 0) else ""

    def write(self, line: str) -> None:
        """A line for the user that does not break the bar."""
        write_line(line, self._stream)

    def close(self, finished: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            return
        elapsed = time.monotonic() - self._started
        if self._log_lines and finished and (self._logged or elapsed >= self._interval):
            logger.info("%s: %s %s done in %s", self.desc, f"{self.done:,}", self.unit, _duration(elapsed))


def write_line(line: str, stream: IO[str] | None = None) -> None:
    """Print a line to stderr above any progress bar being drawn (tqdm clears and redraws them)."""
    from tqdm import tqdm

    stream = stream or sys.stderr
    tqdm.write(line, file=stream)
    stream.flush()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False
