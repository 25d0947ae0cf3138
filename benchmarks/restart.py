"""How long a restarted `recqa serve` takes to serve a warehouse's change log, against none.

A service starts from its release and lays the change log's writes since the release's
builds over it before it is ready; their texts' vectors come from the log where the writer
kept them. Three starts of a real server over copies of one warehouse, in this order:
- `no log`: the change log removed, the baseline (what opening the release costs);
- `log without vectors`: the log with its vector columns emptied, as a log written before
  they were kept (or by `recqa upsert --no-embed`) is: every upserted text is embedded at the start;
- `log with vectors`: the log as the writer left it.
Each is timed from the process's start to /readyz 200 and to the log's last five live upserts
answering 200 at `GET /answers|/items/<id>`; the server's CPU is printed with them.

Run it on a warehouse a freshness run wrote to, e.g.

    python benchmarks/freshness.py --warehouse W --work /tmp/f ... --skip-rebuild
    python benchmarks/restart.py --warehouse W --work /tmp/restart
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANCE_LOG", "error")

from benchmarks.serving import start_server  # noqa: E402 - after the path set-up


def last_upserts(changes, count: int = 5) -> list[tuple[str, str]]:
    """The log's last `count` upserted answers or items that no later change deleted."""
    from features.changes import ANSWERS, ITEMS, UPSERT, fold

    live = fold(changes)
    seen: dict[tuple[str, str], None] = {}
    for change in changes:
        if change.op == UPSERT and change.kind in (ANSWERS, ITEMS) and getattr(live, change.kind).get(change.key) is not None:
            seen.pop((change.kind, change.key), None)
            seen[(change.kind, change.key)] = None
    return list(seen)[-count:]


def strip_vectors(warehouse: str) -> int:
    """Empty the change log's vector columns (a new version of the log); returns the rows that held some."""
    import lance
    import pyarrow as pa

    from features.changes import CHANGES_TABLE, VECTOR_COLUMNS
    from features.schemas import table_uri

    uri = table_uri(warehouse, CHANGES_TABLE)
    table = lance.dataset(uri).to_table()
    held = table.num_rows - table.column("model").null_count
    for name in VECTOR_COLUMNS:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(index), pa.nulls(table.num_rows, table.schema.field(index).type))
    lance.write_dataset(table, uri, schema=table.schema, mode="overwrite")
    return held


def server_cpu(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    return sum(p.cpu_times().user + p.cpu_times().system for p in (root, *root.children(recursive=True)))


def restart(warehouse: str, work: Path, wanted: list[tuple[str, str]], limit: float) -> dict:
    """Start a server, wait until ready and until `wanted` are served; the times and CPU."""
    started = time.monotonic()
    process, port = start_server(warehouse, work, cache=False)
    ready = time.monotonic() - started

    def served(kind: str, key: str) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", f"/{kind}/{key}")
        return connection.getresponse().status == 200

    try:
        while not all(served(kind, key) for kind, key in wanted):
            if time.monotonic() - started > limit:
                raise SystemExit(f"the log's last upserts not served after {limit:.0f} s; see {work / 'server.log'}")
            time.sleep(0.5)
        current = time.monotonic() - started
        cpu = server_cpu(process.pid)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
    return {"ready": ready, "current": current, "cpu": cpu}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", required=True, help="a published warehouse whose change log holds writes (left as it is: copies are started)")
    parser.add_argument("--work", type=Path, required=True, help="a folder for the copies and the servers' logs")
    parser.add_argument("--limit-seconds", type=float, default=1800.0)
    args = parser.parse_args(argv)

    from features.changes import CHANGES_TABLE
    from features.schemas import table_uri
    from registry.log import read_changes

    log = read_changes(args.warehouse).changes
    wanted = last_upserts(log)
    if not wanted:
        raise SystemExit(f"the change log of '{args.warehouse}' holds no live upsert of an answer or item: run benchmarks/freshness.py on it first")
    print(f"change log: {len(log)} changes; waiting for {wanted}", flush=True)
    results = {}
    for case in ("no log", "log without vectors", "log with vectors"):
        copy = args.work / case.replace(" ", "-") / "warehouse"
        shutil.rmtree(copy.parent, ignore_errors=True)
        shutil.copytree(args.warehouse, copy)
        if case == "no log":
            shutil.rmtree(table_uri(str(copy), CHANGES_TABLE))
        elif case == "log without vectors":
            print(f"  {strip_vectors(str(copy))} rows of the log held vectors; emptied in this copy", flush=True)
        results[case] = restart(str(copy), copy.parent, [] if case == "no log" else wanted, args.limit_seconds)
        shutil.rmtree(copy, ignore_errors=True)
        r = results[case]
        print(f"{case:>20}: ready {r['ready']:7.1f} s, last upserts served {r['current']:7.1f} s, server CPU {r['cpu']:7.1f} s", flush=True)
    base = results["no log"]["current"]
    for case in ("log without vectors", "log with vectors"):
        print(f"{case:>20}: {results[case]['current'] / base:.2f}x the start without a log")


if __name__ == "__main__":
    main()
