"""Where the workers of one server find their one writer: a folder of this user's, a lock the
writer holds while it runs, and the socket it answers on.

With several BentoML workers (RECQA_WORKERS), each forwards its writes (ingest/forward.py), and
all of them must reach the same `python -m ingest.process`: two writers of one change log would
each batch and commit on their own. The writer takes the folder's lock (flock(2)) before it loads
anything and exits with LOCK_HELD when another process holds it; the kernel drops the lock when
its holder exits however it exits, so a writer killed mid-batch never leaves the next one locked
out. A worker that cannot connect starts a writer only when the lock is free (`writer_running`).

The folder is `<tmp>/recqa-ingest-<uid>/<server pid>-<warehouse digest>`: the server is the
process whose workers share it (BentoML's arbiter), and the warehouse keeps two warehouses'
writes apart in a process that serves several. The guarantee is one writer per server: two
servers started on one warehouse still have a writer each, as before this folder. The parent folder is made 0700 and refused when another
user owns it or others may open it, as tmux and ssh-agent treat theirs; folders of servers that
have exited are removed when a new one is made, so they do not pile up.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

LOCK_HELD = 3  # ingest.process's exit code when another process already writes through the folder
SOCKET_NAME = "ingest.sock"
LOCK_NAME = "writer.lock"


class FolderRefused(RuntimeError):
    """The writers' folder is another user's, or open to other users: a socket there is not private."""


def _private_root(base: str | None = None) -> Path:
    """`<base>/recqa-ingest-<uid>`, made 0700 if missing; refused unless it is ours and closed to others."""
    root = Path(base or tempfile.gettempdir()) / f"recqa-ingest-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700)
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise FolderRefused(f"{root} must be a folder of user {os.getuid()} that no other user can open (mode 0700): "
                            "remove it if it is yours, or set TMPDIR to a folder of your own, and start the service again")
    return root


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc here: kill(2) answered
        return True


def server_folder(warehouse: str, server: int, base: str | None = None) -> str:
    """The folder the workers of server `server` (a pid) share for `warehouse`'s writer, made if
    missing; the folders of servers no longer running are removed first."""
    root = _private_root(base)
    for old in root.iterdir():
        pid = old.name.split("-", 1)[0]
        with contextlib.suppress(OSError):  # removed meanwhile by another server, or not a folder: skipped
            if pid.isdigit() and int(pid) != server and not alive(int(pid)) and not writer_running(str(old)):
                shutil.rmtree(old, ignore_errors=True)  # a writer still finishing (it outlives its server a moment) keeps it
    digest = hashlib.sha256(warehouse.encode()).hexdigest()[:16]
    folder = root / f"{server}-{digest}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return str(folder)


def take_lock(folder: str) -> int | None:
    """The writer's lock on `folder`: an open descriptor to keep for the process's life, or None
    when another process holds it."""
    descriptor = os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


def writer_running(folder: str) -> bool:
    """Whether a process holds `folder`'s writer lock (a writer loading its model, or serving).

    Probing takes the lock for an instant; a writer starting in that instant exits with LOCK_HELD
    and the worker that started it, finding no socket, asks again (ingest/forward.py)."""
    descriptor = take_lock(folder)
    if descriptor is None:
        return True
    os.close(descriptor)  # closing the last descriptor of the open file releases the lock
    return False
