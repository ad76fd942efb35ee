"""``GET /metrics``: Prometheus text exposition of the node's and the HTTP layer's counters."""

from __future__ import annotations

import re
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from api.deps import NodeDep
from api.middleware import HttpMetrics

router = APIRouter(prefix="/metrics", tags=["health"])

PROMETHEUS_MEDIA_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_NAME_CHARS: Final = re.compile(r"[^a-zA-Z0-9_]")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(node_metrics: dict[str, float], http: HttpMetrics) -> str:
    """Render the node's metrics (``jointledger_<name>``) and the HTTP counters."""
    lines: list[str] = []
    for name, value in sorted(node_metrics.items()):
        metric = "jointledger_" + _NAME_CHARS.sub("_", name)
        kind = "gauge" if ("latency" in name or name in {
            "log_size", "anchored_size", "final_size", "pending_leaves"}) else "counter"
        if kind == "counter" and not metric.endswith("_total"):
            metric += "_total"
        lines += [f"# TYPE {metric} {kind}", f"{metric} {float(value)!r}"]
    requests, seconds, errors = http.snapshot()
    lines.append("# HELP jointledger_http_requests_total HTTP requests by route, method, status")
    lines.append("# TYPE jointledger_http_requests_total counter")
    for (route, method, status), count in sorted(requests.items()):
        lines.append(f'jointledger_http_requests_total{{route="{_label(route)}",'
                     f'method="{method}",status="{status}"}} {count}')
    lines.append("# HELP jointledger_http_request_seconds_total Time spent serving requests")
    lines.append("# TYPE jointledger_http_request_seconds_total counter")
    for (route, method), total in sorted(seconds.items()):
        lines.append(f'jointledger_http_request_seconds_total{{route="{_label(route)}",'
                     f'method="{method}"}} {total!r}')
    lines.append("# HELP jointledger_http_errors_total HTTP error responses (4xx client, 5xx "
                 "server)")
    lines.append("# TYPE jointledger_http_errors_total counter")
    for (route, kind), count in sorted(errors.items()):
        lines.append(f'jointledger_http_errors_total{{route="{_label(route)}",kind="{kind}"}} '
                     f"{count}")
    return "\n".join(lines) + "\n"


@router.get("", response_class=PlainTextResponse, summary="Prometheus metrics")
def metrics(request: Request, node: NodeDep) -> PlainTextResponse:
    """Submissions, leaves, checkpoints, anchoring latency, HTTP requests and errors."""
    http: HttpMetrics = request.app.state.http_metrics
    return PlainTextResponse(exposition(node.metrics(), http), media_type=PROMETHEUS_MEDIA_TYPE)
