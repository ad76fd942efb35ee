"""``jointledger status DIR``: each node of a consortium directory, as its health says.

For every node in the run file (:mod:`ledger_node.cli.sitedir`) it reads ``/v1/health``
with the TLS settings of that node's own config (its CA, its certificate as a client) and
shows whether it is up, the size of its log, its last anchored checkpoint and the anchoring
lag (leaves not anchored yet, and the checkpoint's age); for the regulator, the logs it
follows and how many anchored leaves it has not verified yet. A node that does not answer
is shown ``DOWN`` with the reason.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from ledger_node.cli.sitedir import SiteProcess, node_endpoint, read_run_file
from ledger_node.errors import InvalidConfig


@dataclass(frozen=True)
class NodeStatus:
    """One row of the status table."""

    name: str
    role: str
    url: str
    state: str
    """``ok``, ``degraded`` or ``DOWN``."""
    log_size: int | None = None
    """Platform: leaves in its log. Regulator: platform logs followed."""
    anchored_size: int | None = None
    lag: int | None = None
    """Platform: leaves not anchored yet. Regulator: anchored leaves not verified yet."""
    checkpoint_age_s: float | None = None
    detail: str = ""

    @property
    def up(self) -> bool:
        """Whether the node answered."""
        return self.state != "DOWN"


def node_status(directory: Path, process: SiteProcess, *, now: float) -> NodeStatus:
    """Ask node ``process`` for its health and make its row (``DOWN`` if it does not
    answer with one)."""
    try:
        endpoint = node_endpoint(directory, process)
    except InvalidConfig as exc:
        return NodeStatus(process.name, process.role, "", "DOWN", detail=f"config: {exc}")
    try:
        response = httpx.get(f"{endpoint.url}/v1/health", timeout=5,
                             verify=endpoint.client_tls.ssl_context())
        health: dict[str, Any] = response.json()
        if response.status_code not in (200, 503) or "status" not in health:
            raise ValueError(f"HTTP {response.status_code}")
    except (httpx.HTTPError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        return NodeStatus(process.name, process.role, endpoint.url, "DOWN", detail=reason)
    state = str(health["status"])
    if process.role == "regulator":
        return NodeStatus(process.name, process.role, endpoint.url, state,
                          log_size=health.get("logs"), lag=health.get("behind"),
                          detail=health.get("last_error") or f"{health.get('faults')} faults")
    anchored = health.get("last_anchored") or {}
    size = health.get("store_size")
    anchored_size = int(anchored.get("tree_size", 0))
    age = now - anchored["timestamp"] if "timestamp" in anchored else None
    chain = health.get("chain") or {}
    detail = (f"chain block {chain.get('block_number')}" if chain.get("reachable")
              else f"chain unreachable: {chain.get('error')}")
    failing = (health.get("anchoring") or {}).get("failing")
    if failing:
        detail += f"; anchoring failing: {health['anchoring'].get('last_error')}"
    return NodeStatus(process.name, process.role, endpoint.url, state, log_size=size,
                      anchored_size=anchored_size,
                      lag=None if size is None else int(size) - anchored_size,
                      checkpoint_age_s=None if age is None else round(age, 1), detail=detail)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def render_table(rows: list[NodeStatus]) -> str:
    """The rows as a fixed-width table, then a line naming the nodes that are down."""
    header = ("NODE", "ROLE", "STATE", "LOG", "ANCHORED", "LAG", "CKPT AGE", "URL", "DETAIL")
    cells = [header] + [(r.name, r.role, r.state, _cell(r.log_size), _cell(r.anchored_size),
                         _cell(r.lag), "-" if r.checkpoint_age_s is None
                         else f"{r.checkpoint_age_s:g}s", r.url, r.detail) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=False))
             + "  " + row[-1] for row in cells]
    down = [r.name for r in rows if not r.up]
    lines.append(f"DOWN: {', '.join(down)} (each row's DETAIL says what was found; expected "
                 "every node to answer. Try: jointledger up DIR, or the node's log)" if down
                 else f"all {len(rows)} nodes up")
    return "\n".join(lines)


def run_status(directory: Path, *, as_json: bool = False) -> int:
    """Print the status of every node in ``directory``; exit 0 when all answer, 1 when
    one is down, 2 for a directory that is not a consortium's."""
    try:
        processes = [p for p in read_run_file(directory) if p.role != "chain"]
    except InvalidConfig as exc:
        print(f"jointledger status: {exc}", file=sys.stderr)
        return 2
    now = time.time()
    rows = [node_status(directory, process, now=now) for process in processes]
    if as_json:
        print(json.dumps({"nodes": [asdict(row) | {"up": row.up} for row in rows],
                          "down": [row.name for row in rows if not row.up]}, indent=2))
    else:
        print(render_table(rows))
    return 0 if all(row.up for row in rows) else 1
