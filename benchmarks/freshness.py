"""Freshness: writes through a real `recqa serve` under read load, then a batch build that keeps them.

How to run (the full-size figures of issue 15, on a warehouse benchmarks/serving.py or
benchmarks/pipelines.py built from benchmarks/generate.py's data; the script writes into it):

    python benchmarks/freshness.py --warehouse /tmp/benchfull/warehouse --json freshness.json \\
        --recs-args "--input-format contract --interactions /tmp/benchfull/data/interactions.parquet --items /tmp/benchfull/data/items.parquet" \\
        --qa-args "--input-format contract --documents /tmp/benchfull/data/documents.parquet"

    python benchmarks/freshness.py --seconds 30 --baseline-seconds 15 --writes-per-second 10 --readers 2   # bundled data, smoke

Without --warehouse it builds the bundled data into a temp warehouse (build-recs, build-qa,
publish --force, through the CLI). --recs-args / --qa-args are the builds' input flags, used
for that first build and for phase 3 (default: the bundled files).

Phase 1: `--readers` closed-loop clients send a mix of /answer (hybrid), /search_items and
/recommend for `--baseline-seconds`: read p50/p95 with no writes. Phase 2: the same reads for
`--seconds` while `--writes-per-second` write requests of ONE record each arrive at a fixed
rate (answer and item upserts with distinctive made-up words, deletes of ids upserted earlier
and of a few table ids, events of a set of users). One upsert or delete in `--sample-every` is
followed by a checker that polls until a reader sees it (the answer by /answer keyword, the
item by /search_items, a deleted id gone from search and from GET /answers|/items): the
visibility time from the 2xx. It records read latency under writes against the baseline
(target p50 <= 1.2x), fragments and versions of the changes, answers and items tables, the
server's RSS at the start and end of phase 2, the cores the server and this script (the load,
on the same machine) used in each phase, and the writer's commits by stage from /metrics. Phase 3: the server stopped, build-recs and
build-qa from the original inputs and publish --force; every acknowledged upsert must be in
the published tables, no deleted id, and every user with logged events must have a vector
that counts the logged items as seen.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANCE_LOG", "error")

import requests  # noqa: E402 - after the path set-up

from benchmarks.serving import start_server  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
DEFAULT_RECS_ARGS = f"--interactions {DATA / 'ms-store' / 'demoUsage.csv'} --items {DATA / 'ms-store' / 'demoCatalog.csv'}"
DEFAULT_QA_ARGS = f"--documents {DATA / 'stackfaq' / 'stackExchange-FAQ.json'}"
TOKEN = "freshness-bench-" + os.urandom(6).hex()
# in every id this run writes: a second run over the same warehouse must not reuse (and so re-upsert) its ids
RUN = os.urandom(3).hex()
VISIBLE_TARGET_SECONDS = 2.0
READ_RATIO_TARGET = 1.2
POLL_SECONDS = 0.05
WRITER_THREADS = 256  # writes in flight at most (50 writes/s answered in 5 s); past that the writes due wait in the client (counted as sent late)
LATE_WARNING_MS = 1000  # writes sent this late (p95) mean the senders were all waiting on the server
# a sender's connection idle this long is dropped before its next write: uvicorn closes idle
# keep-alive connections after 5 s, and a write sent on one as it closes is reset, never answered
IDLE_CLOSE_SECONDS = 4.0
TABLE_DELETES = 10  # ids of the published tables deleted during the run ("a few")
EVENT_USERS = 20
# share of each kind of write; deletes fall back to an upsert while nothing is deletable
WRITE_MIX = (("answer", 0.35), ("item", 0.25), ("delete", 0.15), ("event", 0.25))
SYLLABLES = "ka zu mo ri te vo ny xa pe qu lo bi fe gu".split()


def recqa(*args: str) -> str:
    """Run a recqa command, fail loudly with its output; return stdout."""
    command = [str(Path(sys.executable).with_name("recqa")), *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def build_and_publish(warehouse: str, recs_args: str, qa_args: str) -> list[str]:
    """build-recs, build-qa and publish --force, as `make build` runs them; returns the candidates."""
    candidates = []
    for command, extra in (("build-recs", recs_args), ("build-qa", qa_args)):
        out = recqa(command, "--warehouse", warehouse, *shlex.split(extra))
        candidates += [line.split()[1] for line in out.splitlines() if line.startswith("candidate ")]
    recqa("publish", "--warehouse", warehouse, "--force", *[a for c in candidates for a in ("--candidate", c)])
    return candidates


def published_table(warehouse: str, name: str, columns: list[str]):
    import lance

    from features.schemas import table_uri
    from registry.log import published_version

    return lance.dataset(table_uri(warehouse, name), version=published_version(warehouse, name)).to_table(columns=columns)


def table_shape(warehouse: str) -> dict[str, dict[str, int]]:
    """Fragments and versions of the latest version of the change log and the served tables."""
    import lance

    from features.schemas import table_uri

    shape = {}
    for name in ("changes", "answers", "items"):
        try:
            ds = lance.dataset(table_uri(warehouse, name))
        except (OSError, ValueError):
            shape[name] = {"fragments": 0, "versions": 0}
            continue
        shape[name] = {"fragments": len(ds.get_fragments()), "versions": len(ds.versions())}
    return shape


def server_tree(pid: int) -> list:
    """The server's processes (psutil): the one started and all its descendants, the API worker
    and BentoML's own processes."""
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def server_rss_mb(pid: int) -> float:
    """Resident memory of the server's process group (the API worker and BentoML's own processes)."""
    try:
        import psutil

        total = 0
        for process in server_tree(pid):
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20
    except ImportError:
        total_kb = 0
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and os.getpgid(int(proc.name)) == pid:
                    line = next(l for l in (proc / "status").read_text().splitlines() if l.startswith("VmRSS:"))
                    total_kb += int(line.split()[1])
            except (OSError, StopIteration, ProcessLookupError):
                pass
        return total_kb / 1024


