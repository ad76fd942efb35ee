"""uvicorn's configuration for every JointLedger HTTP server, in one place.

:func:`uvicorn_config` builds the :class:`uvicorn.Config` of a node's app from its
:class:`~ledger_node.http_settings.Settings`: both runners (:mod:`api.server`,
:mod:`api.regulator_server`) and the threaded server of tests and tools use it, so a limit
is set once.

What uvicorn enforces itself, from the settings:

* ``max_connections`` → ``limit_concurrency``: a request that arrives while that many
  connections (or requests in flight) are open is answered 503 at once instead of queueing;
* ``max_header_bytes`` → ``h11_max_incomplete_event_size``: a request head that grows past
  it is answered 400 and the connection closed, so a head never grows memory unbounded;
* ``keep_alive_s`` → ``timeout_keep_alive``: an idle connection between requests closes.

What uvicorn lacks is a deadline on the request head: a client may open a connection and
send its head one byte every few seconds for ever, holding a connection slot (and, with
``max_connections`` of them, every slot). :class:`BoundedH11Protocol`, uvicorn's h11
protocol with that deadline, closes a connection whose head is not complete
``header_timeout_s`` seconds after it opened (or after the first byte of a later request on
it), with a 408 problem if part of a head had arrived. It also closes a connection once a
response is complete while the client is still sending that request's body (a body nobody
reads, e.g. sent with a ``GET``): uvicorn would keep such a connection open for as long as
the bytes trickle in. The body deadline of requests whose body is read is
:class:`~api.middleware.BodyLimitMiddleware`'s, the handler deadline
:class:`~api.middleware.RequestTimeoutMiddleware`'s.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ledger_node.http_settings import Settings
from ledger_node.tls import ServerTls


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head (see the module docstring).

    The deadline and the 408 answer are class attributes: :func:`bounded_protocol` makes a
    subclass per server with its settings, since uvicorn instantiates the class itself.
    """

    header_timeout_s: ClassVar[float] = 10.0
    timeout_answer: ClassVar[bytes] = b""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As uvicorn's protocol; no head deadline is armed before the connection opens."""
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Open the connection and start the first head's deadline."""
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        """Feed the bytes to h11; keep the head deadline while the next head is incomplete,
        drop it once a head is complete."""
        super().data_received(data)
        if self.transport.is_closing():
            self._cancel_head_deadline()
        elif self.conn.their_state is h11.IDLE:
            self._arm_head_deadline()  # waiting for (the rest of) a head: keeps its start
        else:
            self._cancel_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadline with the connection."""
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        """As uvicorn, but close the connection if the client is still sending this request's
        body: nothing reads it any more, and every byte would postpone the keep-alive
        timeout for ever."""
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()
        super().on_response_complete()

    def shutdown(self) -> None:
        """As uvicorn's (a graceful stop), but an idle connection over TLS is dropped at once.

        ``transport.close()`` on a TLS connection sends close_notify and waits for the
        client's, up to asyncio's 30 s ``ssl_shutdown_timeout``; an idle pooled client (the
        SDK's, another node's follower) never reads it, so every SIGTERM waited 30 s for each
        such client (measured: a node with one idle https client took 30.1 s to stop, one
        with none 1 s) and the demo's site SIGKILLed its nodes. Nothing is lost: the
        connection is between requests. A connection with a request in flight finishes it,
        as before.
        """
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.transport.get_extra_info("ssl_object") is not None:
            self.transport.abort()
            return
        super().shutdown()

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.header_timeout_s,
                                                       self._head_deadline_passed)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_deadline_passed(self) -> None:
        """Close the connection; with a 408 problem if part of a head has arrived (an idle
        connection is closed silently, like a keep-alive timeout: a client may be about to
        reuse it and must not read a 408 as the answer to its next request)."""
        self._head_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:
            self.transport.write(self.timeout_answer)
        self.transport.close()


def request_timeout_answer(settings: Settings) -> bytes:
    """The raw HTTP answer to a request head that did not arrive in time: 408, an RFC 9457
    problem (``request-timeout``), ``Connection: close``."""
    body = json.dumps({
        "type": settings.problem_base_uri + "request-timeout",
        "title": "Request not received in time",
        "status": 408,
        "detail": f"the request head was not complete within {settings.header_timeout_s:g} s",
    }, separators=(",", ":")).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
            + body)


def bounded_protocol(settings: Settings) -> type[BoundedH11Protocol]:
    """A :class:`BoundedH11Protocol` subclass with the head deadline of ``settings``."""
    answer = request_timeout_answer(settings)

    class Configured(BoundedH11Protocol):
        header_timeout_s = settings.header_timeout_s
        timeout_answer = answer

    return Configured


def uvicorn_config(app: Any, settings: Settings, *, host: str, port: int,
                   tls: ServerTls | None = None) -> uvicorn.Config:
    """The uvicorn configuration serving ``app`` on ``host``:``port`` with the limits of
    ``settings`` (see the module docstring), over https with ``tls`` (and requiring a client
    certificate that chains to ``tls.client_ca`` if it names one). No lifespan (the caller
    owns the node), no access log.

    The bind policy (TLS beyond loopback) is the config's: see
    :func:`ledger_node.tls.check_bind`. Over https the ASGI scope's ``scheme`` is
    ``https``, which is what makes the console's session cookie ``Secure``.
    """
    tls_options: dict[str, Any] = {}
    if tls is not None:
        tls_options = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
        if tls.client_ca is not None:
            tls_options |= {"ssl_ca_certs": str(tls.client_ca),
                            "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
        http=bounded_protocol(settings),
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.keep_alive_s,
        **tls_options,
    )
