"""Latency and throughput of a real `recqa serve` on loopback, against raw batched encoding.

Starts the service over a published warehouse (by default it generates 1,000,000 interactions,
100,000 items and 100,000 QA documents with benchmarks/generate.py and builds them; pass
`--warehouse` to reuse tables, for example the ones benchmarks/pipelines.py left behind), then
drives `/recommend` and `/answer` (and `/search_items` with `--search-items`) with a
closed-loop HTTP load generator at each concurrency for a fixed time and prints p50/p95/p99
latency and throughput. In the same run it times raw `SentenceTransformer.encode` over the
same questions in batches of 64, the ceiling for `/answer` throughput (target: /answer at
concurrency 32 >= 0.7x of it).

Questions are distinct generated questions and the semantic cache is switched off (threshold
1.0, capacity 1: a question sent again in a later round is not held) unless `--cache` is given, so the
figures are for the full path.

    python benchmarks/serving.py --warehouse /tmp/benchfull/warehouse
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANCE_LOG", "error")

CONCURRENCY = (1, 8, 32)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_warehouse(work: Path, interactions: int, items: int, documents: int, encode_flags: list[str] | None = None) -> str:
    """Generate synthetic data and run the three batch jobs on it (slow at full size: encoding).

    `encode_flags` go to both builds, e.g. ["--quantize", "bf16"] (past its quality gate).
    """
    import generate  # benchmarks/generate.py, beside this file

    from pipelines import build_qa, build_recs, publish

    data, warehouse = work / "data", str(work / "warehouse")
    generate.main(["--out", str(data), "--format", "parquet", "--interactions", str(interactions), "--items", str(items),
                   "--users", str(max(1, interactions // 20)), "--documents", str(documents), "--seed", "0"])
    common = ["--warehouse", warehouse, "--input-format", "contract", "--rejects", str(work / "rejects")]
    recs = build_recs.run([*common, *(encode_flags or []), "--interactions", str(data / "interactions.parquet"), "--items", str(data / "items.parquet")])
    qa = build_qa.run([*common, *(encode_flags or []), "--documents", str(data / "documents.parquet")])
    # the candidates by id; --force: a benchmark's generated tables are not evaluated first
    publish.run(["--warehouse", warehouse, "--force", "--candidate", recs.candidate, "--candidate", qa.candidate])
    return warehouse


def start_server(warehouse: str, work: Path, cache: bool) -> tuple[subprocess.Popen, int]:
    """`recqa serve` on a free loopback port; returns once /readyz answers 200."""
    port = _free_port()
    env = {**os.environ, "BENTOML_HOME": str(work / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    if not cache:
        env["RECQA_CACHE_THRESHOLD"] = "1.0"  # no two distinct questions reach cosine 1.0
        env["RECQA_CACHE_CAPACITY"] = "1"  # and a question sent again (the next round) finds nothing held
    recqa = str(Path(sys.executable).with_name("recqa"))
    log = (work / "server.log").open("w")
    process = subprocess.Popen([recqa, "serve", "--warehouse", warehouse, "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}; see {work / 'server.log'}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                _await_workers(port, work / "server.log", deadline)
                return process, port
        except OSError:
            pass
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    raise SystemExit(f"server not ready after 300 s; see {work / 'server.log'}")


def _await_workers(port: int, log: Path, deadline: float) -> None:
    """Return once every worker (RECQA_WORKERS) has started: /readyz answered from one of them."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/version")
    workers = json.loads(connection.getresponse().read())["encoder"].get("workers", 1)
    while log.read_text(errors="replace").count("Service recqa initialized") < workers:
        if time.monotonic() > deadline:
            raise SystemExit(f"not every one of {workers} workers started after 300 s; see {log}")
        time.sleep(0.5)


