"""Follows the release log and the change log: opens a new Store when the release changes,
applies each new version of the change log over the served one, and swaps either in atomically.

Requests take `current()` once and keep that Store to the end, so a swap never changes the
tables under a request in flight; the old Store goes when its last request finishes. A new
version that cannot be opened is logged and skipped, and the old one keeps serving.

The change log is checked every CHANGES_POLL_SECONDS (a manifest read), the release log every
`interval_seconds`; a new Store has the change log applied before it is swapped in, so a
delete never reappears for the moment between a release and its overlay.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from features.errors import TableContractError
from registry.log import changes_version, published_versions
from serving.overlay import CHANGES_POLL_SECONDS
from serving.store import Store

logger = logging.getLogger(__name__)


class StoreFollower:
    """Holds the current Store and replaces it when the published versions change."""

    def __init__(
        self,
        warehouse: str,
        open_store: Callable[[dict[str, int]], Store],
        interval_seconds: float,
        on_swap: Callable[[Store], None] = lambda store: None,
    ) -> None:
        self._warehouse = warehouse
        self._open_store = open_store
        self._on_swap = on_swap
        self._interval = interval_seconds
        self._store: Store | None = None
        self._lock = threading.Lock()  # one reload at a time; readers never wait on it
        self._stop = threading.Event()
        self.not_ready_reason = "tables not opened yet"

    def current(self) -> Store | None:
        return self._store

    def refresh(self) -> bool:
        """Open the published versions if they differ from the served ones, then apply the change
        log if it moved; True on a swap."""
        released = self._refresh_release()
        return self.refresh_changes() or released

    def refresh_changes(self) -> bool:
        """Apply the change log's latest version over the served tables if it moved; True on a swap."""
        with self._lock:
            store = self._store
            if store is None:
                return False
            try:
                version = changes_version(self._warehouse)
                if version == store.changes:
                    return False
                fresh = store.with_changes(version)
            except Exception as error:  # noqa: BLE001 - an unreadable log: keep what is served, say why
                logger.error("cannot apply the change log (serving changes up to %s): %s", store.changes, error)
                return False
            self._store = fresh
            self._on_swap(fresh)
            logger.debug("serving changes up to version %s (was %s)", version, store.changes)
            return True

    def _refresh_release(self) -> bool:
        with self._lock:
            try:
                wanted = published_versions(self._warehouse)
            except Exception as error:  # noqa: BLE001 - an unreadable log: keep what is served, say why
                if self._store is None:
                    self.not_ready_reason = f"the release log of '{self._warehouse}' cannot be read: {error}"
                logger.error("cannot read the release log (serving %s): %s", self._store.versions if self._store else None, error)
                return False
            if wanted is None:
                if self._store is None:
                    self.not_ready_reason = (
                        f"nothing is published in '{self._warehouse}' yet "
                        "(build tables with `recqa build-recs` or `recqa build-qa`, then run `recqa publish`)"
                    )
                return False
            if self._store is not None and self._store.versions == wanted:
                return False
            try:
                store = self._open_store(wanted)
                store = store.with_changes(changes_version(self._warehouse))
            except TableContractError as error:
                self.not_ready_reason = str(error)
                logger.error("recqa is not ready: %s" if self._store is None else "kept serving; new version refused: %s", error)
                return False
            previous, self._store = self._store, store
            self._on_swap(store)
            logger.info("serving table versions %s (was %s)", store.versions, previous.versions if previous else None)
            return True

    def start(self) -> None:
        """Poll in a daemon thread until `stop()`."""
        threading.Thread(target=self._run, name="recqa-reload", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        released = time.monotonic()
        while not self._stop.wait(min(self._interval, CHANGES_POLL_SECONDS)):
            try:
                if time.monotonic() - released >= self._interval:
                    released = time.monotonic()
                    self.refresh()
                else:
                    self.refresh_changes()
            except Exception:  # noqa: BLE001 - the poller must outlive any one bad round
                logger.exception("reload check failed")