def commit_stages(base: str) -> dict[str, float]:
    """The writer's commits so far, from the server's /metrics: how many, records each, and each
    stage's mean seconds (`queued` well past the writer's interval, ingest/writer.py's
    DEFAULT_INTERVAL_SECONDS: it fell behind). NaN figures if /metrics cannot be read."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    try:
        text = requests.get(f"{base}/metrics", timeout=60).text
    except requests.RequestException as error:
        print(f"  /metrics not read ({error}): no commit figures", flush=True)
        text = ""
    for family in text_string_to_metric_families(text):
        if family.name in ("recqa_ingest_commit_records", "recqa_ingest_commit_seconds"):
            for sample in family.samples:
                if sample.name.endswith(("_sum", "_count")):
                    key = f"{sample.labels.get('stage', 'records')} {sample.name.rsplit('_', 1)[1]}"
                    totals[key] = totals.get(key, 0.0) + sample.value
    commits = totals.get("records count", 0.0)
    stages = {stage: totals.get(f"{stage} sum", 0.0) / commits if commits else float("nan") for stage in ("records", "queued", "ahead", "append")}
    return {"commits": commits, **stages}


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """CPU seconds used so far by the server's process tree, by its writes' process
    (`ingest.process`, counted in the tree too) and by this script (the load generator, on the
    same cores): what each phase's reads and writes cost the machine. A process's reaped
    children count in its own figures, so one that exits between two readings is not lost
    from the server's; a writes' process restarted between two readings is, from the writer's
    (its CPU then shows in the server's figure only)."""
    import psutil

    server = writer = 0.0
    for process in server_tree(pid):
        try:
            times = process.cpu_times()
            used = times.user + times.system + times.children_user + times.children_system
            server += used
            if "ingest.process" in " ".join(process.cmdline()):
                writer += used
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    own = os.times()
    return server, writer, own.user + own.system


def cores(start: tuple[float, ...], end: tuple[float, ...]) -> dict[str, float]:
    """Cores used between two (monotonic time, server CPU s, writer CPU s, script CPU s) readings."""
    wall = end[0] - start[0]
    return {name: (end[i] - start[i]) / wall for i, name in enumerate(("server", "writer", "script"), start=1)}


def quarters(values: list[float]) -> list[list[float]]:
    """`values` cut into four runs of equal length, in order (the last takes the remainder)."""
    size = len(values) // 4
    return [values[i * size: (i + 1) * size if i < 3 else len(values)] for i in range(4)] if size else [values]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


class Bench:
    """The server's address, the read corpus and everything measured, shared by the threads."""

    def __init__(self, base: str, users: list[str], items: list[str], titles: list[str], questions: list[str]) -> None:
        self.base, self.users, self.items, self.titles, self.questions = base, users, items, titles, questions
        self.lock = threading.Lock()
        self.phase = "baseline"
        self.latency: dict[str, list[float]] = {"baseline": [], "writes": []}
        self.route_latency: dict[tuple[str, str], list[float]] = {}  # (phase, route): which reads slow down
        self.read_errors: dict[str, int] = {"baseline": 0, "writes": 0}
        self.upserted: dict[str, dict[str, str]] = {"answers": {}, "items": {}}  # id -> its words, acknowledged
        self.upserted_ids: dict[str, list[str]] = {"answers": [], "items": []}  # the same ids, to draw from
        self.writer_local = threading.local()  # each writer thread's session (`writer_session`)
        self.writer_sessions: list[requests.Session] = []
        self.deleted: dict[str, set[str]] = {"answers": set(), "items": set()}
        self.events: dict[str, set[str]] = {}  # user -> items of acknowledged events
        self.acknowledged = {"answers": 0, "items": 0, "delete": 0, "events": 0}
        self.write_errors: list[str] = []
        self.ack_seconds: list[float] = []
        # from a write's due time (open loop: start + n / rate) to its send: the client pool's queue,
        # which fills only when the server answers writes slower than they are due
        self.send_lag: list[float] = []
        self.writes_started = 0.0
        self.writes_seconds = 0.0  # from the first write's due time to the last write's send
        self.visibility: dict[str, list[float]] = {"answer": [], "item": [], "delete": []}
        self.invisible: list[str] = []
        self.watch_delay: list[float] = []  # from the 2xx to the watcher's first poll (should be ~0)
        self.watching: set[str] = set()  # sampled upserts not seen yet: not deleted before they are
        self.watcher_requests = 0  # the visibility checkers' own reads: load on the server besides the readers'

    def post(self, session: requests.Session, route: str, body: dict, auth: bool = False) -> requests.Response:
        headers = {"Authorization": f"Bearer {TOKEN}"} if auth else {}
        return session.post(self.base + route, json=body, headers=headers, timeout=60)


def reader(bench: Bench, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    session = requests.Session()
    while not stop.is_set():
        choice = rng.randrange(3)
        if choice == 0:
            route, body = "/answer", {"question": rng.choice(bench.questions), "k": 5, "mode": "hybrid"}
        elif choice == 1:
            route, body = "/search_items", {"query": rng.choice(bench.titles), "k": 10}
        else:
            route, body = "/recommend", {"user_id": rng.choice(bench.users), "k": 10}
        phase = bench.phase
        started = time.perf_counter()
        try:
            ok = bench.post(session, route, body).status_code == 200
        except requests.RequestException:
            ok = False
        elapsed = time.perf_counter() - started
        with bench.lock:
            if ok:
                bench.latency[phase].append(elapsed)
                bench.route_latency.setdefault((phase, route), []).append(elapsed)
            else:
                bench.read_errors[phase] += 1


def words(rng: random.Random, n: int = 3) -> str:
    return " ".join("".join(rng.choice(SYLLABLES) for _ in range(4)) + str(rng.randrange(10**4)) for _ in range(n))


def visible(bench: Bench, session: requests.Session, kind: str, key: str, text: str, gone: bool) -> bool:
    """True when a reader sees the write: the id found by search, or (a delete) gone from search and lookup."""
    with bench.lock:
        bench.watcher_requests += 2 if text else 1
    if kind == "answers":
        found = key in [a["doc_id"] for a in bench.post(session, "/answer", {"question": text, "k": 10, "mode": "keyword"}).json().get("answers", [])] if text else False
        lookup = session.get(f"{bench.base}/answers/{key}", timeout=60).status_code
    else:
        found = key in [i["item_id"] for i in bench.post(session, "/search_items", {"query": text, "k": 10}).json().get("items", [])] if text else False
        lookup = session.get(f"{bench.base}/items/{key}", timeout=60).status_code
    return (not found and lookup == 404) if gone else found


def watch(bench: Bench, label: str, kind: str, key: str, text: str, gone: bool, acked: float, timeout: float) -> None:
    session = requests.Session()
    with bench.lock:
        bench.watch_delay.append(time.monotonic() - acked)
    try:
        while time.monotonic() - acked < timeout:
            try:
                if visible(bench, session, kind, key, text, gone):
                    with bench.lock:
                        bench.visibility[label].append(time.monotonic() - acked)
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(POLL_SECONDS)
        with bench.lock:
            bench.invisible.append(f"{label} {kind} {key}: not seen within {timeout:.0f} s")
    finally:
        with bench.lock:
            bench.watching.discard(key)


def writer_session(bench: Bench) -> requests.Session:
    """The calling writer thread's one HTTP session, kept alive across its writes as a client
    of a write API would, not a connection opened and closed for each write; closed by
    `write_load` at the end."""
    session = getattr(bench.writer_local, "session", None)
    if session is None:
        session = bench.writer_local.session = requests.Session()
        with bench.lock:
            bench.writer_sessions.append(session)
    elif time.monotonic() - bench.writer_local.used > IDLE_CLOSE_SECONDS:
        session.close()  # its connection may be the one the server is closing right now: open a new one
    bench.writer_local.used = time.monotonic()
    return session


def deletable_upsert(bench: Bench, table: str, rng: random.Random) -> str | None:
    """A random acknowledged upsert of `table` not deleted and not being watched, or None; the
    caller holds bench.lock. Drawn with retries, not by listing every upsert: a list made at
    each write grew with the run and took this script's CPU (which the server's cores share)."""
    ids = bench.upserted_ids[table]
    for _ in range(32):
        if not ids:
            return None
        key = ids[rng.randrange(len(ids))]
        if key not in bench.deleted[table] and key not in bench.watching:
            return key
    live = [key for key in ids if key not in bench.deleted[table] and key not in bench.watching]  # mostly deleted: look at all
    return rng.choice(live) if live else None


def write_one(bench: Bench, n: int, due: float, rng: random.Random, table_ids: dict[str, list[str]], sample: bool,
              watchers: ThreadPoolExecutor, timeout: float, kind: str | None = None) -> None:
    """Send write n (one record), record what was acknowledged, and maybe watch it become visible."""
    kind = kind or rng.choices([k for k, _ in WRITE_MIX], [w for _, w in WRITE_MIX])[0]
    session = writer_session(bench)
    if kind == "answer":
        table, key, text = "answers", f"fresh-{RUN}-answer-{n}", words(rng)
        route, body = "/ingest/answers", {"answers": [{"doc_id": key, "question": f"How does {text} work?", "answer": f"{text} works by {words(rng, 2)}."}]}
    elif kind == "item":
        table, key, text = "items", f"fresh-{RUN}-item-{n}", words(rng)
        route, body = "/ingest/items", {"items": [{"item_id": key, "title": text, "category": "Fresh"}]}
    elif kind == "event":
        user, item = f"fresh-{RUN}-user-{rng.randrange(EVENT_USERS)}", rng.choice(bench.items)
        route, body = "/ingest/events", {"events": [{"user_id": user, "item_id": item, "timestamp": time.time(), "event": "purchase"}]}
    else:
        with bench.lock:  # chosen and marked under one lock: no id is deleted twice
            deletable = {}
            for name in ("answers", "items"):
                drawn = deletable_upsert(bench, name, rng)
                if drawn is not None:
                    deletable[name] = drawn
            from_table = [t for t in ("answers", "items") if table_ids[t]]
            if from_table and (rng.random() < 0.2 or not deletable):
                table = rng.choice(from_table)
                key = table_ids[table].pop()
            elif deletable:
                table = rng.choice(sorted(deletable))
                key = deletable[table]
            else:
                table = None
            if table is not None:
                text = bench.upserted[table].get(key, "")
                bench.deleted[table].add(key)  # recorded before the 2xx: a failed delete is taken out again below
        if table is None:  # nothing deletable yet: an answer upsert instead
            return write_one(bench, n, due, rng, table_ids, sample, watchers, timeout, kind="answer")
        route, body = "/ingest/delete", {table: [key]}
    started = time.monotonic()
    with bench.lock:
        bench.send_lag.append(max(0.0, started - due))
        bench.writes_seconds = max(bench.writes_seconds, started - bench.writes_started)
    try:
        response = bench.post(session, route, body, auth=True)
        ok, why = response.status_code == 200 and response.json().get("accepted") == 1, response.text[:200]
    except requests.RequestException as error:
        ok, why = False, f"{type(error).__name__}: {error}"
    acked = time.monotonic()
    with bench.lock:
        if not ok:
            bench.write_errors.append(f"{route} {body}: {why}")
            if kind == "delete":
                bench.deleted[table].discard(key)
            return
        bench.ack_seconds.append(acked - started)
        if kind == "event":
            bench.events.setdefault(user, set()).add(item)
            bench.acknowledged["events"] += 1
            return
        bench.acknowledged["delete" if kind == "delete" else table] += 1
        if kind != "delete":
            bench.upserted[table][key] = text
            bench.upserted_ids[table].append(key)
        if sample:
            bench.watching.add(key)
    if sample:
        watchers.submit(watch, bench, kind, table, key, text, kind == "delete", acked, timeout)


def write_load(bench: Bench, args: argparse.Namespace, table_ids: dict[str, list[str]]) -> None:
    """Writes at a fixed rate (open loop) for --seconds, each in its own thread of a pool."""
    rng = random.Random(1)
    interval = 1.0 / args.writes_per_second
    # enough watcher threads for one per pending watch: no queueing inside the measured time
    with ThreadPoolExecutor(256) as watchers, ThreadPoolExecutor(WRITER_THREADS) as writers:
        started = bench.writes_started = time.monotonic()
        n = 0
        while time.monotonic() - started < args.seconds:
            writers.submit(write_one, bench, n, started + n * interval, random.Random(rng.random()), table_ids,
                           n % args.sample_every == 0, watchers, args.visibility_timeout)
            n += 1
            time.sleep(max(0.0, started + n * interval - time.monotonic()))
        writers.shutdown(wait=True)
    # the watchers' pool is shut down (waited for) by the with block
    for session in bench.writer_sessions:
        session.close()


def check_published(bench: Bench, warehouse: str) -> dict:
    """Phase 3's checks against the published release."""
    answers = published_table(warehouse, "answers", ["doc_id", "answer"])
    items = published_table(warehouse, "items", ["item_id", "title"])
    users = published_table(warehouse, "users", ["user_id", "seen_item_ids"])
    present = {"answers": dict(zip(answers.column("doc_id").to_pylist(), answers.column("answer").to_pylist())),
               "items": dict(zip(items.column("item_id").to_pylist(), items.column("title").to_pylist()))}
    expected, missing, wrong = 0, [], []
    for table in ("answers", "items"):
        for key, text in bench.upserted[table].items():
            if key in bench.deleted[table]:
                continue
            expected += 1
            if key not in present[table]:
                missing.append(f"{table}:{key}")
            elif text not in (present[table][key] or ""):
                wrong.append(f"{table}:{key}")
    found_deleted = [f"{t}:{k}" for t in ("answers", "items") for k in sorted(bench.deleted[t]) if k in present[t]]
    seen = dict(zip(users.column("user_id").to_pylist(), users.column("seen_item_ids").to_pylist()))
    live_items = set(present["items"])
    events_missing = [f"users:{u}" + ("" if u in seen else " (no vector)") for u, its in sorted(bench.events.items())
                      if u not in seen or not (its & live_items) <= set(seen[u] or [])]
    return {"acknowledged_upserts_expected": expected, "acknowledged_upserts_present": expected - len(missing), "missing": missing,
            "wrong_text": wrong, "deleted_ids": sum(len(v) for v in bench.deleted.values()), "deleted_found": found_deleted,
            "event_users": len(bench.events), "event_users_counted": len(bench.events) - len(events_missing), "events_missing": events_missing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", default=None, help="a published warehouse (written to: change log, phase-3 build); default: build the bundled data")
    parser.add_argument("--recs-args", default=DEFAULT_RECS_ARGS, help="build-recs input flags (the original inputs)")
    parser.add_argument("--qa-args", default=DEFAULT_QA_ARGS, help="build-qa input flags (the original inputs)")
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--baseline-seconds", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=600.0, help="phase 2: writes under read load")
    parser.add_argument("--writes-per-second", type=float, default=50.0)
    parser.add_argument("--sample-every", type=int, default=10, help="measure visibility of one upsert/delete in this many writes")
    parser.add_argument("--visibility-timeout", type=float, default=30.0)
    parser.add_argument("--work", default=None, help="folder for the warehouse and the server log (default: a temp dir)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write every figure here")
    parser.add_argument("--skip-rebuild", action="store_true",
                        help="stop after phase 2 (no phase-3 build, so nothing is checked after it): for a warehouse whose rebuild takes too long")
    args = parser.parse_args(argv)

    work = Path(args.work or tempfile.mkdtemp(prefix="recqa-freshness-"))
    work.mkdir(parents=True, exist_ok=True)
    warehouse = args.warehouse
    if warehouse is None:
        warehouse = str(work / "warehouse")
        print("building the bundled data into", warehouse, flush=True)
        build_and_publish(warehouse, args.recs_args, args.qa_args)

    users = published_table(warehouse, "users", ["user_id"]).column("user_id").to_pylist()
    items_table = published_table(warehouse, "items", ["item_id", "title"])
    answers = published_table(warehouse, "answers", ["doc_id", "question"])
    items, titles = items_table.column("item_id").to_pylist(), [t for t in items_table.column("title").to_pylist() if t]
    doc_ids = sorted(set(answers.column("doc_id").to_pylist()))
    questions = [q for q in answers.column("question").to_pylist() if q]
    rng = random.Random(0)
    # table ids to delete, disjoint from the items events name (so events stay countable)
    table_ids = {"answers": rng.sample(doc_ids, min(TABLE_DELETES // 2, len(doc_ids))),
                 "items": rng.sample(items, min(TABLE_DELETES // 2, len(items)))}
    event_items = [i for i in items if i not in set(table_ids["items"])]

    os.environ["RECQA_INGEST_TOKEN"] = TOKEN
    process, port = start_server(warehouse, work, cache=False)
    bench = Bench(f"http://127.0.0.1:{port}", users, event_items, titles, questions)
    stop = threading.Event()
    readers = [threading.Thread(target=reader, args=(bench, stop, seed), daemon=True) for seed in range(args.readers)]
    try:
        # One write first (a delete of an id that never existed, kept as a tombstone): the server
        # answers it once its writes' process (ingest/process.py) has loaded its model, which
        # would otherwise load during the baseline and slow it.
        first = bench.post(requests.Session(), "/ingest/delete", {"answers": [f"fresh-{RUN}-never-written"]}, auth=True)
        if first.status_code != 200:
            raise SystemExit(f"the first write failed: {first.status_code} {first.text[:200]}")
        print(f"phase 1: reads at concurrency {args.readers} for {args.baseline_seconds:.0f} s", flush=True)
        for thread in readers:
            thread.start()
        warm = min(5.0, args.baseline_seconds / 4)  # the readers' first requests (connections, first loads) left out of the CPU figures
        time.sleep(warm)
        cpu_start = (time.monotonic(), *cpu_seconds(process.pid))
        time.sleep(args.baseline_seconds - warm)
        cpu_switch = (time.monotonic(), *cpu_seconds(process.pid))
        shape_start, rss_start = table_shape(warehouse), server_rss_mb(process.pid)
        with bench.lock:
            bench.phase = "writes"
        print(f"phase 2: {args.writes_per_second:g} writes/s for {args.seconds:.0f} s under the same reads", flush=True)
        write_load(bench, args, table_ids)
        cpu_end = (time.monotonic(), *cpu_seconds(process.pid))
        commits = commit_stages(bench.base)
        stop.set()
        read_seconds = time.monotonic() - bench.writes_started  # the readers' phase 2, the watchers' last polls included
        for thread in readers:
            thread.join()
        shape_end, rss_end = table_shape(warehouse), server_rss_mb(process.pid)
    finally:
        stop.set()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)

    rebuild_seconds, checks = None, None
    if not args.skip_rebuild:
        print("phase 3: build-recs, build-qa from the original inputs, publish --force", flush=True)
        started = time.monotonic()
        build_and_publish(warehouse, args.recs_args, args.qa_args)
        rebuild_seconds = time.monotonic() - started
        checks = check_published(bench, warehouse)

    base, under = bench.latency["baseline"], bench.latency["writes"]
    vis = [s for v in bench.visibility.values() for s in v]
    sending = max(bench.writes_seconds, args.seconds)  # the last write sent late, or the asked length
    figures = {
        "warehouse": warehouse, "readers": args.readers, "baseline_seconds": args.baseline_seconds, "seconds": args.seconds,
        "writes_per_second": args.writes_per_second,
        "read_baseline": {"requests": len(base), "errors": bench.read_errors["baseline"], "p50_ms": 1000 * pct(base, 0.5), "p95_ms": 1000 * pct(base, 0.95)},
        "read_under_writes": {"requests": len(under), "errors": bench.read_errors["writes"], "p50_ms": 1000 * pct(under, 0.5), "p95_ms": 1000 * pct(under, 0.95)},
        "acknowledged": bench.acknowledged, "write_errors": len(bench.write_errors), "write_error_examples": bench.write_errors[:5],
        "ack_p50_ms": 1000 * pct(bench.ack_seconds, 0.5), "ack_p95_ms": 1000 * pct(bench.ack_seconds, 0.95),
        "visibility": {label: {"samples": len(v), "p50_s": pct(v, 0.5), "p95_s": pct(v, 0.95)} for label, v in {**bench.visibility, "all": vis}.items()},
        "not_visible": bench.invisible, "watch_start_delay_p95_s": pct(bench.watch_delay, 0.95),
        "watcher_requests_per_second": bench.watcher_requests / read_seconds,
        "writes_seconds": sending, "writes_sent_per_second": (sum(bench.acknowledged.values()) + len(bench.write_errors)) / sending,
        "send_lag_p95_ms": 1000 * pct(bench.send_lag, 0.95), "read_phase_seconds": read_seconds,
        "read_p50_ms_by_route": {f"{phase} {route}": 1000 * pct(v, 0.5) for (phase, route), v in sorted(bench.route_latency.items())},
        "read_p50_ms_by_quarter": [1000 * pct(part, 0.5) for part in quarters(under)],
        "cores": {"baseline": cores(cpu_start, cpu_switch), "writes": cores(cpu_switch, cpu_end)}, "commits": commits,
        "tables_start": shape_start, "tables_end": shape_end,
        "rss_mb_start": rss_start, "rss_mb_end": rss_end, "rebuild_seconds": rebuild_seconds, "published": checks,
    }
    rb, ru = figures["read_baseline"], figures["read_under_writes"]
    figures["read_p50_ratio"], figures["read_p95_ratio"] = ru["p50_ms"] / rb["p50_ms"], ru["p95_ms"] / rb["p95_ms"]
    acked = sum(bench.acknowledged.values())
    print(f"\nreads, baseline:      {rb['requests']:,} ok, {rb['errors']} errors, p50 {rb['p50_ms']:.1f} ms, p95 {rb['p95_ms']:.1f} ms")
    print(f"reads, under writes:  {ru['requests']:,} ok, {ru['errors']} errors, p50 {ru['p50_ms']:.1f} ms ({figures['read_p50_ratio']:.2f}x, "
          f"target <= {READ_RATIO_TARGET}x), p95 {ru['p95_ms']:.1f} ms ({figures['read_p95_ratio']:.2f}x)")
    print("  p50 by quarter:     " + ", ".join(f"{q:.1f} ms ({q / rb['p50_ms']:.2f}x)" for q in figures["read_p50_ms_by_quarter"])
          + "  (phase 2's reads in the order they finished)")
    routes = sorted({route for _, route in bench.route_latency})
    by_route = figures["read_p50_ms_by_route"]
    print("  p50 by route:       " + ", ".join(
        f"{route} {by_route.get(f'baseline {route}', float('nan')):.1f} -> {by_route.get(f'writes {route}', float('nan')):.1f} ms" for route in routes))
    sent = figures["writes_sent_per_second"]
    print(f"writes acknowledged:  {acked:,}, sent over {sending:.0f} s ({sent:.1f}/s of {args.writes_per_second:g} asked) {bench.acknowledged}, "
          f"failed {len(bench.write_errors)}; 2xx after p50 {figures['ack_p50_ms']:.0f} ms, p95 {figures['ack_p95_ms']:.0f} ms; "
          f"sent late p95 {figures['send_lag_p95_ms']:.0f} ms")
    if figures["send_lag_p95_ms"] > LATE_WARNING_MS:
        print(f"  THE SERVER FELL BEHIND: writes waited in the client p95 {figures['send_lag_p95_ms'] / 1000:.1f} s past their due time "
              f"(all {WRITER_THREADS} senders busy), so the reads above ran under a lighter write load than asked")
    for label, v in figures["visibility"].items():
        print(f"visibility {label:7s} {v['samples']:4d} samples: p50 {v['p50_s']:.2f} s ({v['p50_s'] / VISIBLE_TARGET_SECONDS:.2f}x of the "
              f"{VISIBLE_TARGET_SECONDS:g} s target), p95 {v['p95_s']:.2f} s ({v['p95_s'] / VISIBLE_TARGET_SECONDS:.2f}x)")
    print(f"  (watchers started p95 {figures['watch_start_delay_p95_s']:.3f} s after the 2xx; their reads "
          f"{figures['watcher_requests_per_second']:.1f}/s, beside the readers' {ru['requests'] / read_seconds:.1f}/s)")
    for line in bench.invisible[:5]:
        print("  not visible:", line)
    used = figures["cores"]
    print(f"cores used:           baseline server {used['baseline']['server']:.2f} + this script {used['baseline']['script']:.2f}; "
          f"under writes server {used['writes']['server']:.2f} (of which the writes' process {used['writes']['writer']:.2f}) "
          f"+ this script {used['writes']['script']:.2f} (of {len(os.sched_getaffinity(0))})")
    print(f"writer's commits:     {commits['commits']:.0f}, {commits['records']:.1f} records each; mean seconds queued "
          f"{commits['queued']:.3f}, embedding ahead {commits['ahead']:.3f}, appending {commits['append']:.3f}")
    for name in shape_start:
        s, e = shape_start[name], shape_end[name]
        print(f"{name:8s} fragments {s['fragments']} -> {e['fragments']}, versions {s['versions']} -> {e['versions']}")
    print(f"server RSS:           {rss_start:.0f} MB -> {rss_end:.0f} MB ({rss_end / rss_start:.2f}x)")
    for line in bench.write_errors[:5]:
        print("  write failed:", line)
    if checks is None:
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
        print("phase 3 skipped (--skip-rebuild): nothing checked after a rebuild;", "every sampled write seen" if not bench.invisible else "SOME SAMPLED WRITES NOT SEEN")
        return 0 if not bench.invisible else 1
    print(f"rebuild + publish:    {rebuild_seconds:.0f} s")
    print(f"acknowledged writes present: {checks['acknowledged_upserts_present']}/{checks['acknowledged_upserts_expected']}"
          + (f"  MISSING {checks['missing'][:10]}" if checks["missing"] else "") + (f"  WRONG TEXT {checks['wrong_text'][:10]}" if checks["wrong_text"] else ""))
    print(f"deleted ids found: {len(checks['deleted_found'])}" + (f" of {checks['deleted_ids']}: {checks['deleted_found'][:10]}" if checks["deleted_found"] else f" (of {checks['deleted_ids']} deleted)"))
    print(f"users with logged events counted: {checks['event_users_counted']}/{checks['event_users']}"
          + (f"  NOT COUNTED {checks['events_missing'][:10]}" if checks["events_missing"] else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    ok = not checks["missing"] and not checks["wrong_text"] and not checks["deleted_found"] and not checks["events_missing"] and not bench.invisible
    print("PASS" if ok else "FAIL", "(every acknowledged write present, no deleted id, events counted, every sampled write seen)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
