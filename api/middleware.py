"""ASGI middleware: request body guards (size 413, encoding 415, JSON depth 400, before any
parser; a deadline on reading the body, 408), a deadline on handlers (503), metrics."""

from __future__ import annotations

import asyncio
import logging
import math
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
_log = logging.getLogger(__name__)


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

    The whole body must arrive within ``timeout_s`` seconds of the first read (408
    ``request-timeout``, connection closed), so a client trickling its body byte by byte
    holds a connection for that long at most; the buffer never passes ``max_bytes``. A
    request head (request line and headers) over ``max_head_bytes`` is refused 431 before
    the application sees it: the server parses a head that arrives whole in one read even
    when it is larger than the limit it puts on incomplete heads (h11's).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, problems: ProblemFactory,
                 timeout_s: float = 30.0, max_head_bytes: int | None = None) -> None:
        """Wrap ``app`` with a limit of ``max_bytes`` per request body, read within
        ``timeout_s`` seconds, and of ``max_head_bytes`` per request head (431 beyond)."""
        self.app = app
        self.max_bytes = max_bytes
        self.problems = problems
        self.timeout_s = timeout_s
        self.max_head_bytes = max_head_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the head's and the body's size, then run the application with the
        buffered body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.max_head_bytes is not None:
            size = head_size(scope)
            if size > self.max_head_bytes:
                await self._reject(scope, send, "headers-too-large",
                                   f"the request line and headers take {size} bytes, over "
                                   f"the limit of {self.max_head_bytes}")
                return
        if scope["method"] not in _METHODS_WITH_BODY:
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
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    total += len(chunk)
                    if total > self.max_bytes:
                        await self._reject(scope, send, "body-too-large",
                                           f"request body exceeds the limit of {self.max_bytes} "
                                           f"bytes (streamed {total} bytes so far)")
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._reject(scope, send, "request-timeout",
                               f"the request body was not complete within {self.timeout_s:g} s "
                               f"({total} bytes received)")
            return
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


def head_size(scope: Scope) -> int:
    """The size of a request's head as sent: request line and header lines (CRLFs
    included)."""
    target = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b"")) + 1
    line = len(scope.get("method", "")) + target + len("HTTP/1.1") + 4
    return line + sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ())) + 2


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class RequestTimeoutMiddleware:
    """Answer 503 ``handler-timeout`` (with ``Retry-After``) when the application has not
    started its response ``timeout_s`` seconds after it was called.

    The application runs as its own task; at the deadline the client gets the problem and
    the connection is free for its next request. What the task does next cannot be bounded
    here: an ``async`` handler is cancelled, but a synchronous FastAPI handler runs in a
    worker thread that Python cannot stop, so it runs to its end (holding its worker thread
    and whatever it holds, e.g. a store lock) and its late answer is dropped. Such a
    handler's effects still happen: a batch submission may still be committed after its
    503, which is safe because intake is idempotent (re-sending returns the same receipts).
    Abandoned tasks are counted in :attr:`abandoned` while they run.
    """

    def __init__(self, app: ASGIApp, *, timeout_s: float, problems: ProblemFactory) -> None:
        """Wrap ``app`` with a deadline of ``timeout_s`` seconds per request."""
        self.app = app
        self.timeout_s = timeout_s
        self.problems = problems
        self._running: set[asyncio.Task[None]] = set()
        self.abandoned = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the application; answer for it if it has not started answering in time."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        timed_out = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return  # the client already has its 503
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def run() -> None:
            await self.app(scope, receive, guarded_send)

        task = asyncio.get_running_loop().create_task(run())
        done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
        if done or started:  # finished, or answering (a response is not cut off midway)
            await task
            return
        timed_out = True
        self._abandon(task, scope)
        retry_after = max(1, math.ceil(self.timeout_s / 10))
        response = self.problems.response(
            "handler-timeout", f"the node did not answer within {self.timeout_s:g} s; the "
            "work may still complete (retrying a submission is safe)", scope.get("path", ""),
            headers={"Retry-After": str(retry_after)}, retry_after=retry_after)
        await response(scope, _no_body, send)

    def _abandon(self, task: asyncio.Task[None], scope: Scope) -> None:
        """Cancel ``task`` (a thread it waits for runs on) and log how it ends."""
        self.abandoned += 1
        self._running.add(task)
        began = time.monotonic()
        where = f"{scope.get('method', '')} {scope.get('path', '')}"

        def ended(finished: asyncio.Task[None]) -> None:
            self._running.discard(finished)
            self.abandoned -= 1
            error = None if finished.cancelled() else finished.exception()
            _log.warning("%s ended %.1f s after its %g s deadline%s", where,
                         time.monotonic() - began, self.timeout_s,
                         f": {error!r}" if error is not None else "")

        task.add_done_callback(ended)
        task.cancel()


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
