"""ASGI middleware: request body guards (size 413, encoding 415, JSON depth 400, before any
parser), metrics."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import ProblemFactory
from ledger_node.jsonlimits import (
    MAX_JSON_DEPTH,
    JsonTextRefused,
    check_json_text,
    json_nested_deeper_than,
)

_METHODS_WITH_BODY: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` (413), not UTF-8 (415) or nested too deep
    (400), unparsed.

    A declared ``Content-Length`` over the limit is refused without reading the body; a
    streamed (chunked) body is read up to the limit and refused as soon as it passes it.
    A body that is not UTF-8 without a byte order mark, or declares another charset, is
    refused (JSON between systems is UTF-8, RFC 8259 §8.1; ``json`` would otherwise guess
    UTF-16 or UTF-32 and parse text the depth check never saw), and JSON nested deeper than
    :data:`MAX_JSON_DEPTH` is refused before any parser sees it (see
    :mod:`ledger_node.jsonlimits`: it could crash the process). Accepted bodies are buffered
    and replayed to the application unchanged.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, problems: ProblemFactory) -> None:
        """Wrap ``app`` with a limit of ``max_bytes`` per request body."""
        self.app = app
        self.max_bytes = max_bytes
        self.problems = problems

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the body's size, then run the application with the buffered body."""
        if scope["type"] != "http" or scope["method"] not in _METHODS_WITH_BODY:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit():
                    await self._reject(scope, send, "bad-request",
                                       "Content-Length is not a decimal number")
                    return
                if int(value) > self.max_bytes:
                    await self._reject(scope, send, "body-too-large",
                                       f"request body of {int(value)} bytes exceeds the limit of "
                                       f"{self.max_bytes} bytes")
                    return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._reject(scope, send, "body-too-large",
                                   f"request body exceeds the limit of {self.max_bytes} bytes "
                                   f"(streamed {total} bytes so far)")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = next((v.decode("latin-1") for n, v in scope.get("headers", ())
                             if n == b"content-type"), None)
        try:
            check_json_text(body, content_type=content_type)
        except JsonTextRefused as refused:
            await self._reject(scope, send, "unsupported-media-type", refused.reason)
            return
        if json_nested_deeper_than(body, MAX_JSON_DEPTH):
            await self._reject(scope, send, "malformed-json",
                               f"JSON nested deeper than {MAX_JSON_DEPTH} levels is refused")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, send: Send, slug: str, detail: str) -> None:
        response = self.problems.response(slug, detail, scope.get("path", ""),
                                          headers={"Connection": "close"})
        await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class HttpMetrics:
    """Thread-safe HTTP counters by route template, method and status (for ``/metrics``)."""

    def __init__(self) -> None:
        """Empty counters."""
        self._lock = threading.Lock()
        self.requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.seconds: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.errors: defaultdict[tuple[str, str], int] = defaultdict(int)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        with self._lock:
            self.requests[(route, method, status)] += 1
            self.seconds[(route, method)] += seconds
            if status >= 400:
                kind = "server" if status >= 500 else "client"
                self.errors[(route, kind)] += 1

    def snapshot(self) -> tuple[dict[tuple[str, str, int], int], dict[tuple[str, str], float],
                                dict[tuple[str, str], int]]:
        """Copies of the request counts, the summed durations and the error counts."""
        with self._lock:
            return dict(self.requests), dict(self.seconds), dict(self.errors)


class MetricsMiddleware:
    """Record every HTTP request's route template, method, status and duration."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        """Wrap ``app``, counting into ``metrics``."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the application and count the request once its response has started."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = str(getattr(route, "path", "unmatched"))
            self.metrics.observe(template, scope["method"], status,
                                 time.perf_counter() - started)
