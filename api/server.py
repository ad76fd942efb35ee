"""Running a platform node with its HTTP API: the chain, uvicorn, signals.

``jointledger serve --role platform --name unionpay --config FILE`` reads the config with
:func:`~ledger_node.platform.config.load_serve_config` (its format is documented there) and
serves it with :func:`serve_platform`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import uvicorn
from fastapi import FastAPI

from api.main import create_app
from api.serving import uvicorn_config
from ledger_node.chain.adapter import LedgerChain
from ledger_node.errors import InvalidConfig
from ledger_node.gcpause import freeze_long_lived
from ledger_node.http_settings import Settings
from ledger_node.platform.config import (
    ServeConfig,
    build_node,
    load_serve_config,
)
from ledger_node.tls import ServerTls, check_bind, url_scheme

_START_TIMEOUT_S: Final = 20.0
_log = logging.getLogger(__name__)


def warn_stderr(text: str) -> None:
    """Print a start-up warning on standard error."""
    print(text, file=sys.stderr, flush=True)


def warn_at_start(warning: str | None, warn: Callable[[str], None]) -> None:
    """Give the bind policy's warning (plain HTTP beyond loopback), if any, to the operator
    (``warn``) and to the log."""
    if warning is not None:
        warn(warning)
        _log.warning("%s", warning)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run_until_stopped(server: uvicorn.Server) -> None:
    """Serve until SIGINT or SIGTERM, then return (or raise ``SystemExit(0)``) so that the
    caller's clean-up runs.

    uvicorn stops gracefully on either signal and then raises the signal again with the
    handler it found; SIGTERM's default handler would kill the process before the node is
    drained, sealed and closed. With this handler the re-raised SIGTERM becomes a
    ``SystemExit`` that unwinds through the caller's ``finally``.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.run()
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


class PlatformServer:
    """A node's HTTP API (a platform's or a regulator's app) served by uvicorn in a
    background thread (tests, tools, benches), with the same uvicorn configuration as
    ``jointledger serve`` (:func:`~api.serving.uvicorn_config`).

    It does not own the node: start the node before and stop it after.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, *,
                 settings: Settings | None = None, tls: ServerTls | None = None,
                 allow_plaintext: bool = False) -> None:
        """Serve ``app`` on ``host``:``port`` (0: a free port) once :meth:`start` is called,
        with the limits of ``settings`` (default: the settings the app was built with), over
        https with ``tls``. The bind policy is the config files': beyond loopback TLS, or
        ``allow_plaintext`` (warned in the log); :class:`InvalidConfig` otherwise."""
        warn_at_start(check_bind(host, tls, allow_plaintext), lambda text: None)
        if settings is None:
            settings = getattr(app.state, "settings", None) or Settings()
        self._server = uvicorn.Server(uvicorn_config(app, settings, host=host, port=port,
                                                     tls=tls))
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port
        self.scheme = url_scheme(tls)

    @property
    def url(self) -> str:
        """``http(s)://host:port`` once started."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> None:
        """Start serving; return once the socket listens. Raises RuntimeError if it fails."""
        self._thread = threading.Thread(target=self._server.run, name="jointledger-http",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"HTTP server on {self.host}:{self.port} failed to start")
            if time.monotonic() > deadline:
                raise RuntimeError("HTTP server did not start in time")
            time.sleep(0.01)
        sockets = self._server.servers[0].sockets if self._server.servers else ()
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Stop serving and wait for the server thread to end."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=_START_TIMEOUT_S)
            self._thread = None


def serve_platform_file(
    path: Path,
    *,
    name: str | None = None,
    rpc_url: str | None = None,
    echo: Callable[[str], None] = print,
    warn: Callable[[str], None] = warn_stderr,
) -> None:
    """``jointledger serve --role platform --name NAME --config PATH [--rpc-url URL]``.

    Raises :class:`InvalidConfig` if ``name`` is given and is not the config's platform,
    then whatever :func:`serve_platform` raises.
    """
    config = load_serve_config(path)
    if name is not None and name != config.node.platform:
        raise InvalidConfig(f"--name {name!r} but {path} configures platform "
                            f"{config.node.platform!r}")
    serve_platform(config, rpc_url=rpc_url, echo=echo, warn=warn)


def serve_platform(
    config: ServeConfig,
    *,
    rpc_url: str | None = None,
    chain: LedgerChain | None = None,
    echo: Callable[[str], None] = print,
    warn: Callable[[str], None] = warn_stderr,
) -> None:
    """Run a platform node and its HTTP API until interrupted (SIGINT / SIGTERM).

    Starts the node (store, writer, sealer), serves the API on ``config.host:port`` (https
    with the config's TLS; plain HTTP beyond loopback only with ``allow_plaintext``, and
    then ``warn`` says so first) and, on exit, stops the API, then drains and seals the
    node. Raises what :func:`build_node` and :meth:`PlatformNode.start` raise.
    """
    warn_at_start(config.plaintext_warning, warn)
    node = build_node(config, chain=chain, rpc_url=rpc_url)
    node.start()
    try:
        app = create_app(node, config.http, client_tls=config.client_tls)
        server = uvicorn.Server(uvicorn_config(app, config.http, host=config.host,
                                               port=config.port, tls=config.server_tls))
        echo(f"{node.platform} node: log {node.log_id.hex()} ({node.size()} leaves), "
             f"chain {node.deployment.chain_id} contract {node.deployment.address}")
        mutual = (", client certificates required" if config.server_tls is not None
                  and config.server_tls.mutual else "")
        echo(f"serving on {url_scheme(config.server_tls)}://{config.host}:{config.port}"
             f"{mutual} (API docs at /docs)")
        freeze_long_lived()  # the started server's objects: out of every collection
        run_until_stopped(server)
    finally:
        node.stop()
