#!/usr/bin/env python3
"""Issue 15's goals table in one run: each row from the benchmark script that owns it.

Runs, one after another on this machine, ``bench_sm2.py`` (SM2 sign and verify against the
gmssl-based path), ``bench_core.py --only preparation`` (SDK preparation),
``bench_api.py --quick`` (batched intake, single-record p99, ack to anchored),
``bench_regulator.py`` (one ingest worker on SQLite over the two platforms' logs,
``--records`` each) and ``jointledger demo`` (20,000
payments, wall clock), reads each figure from the script's own table and prints the goals
table for docs/performance.md, with the load average before and after: the machine is
shared, and wall-clock figures move with it.

    .venv/bin/python scripts/bench_goals.py [--records 20000]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
PYTHON = sys.executable


@dataclass(frozen=True)
class Goal:
    """One row: which script's row to read, how to read its number, the goal."""

    measure: str
    script: str
    row: str  # the start of the script's row, after "| "
    column: int  # which cell holds the figure (1: the figure, 3: bench_sm2's speed-up)
    number: str  # regex with one group: the number compared with the goal
    goal: str
    met: Callable[[float], bool]


GOALS = (
    Goal("SM2 verify, OpenSSL ÷ the gmssl-based path", "sm2", "verify (a node's recurring key)",
         3, r"([\d.]+)×", "≥ 5×", lambda x: x >= 5),
    Goal("SM2 sign, OpenSSL ÷ the gmssl-based path", "sm2", "sign ", 3, r"([\d.]+)×", "≥ 2×",
         lambda x: x >= 2),
    Goal("single-record submissions, 32 concurrent clients, p99", "api",
         "single-record submissions", 1, r"p99 ([\d,.]+) ms", "≤ 20 ms", lambda x: x <= 20),
    Goal("SDK preparation (commit + escrow + tags + leaf), one core (CPU)", "core",
         "SDK preparation", 1, r"([\d,]+) /s", "≥ 40,000 /s", lambda x: x >= 40_000),
    Goal("batched HTTP intake, one node", "api", "batched intake over HTTP", 1,
         r"([\d,]+) records/s", "≥ 100,000 /s", lambda x: x >= 100_000),
    Goal("regulator ingest, 2 platforms (wall)", "regulator",
         "regulator ingest, 1 worker process(es), SQLite", 1,
         r"([\d,]+) records/s", "≥ 30,000 /s", lambda x: x >= 30_000),
    Goal("ack → anchored, steady 1,000 records/s, p99", "api", "ack to anchored under steady",
         1, r"p99 ([\d,.]+) ms", "≤ 150 ms", lambda x: x <= 150),
)


def load() -> str:
    """The load averages, as ``uptime`` shows them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def run(name: str, args: list[str]) -> str:
    """Run one benchmark; return its standard output (its progress goes to stderr)."""
    print(f"running {name} (load {load()}) ...", file=sys.stderr, flush=True)
    answer = subprocess.run(args, capture_output=True, text=True, check=False)
    if answer.returncode != 0:
        raise SystemExit(f"{name} failed ({answer.returncode}):\n{answer.stderr[-2000:]}")
    return answer.stdout


def cell(output: str, row: str, column: int) -> str:
    """The ``column``-th cell of the table row of ``output`` that starts with ``row``."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].startswith(row.strip()) and len(cells) > column:
            return cells[column]
    raise SystemExit(f"no row {row!r} in:\n{output}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000,
                        help="records per platform for the regulator's ingest (default 20,000)")
    args = parser.parse_args(argv)
    before = load()
    outputs = {
        "sm2": run("bench_sm2", [PYTHON, str(SCRIPTS / "bench_sm2.py")]),
        "core": run("bench_core", [PYTHON, str(SCRIPTS / "bench_core.py"), "--only",
                                   "preparation"]),
        "api": run("bench_api", [PYTHON, str(SCRIPTS / "bench_api.py"), "--quick"]),
        "regulator": run("bench_regulator", [PYTHON, str(SCRIPTS / "bench_regulator.py"),
                                             "--store", "sqlite", "--workers", "1",
                                             "--logs", "2", "--ingest-records",
                                             str(args.records), "--skip-trace"]),
    }
    print(f"running jointledger demo (load {load()}) ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        demo = subprocess.run([PYTHON, "-m", "ledger_node.cli", "demo", "--out", folder],
                              capture_output=True, text=True, check=False)
        demo_s = time.perf_counter() - started
    after = load()

    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average before {before}, "
          f"after {after}\n")
    print("| measure | measured | goal | verdict |")
    print("|---|---|---|---|")
    for goal in GOALS:
        figure = cell(outputs[goal.script], goal.row, goal.column)
        match = re.search(goal.number, figure)
        if match is None:
            raise SystemExit(f"no number in {figure!r} for {goal.measure}")
        value = float(match.group(1).replace(",", ""))
        print(f"| {goal.measure} | {figure} | {goal.goal} | "
              f"{'met' if goal.met(value) else 'NOT met'} |")
    # the worker's CPU per record, first of the row's "workers; server; platform nodes" cells
    cpu = cell(outputs["regulator"], "CPU per record (1 worker(s), SQLite)", 1)
    worker_us = float(cpu.split(" µs")[0].replace(",", ""))
    print(f"| (regulator ingest per CPU second of the ingest worker) | "
          f"{1e6 / worker_us:,.0f} records/s ({worker_us:,.0f} µs a record) | | |")
    verdict = "met" if demo.returncode == 0 and demo_s <= 12 else "NOT met"
    status = "" if demo.returncode == 0 else f" (exit status {demo.returncode})"
    print(f"| `jointledger demo`, 20,000 payments, wall clock | {demo_s:.1f} s{status} | "
          f"≤ 12 s | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
