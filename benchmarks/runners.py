"""What a runner costs and gains: the same build on each Beam runner, timed and measured.

For each runner, one build (build-recs by default, `--job qa` for build-qa) on the bundled
data into a fresh local warehouse, in its own process, printing the wall time, rows/s of each
stage (the stage counters over their own seconds) and peak memory (max RSS of the driver and
of the largest worker process). Runners: the local runner, the multi-process local runner
(2 workers) and Flink at parallelism 1 and 2 (`[local]`, LOOPBACK); a runner that cannot
start prints why instead of figures.

    python benchmarks/runners.py [--job recs|qa] [--runners direct,multiprocess,flink1,flink2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANCE_LOG", "error")

RUNNERS = {
    "direct": [],
    "multiprocess": ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
    "flink1": ["--runner=FlinkRunner", "--flink_master=[local]", "--parallelism=1", "--environment_type=LOOPBACK"],
    "flink2": ["--runner=FlinkRunner", "--flink_master=[local]", "--parallelism=2", "--environment_type=LOOPBACK"],
}
INPUTS = {
    "recs": ["--interactions", str(ROOT / "data/ms-store/demoUsage.csv"), "--items", str(ROOT / "data/ms-store/demoCatalog.csv")],
    "qa": ["--documents", str(ROOT / "data/stackfaq/stackExchange-FAQ.json")],
}


def run_one(job: str, runner: str) -> dict:
    """One build in this process; its figures as a dict (printed as JSON for the parent)."""
    from pipelines import build_qa, build_recs
    from pipelines.summary import stage_rows

    module = build_recs if job == "recs" else build_qa
    results = []
    original = module.stage_rows
    module.stage_rows = lambda result: results.append(result) or original(result)
    with tempfile.TemporaryDirectory() as warehouse:
        started = time.perf_counter()
        built = module.run(["--warehouse", warehouse, *INPUTS[job], *RUNNERS[runner]])
        seconds = time.perf_counter() - started
    stages = {row.stage: {"rows": max(row.counts.values(), default=0), "seconds": row.seconds} for row in stage_rows(results[0])}
    loads = sum(int(c.committed or c.attempted or 0) for c in results[0].metrics().query()["counters"] if c.key.metric.name == "model_loads")
    return {
        "seconds": seconds, "rows": built.rows, "stages": stages, "model_loads": loads,
        "driver_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def report(runner: str, figures: dict) -> str:
    rows = sum(figures["rows"].values())
    lines = [f"{runner}: {figures['seconds']:.1f} s wall, {rows:,} table rows ({rows / figures['seconds']:.0f} rows/s), "
             f"peak RSS driver {figures['driver_mb']:,.0f} MB, largest worker {figures['worker_mb']:,.0f} MB, "
             f"model loads {figures['model_loads']}"]
    for stage, stage_figures in figures["stages"].items():
        # stage seconds are its DoFns' time summed over workers; under a millisecond reads as no rate
        rate = f"{stage_figures['rows'] / stage_figures['seconds']:>10,.0f}" if stage_figures["seconds"] else f"{'-':>10}"
        lines.append(f"  {stage:<16} {stage_figures['rows']:>9,} rows {stage_figures['seconds']:>7.1f} s  {rate} rows/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", choices=sorted(INPUTS), default="recs")
    parser.add_argument("--runners", default=",".join(RUNNERS), help=f"comma-separated, of {', '.join(RUNNERS)}")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child: run this runner here, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print("FIGURES " + json.dumps(run_one(args.job, args.one)))
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for runner in args.runners.split(","):
        if runner not in RUNNERS:
            parser.error(f"--runners: unknown runner '{runner}'; choose from {', '.join(RUNNERS)}")
        child = subprocess.run([sys.executable, __file__, "--job", args.job, "--one", runner], capture_output=True, text=True, env=env)
        figures = [line[len("FIGURES "):] for line in child.stdout.splitlines() if line.startswith("FIGURES ")]
        if child.returncode != 0 or not figures:
            last = [line for line in (child.stderr or child.stdout).splitlines() if line.strip()][-1:] or ["(no output)"]
            print(f"{runner}: failed (exit {child.returncode}): {last[0]}")
            continue
        print(report(runner, json.loads(figures[0])), flush=True)


if __name__ == "__main__":
    main()
