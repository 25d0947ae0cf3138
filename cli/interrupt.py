"""Ctrl-C during a batch command: one line saying what did not happen, exit code 130, no traceback.

The main thread gets the usual KeyboardInterrupt, so `finally` blocks (temporary folders) run.
A run can sit in native code for a while (a Beam bundle, an encoder batch, a Lance commit)
where Python does not see the signal, or leave threads behind that keep the interpreter
alive; so a watcher thread, woken by the signal itself through the wakeup fd, ends the
process `GRACE_SECONDS` later whatever the main thread is doing. Ending there is safe: a
job's only visible change is an atomic commit, and one not made leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what shells report for a process ended by Ctrl-C
GRACE_SECONDS = 1.0


class InterruptGuard:
    """`with InterruptGuard(message):` around a command's work, in the main thread.

    Leaving the block puts back the previous SIGINT handling, unless the work was interrupted:
    then the watcher stays to end the process.
    """

    def __init__(self, message: str) -> None:
        self.message = message
        self.interrupted = False
        self._announced = False
        self._lock = threading.Lock()
        self._installed = False

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            return self
        read_end, self._write_end = os.pipe()
        os.set_blocking(self._write_end, False)  # the C-level handler must never block
        self._previous_fd = signal.set_wakeup_fd(self._write_end, warn_on_full_buffer=False)
        self._previous_handler = signal.signal(signal.SIGINT, self._handle)
        threading.Thread(target=self._watch, args=(read_end,), name="recqa-interrupt", daemon=True).start()
        self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._installed or self.interrupted:
            return
        signal.signal(signal.SIGINT, self._previous_handler)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._write_end)  # the watcher reads end-of-file and stops
        self._installed = False

    def announce(self) -> int:
        """Print the message once (whichever of the main thread and the watcher gets here first)."""
        with self._lock:
            if not self._announced:
                self._announced = True
                sys.stdout.flush()
                print(self.message, file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT_CODE

    def _handle(self, signum: int, frame) -> None:
        self.interrupted = True
        raise KeyboardInterrupt

    def _watch(self, read_end: int) -> None:
        with os.fdopen(read_end, "rb", buffering=0) as wakeups:
            while data := wakeups.read(64):
                if signal.SIGINT in data:
                    self.interrupted = True
                    time.sleep(GRACE_SECONDS)  # the main thread may unwind and exit by itself meanwhile
                    self.announce()
                    os._exit(INTERRUPTED_EXIT_CODE)