def _await_group_exit(group: int, seconds: float = 60.0) -> None:
    """Wait until no process of the server's group is left (its workers stop after it may)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise SystemExit(f"the server's processes (group {group}) still run {seconds:.0f} s after SIGTERM")


def drive(port: int, route: str, bodies: list[dict], concurrency: int, seconds: float) -> dict:
    """A closed loop: `concurrency` clients each send the next body as soon as the last returns."""
    latencies: list[float] = []
    errors: list[int] = []
    cached = [0]
    next_body = iter(range(10**9))
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json"}
        while time.perf_counter() < stop_at:
            with lock:
                body = json.dumps(bodies[next(next_body) % len(bodies)])
            started = time.perf_counter()
            connection.request("POST", route, body, headers)
            response = connection.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - started
            with lock:
                if response.status == 200:
                    latencies.append(elapsed)
                    cached[0] += b'"cached":true' in payload
                else:
                    errors.append(response.status)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {"route": route, "concurrency": concurrency, "requests": len(latencies), "errors": len(errors),
            "cached": cached[0], "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "mean_ms": 1000 * statistics.fmean(latencies) if latencies else float("nan"), "rps": len(latencies) / wall}


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def raw_single_encode_ms(questions: list[str], encoder=None) -> float:
    """p50 ms of one question through the bare model (PyTorch, every core), one at a time, in this process."""
    from encoding.sentence_transformer import SentenceTransformerEncoder

    encoder = encoder or SentenceTransformerEncoder().load()
    for question in questions[:8]:
        encoder.encode([question])
    times = []
    for question in questions:
        started = time.perf_counter()
        encoder.encode([question])
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def raw_encode_throughput(questions: list[str], encoder) -> float:
    """Texts per second of the bare model (batches of its batch size, 64) over the same questions, in this process."""
    encoder.encode(questions[: encoder.batch_size])  # warm-up
    started = time.perf_counter()
    encoder.encode(questions)
    return len(questions) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", default=None, help="a published warehouse to serve (default: generate and build)")
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="load time per endpoint and concurrency")
    parser.add_argument("--questions", type=int, default=5_000, help="distinct questions to send (and to encode raw)")
    parser.add_argument("--cache", action="store_true", help="leave the semantic cache on")
    parser.add_argument("--work", default=None, help="folder for generated data, tables and the server log")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)), help="comma-separated client counts")
    parser.add_argument("--modes", default="hybrid", help="comma-separated /answer modes to drive (hybrid is the default mode)")
    parser.add_argument("--stackfaq-queries", action="store_true",
                        help="send the bundled StackFAQ rephrasings (1,249 distinct) rather than the table's questions: "
                             "the bundled table has only 125 questions, which the cache would answer after the first round")
    parser.add_argument("--search-items", action="store_true", help="also drive /search_items with the same questions as queries")
    parser.add_argument("--quantize", default=None, choices=("bf16",), help="build the generated tables with this precision (past its gate)")
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]

    import lance
    import pyarrow.compute as pc

    from features.schemas import PUBLISHED_TAG, table_uri

    work = Path(args.work or tempfile.mkdtemp(prefix="recqa-serving-"))
    work.mkdir(parents=True, exist_ok=True)
    warehouse = args.warehouse or build_warehouse(work, args.interactions, args.items, args.documents,
                                                    ["--quantize", args.quantize] if args.quantize else [])

    users = lance.dataset(table_uri(warehouse, "users"), version=PUBLISHED_TAG).to_table(columns=["user_id"])
    answers = lance.dataset(table_uri(warehouse, "answers"), version=PUBLISHED_TAG)
    rng = random.Random(0)
    user_ids = rng.sample(users.column("user_id").to_pylist(), min(5_000, users.num_rows))
    questions = list(dict.fromkeys(pc.unique(answers.to_table(columns=["question"]).column("question")).to_pylist()))
    if args.stackfaq_queries:
        from encoding.quantization import BUNDLED_STACKFAQ
        from features.adapters import stackfaq_queries

        questions = list(dict.fromkeys(q for q, _ in stackfaq_queries(json.loads(BUNDLED_STACKFAQ.read_text()))))
    questions = rng.sample(questions, min(args.questions, len(questions)))
    print(f"warehouse {warehouse}: {users.num_rows:,} users, {answers.count_rows():,} answer rows; "
          f"{len(user_ids):,} users and {len(questions):,} distinct questions to send")

    process, port = start_server(warehouse, work, args.cache)
    results = []
    try:
        recommend = [{"user_id": u, "k": 10} for u in user_ids]
        loads = [("/recommend", "", recommend)]
        loads += [("/answer", mode, [{"question": q, "k": 10, "mode": mode} for q in questions]) for mode in args.modes.split(",")]
        if args.search_items:
            loads.append(("/search_items", "", [{"query": q, "k": 10} for q in questions]))
        for route, mode, bodies in loads:
            drive(port, route, bodies[-64:], 4, 3.0)  # warm-up, not counted
            for concurrency in concurrencies:
                rng.shuffle(bodies)
                results.append({"mode": mode or None, **drive(port, route, bodies, concurrency, args.seconds)})
                r = results[-1]
                print(f"{route:<11} {mode:<7} c={concurrency:<3} {r['requests']:>6} ok {r['errors']:>3} errors  "
                      f"p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                      f"{r['rps']:7.1f} req/s  cached {r['cached']}", flush=True)
        rss = _tree_rss_mb(process.pid)
        print(f"server RSS (all its processes) after the load: {rss:,.0f} MB", flush=True)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        _await_group_exit(process.pid)  # every worker gone too: the raw baseline gets the idle machine

    from encoding.sentence_transformer import SentenceTransformerEncoder

    encoder = SentenceTransformerEncoder().load()  # the server is stopped: the model has both cores
    raw = raw_encode_throughput(questions, encoder)
    single = raw_single_encode_ms(questions[:200], encoder)
    print(f"\nraw batched encode: {raw:.1f} texts/s; one question alone: p50 {single:.2f} ms\n")
    print("figure                                          value        target")
    for r in results:
        name = f"{r['route']}{' ' + r['mode'] if r['mode'] else ''}"
        if r["concurrency"] == 1:
            target = {"/recommend": "<= 5 ms", "/answer": "<= 15 ms"}.get(r["route"], "")
            print(f"{name + ' p50 at concurrency 1':<48}{r['p50_ms']:7.1f} ms   {target}")
            if r["route"] == "/answer":
                print(f"{name + ' p50 at c=1 / one raw encode':<48}{r['p50_ms'] / single:7.2f}x     <= 0.8x on the bundled data")
        if r["concurrency"] == 32 and r["route"] == "/recommend":
            print(f"{name + ' req/s at c=32':<48}{r['rps']:7.1f}        >= 400")
        if r["concurrency"] == 32 and r["route"] == "/answer":
            print(f"{name + ' req/s at c=32 / raw encode':<48}{r['rps'] / raw:7.2f}x     >= 0.7x   ({r['rps']:.1f} req/s)")
    (work / "serving.json").write_text(json.dumps({"results": results, "raw_encode_texts_per_s": raw, "raw_single_encode_p50_ms": single, "server_rss_mb": rss}, indent=2))
    print(f"figures in {work / 'serving.json'}")


if __name__ == "__main__":
    main()
