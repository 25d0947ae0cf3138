"""Soak: a real `recqa serve` under concurrent load for a fixed time, with a publish midway.

Builds the bundled data into a temp warehouse and publishes it, writes a second answers
version (build-qa again, unpublished), starts the service on loopback (reload check every
second), then drives /recommend and /answer from `--concurrency` clients for `--seconds`.
Halfway through it runs `recqa publish`, so the service swaps versions under load. Prints:
status counts (5xx must be 0), dropped requests (connection errors or timeouts, must be 0),
whether the served answers version moved, and the service's resident memory (all its
processes) after warm-up and at the end (growth must stay under 10%).

    python benchmarks/soak.py --seconds 60 --concurrency 32
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANCE_LOG", "error")

from benchmarks.serving import start_server  # noqa: E402 - after the path set-up

DATA = Path(__file__).resolve().parents[1] / "data"
WARM_UP_SHARE = 0.2  # memory growth is measured from the end of this share of the run


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its children (the API worker and BentoML's own)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def served_answers_version(port: int) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/version")
    body = json.loads(connection.getresponse().read() or b"{}")
    return (body.get("tables") or {}).get("answers")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--work", default=None, help="folder for the warehouse and the server log (default: a temp dir)")
    args = parser.parse_args(argv)

    from features.adapters import stackfaq_queries
    from pipelines import build_qa, build_recs, publish

    work = Path(args.work or tempfile.mkdtemp(prefix="recqa-soak-"))
    warehouse = str(work / "warehouse")
    recs = build_recs.run(["--warehouse", warehouse, "--interactions", str(DATA / "ms-store" / "demoUsage.csv"),
                           "--items", str(DATA / "ms-store" / "demoCatalog.csv")])
    stackfaq = DATA / "stackfaq" / "stackExchange-FAQ.json"
    qa = build_qa.run(["--warehouse", warehouse, "--documents", str(stackfaq)])
    # candidates by id; --force: the soak's tables are not evaluated first
    publish.run(["--warehouse", warehouse, "--force", "--candidate", recs.candidate, "--candidate", qa.candidate])
    midway = build_qa.run(["--warehouse", warehouse, "--documents", str(stackfaq)]).candidate  # published midway

    os.environ["RECQA_RELOAD_SECONDS"] = "1"
    process, port = start_server(warehouse, work, cache=True)
    import lance

    users = lance.dataset(f"{warehouse}/users.lance", version="published").to_table(columns=["user_id"]).column("user_id").to_pylist()
    questions = [q for q, _ in stackfaq_queries(json.loads(stackfaq.read_text()))]
    rng = random.Random(0)
    statuses: collections.Counter[int] = collections.Counter()
    dropped: list[str] = []
    lock = threading.Lock()
    started = time.monotonic()
    stop_at = started + args.seconds

    def client(seed: int) -> None:
        local = random.Random(seed)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop_at:
            if local.random() < 0.5:
                route, body = "/recommend", {"user_id": local.choice(users), "k": 10}
            else:
                route, body = "/answer", {"question": local.choice(questions), "k": 5}
            try:
                connection.request("POST", route, json.dumps(body), {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                with lock:
                    statuses[response.status] += 1
            except (OSError, http.client.HTTPException) as error:
                with lock:
                    dropped.append(f"{route}: {type(error).__name__}: {error}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    try:
        version_before = served_answers_version(port)
        threads = [threading.Thread(target=client, args=(rng.random(),)) for _ in range(args.concurrency)]
        for thread in threads:
            thread.start()
        memory: list[tuple[float, float]] = []
        published = False
        while time.monotonic() < stop_at:
            elapsed = time.monotonic() - started
            memory.append((elapsed, tree_rss_mb(process.pid)))
            if not published and elapsed >= args.seconds / 2:
                subprocess.run([str(Path(sys.executable).with_name("recqa")), "publish", "--warehouse", warehouse,
                                "--force", "--candidate", midway], check=True, capture_output=True)
                published = True
                print(f"published at {elapsed:.1f} s", flush=True)
            time.sleep(1.0)
        for thread in threads:
            thread.join()
        memory.append((time.monotonic() - started, tree_rss_mb(process.pid)))
        version_after = served_answers_version(port)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)

    warm = next(rss for elapsed, rss in memory if elapsed >= WARM_UP_SHARE * args.seconds)
    end = memory[-1][1]
    peak = max(rss for elapsed, rss in memory if elapsed >= WARM_UP_SHARE * args.seconds)
    errors = sum(count for status, count in statuses.items() if status >= 500)
    total = sum(statuses.values())
    growth = (end - warm) / warm
    print(f"{args.seconds:.0f} s at concurrency {args.concurrency}: {total:,} responses ({total / args.seconds:.1f}/s), "
          f"statuses {dict(sorted(statuses.items()))}")
    print(f"5xx: {errors}   dropped: {len(dropped)}   served answers version: {version_before} -> {version_after}")
    print(f"service RSS: {warm:.0f} MB after warm-up, {end:.0f} MB at the end (peak {peak:.0f} MB), growth {100 * growth:+.1f}%")
    for line in dropped[:5]:
        print("  dropped:", line)
    ok = errors == 0 and not dropped and version_after != version_before and growth < 0.10
    print("PASS" if ok else "FAIL", "(0 5xx, 0 dropped, the publish served, RSS growth < 10%)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
