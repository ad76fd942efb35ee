"""Running a regulator node with its HTTP API: ``jointledger serve --role regulator``.

The config file and the node it describes are :mod:`ledger_node.regulator.config`'s.
"""
from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import uvicorn

from api.regulator_app import create_regulator_app
from api.server import run_until_stopped, warn_at_start, warn_stderr
from api.serving import uvicorn_config
from ledger_node.errors import InvalidConfig
from ledger_node.gcpause import freeze_long_lived
from ledger_node.regulator.config import (
    RegulatorServeConfig,
    build_regulator,
    load_regulator_config,
)
from ledger_node.regulator.node import IngestShare
from ledger_node.regulator.workers import IngestSupervisor, supervisor_alive
from ledger_node.tls import url_scheme


def serve_regulator_file(path: Path, *, name: str | None = None, rpc_url: str | None = None,
                         ingest: bool = True, workers: int = 1, port: int | None = None,
                         echo: Callable[[str], None] = print,
                         warn: Callable[[str], None] = warn_stderr) -> None:
    """``jointledger serve --role regulator --name NAME --config PATH [--rpc-url URL]
    [--ingest on|off] [--workers N] [--port P]``.

    * ``ingest`` (default): this process follows the chain and ingests every log (with
      ``workers`` 1), or follows the chain and supervises ``workers`` ingest worker
      processes (:class:`~ledger_node.regulator.workers.IngestSupervisor`; PostgreSQL store
      only, :class:`InvalidConfig` otherwise);
    * ``ingest=False``: an API replica, serving trace, alerts and the console from the
      store that the ingest process fills, following nothing.

    ``port`` overrides the config's (replicas on one machine). Serves https with the
    config's TLS; plain HTTP beyond loopback only with ``allow_plaintext``, and then
    ``warn`` says so first."""
    config = _load(path, name)
    if port is not None:
        config = replace(config, port=port)
    if workers < 1:
        raise InvalidConfig(f"--workers must be at least 1, got {workers}")
    if not ingest and workers != 1:
        raise InvalidConfig("--workers applies to the ingest process, not to an "
                            "--ingest off replica")
    supervisor: IngestSupervisor | None = None
    if not ingest:
        config = config.with_process_role(ingest=None, follow_chain=False)
        what = "API replica (--ingest off): serving the store, following nothing"
    elif workers > 1:
        config.check_ingest_workers(workers)
        config = config.with_process_role(ingest=None, follow_chain=True)
        supervisor = IngestSupervisor(workers, functools.partial(
            worker_command, path, config.regulator.name, rpc_url))
        what = (f"following the chain; {workers} ingest workers follow "
                f"{', '.join(sorted(config.platforms)) or 'no platform'}")
    else:
        what = f"following {', '.join(sorted(config.platforms)) or 'no platform'}"
    warn_at_start(config.plaintext_warning, warn)
    regulator = build_regulator(config, rpc_url=rpc_url)
    regulator.start()
    try:
        if supervisor is not None:
            supervisor.start()
        app = create_regulator_app(regulator, config.http)
        server = uvicorn.Server(uvicorn_config(app, config.http, host=config.host,
                                               port=config.port, tls=config.server_tls))
        echo(f"{config.regulator.name} regulator node: {what}; "
             f"{regulator.record_count()} records indexed")
        mutual = (", client certificates required" if config.server_tls is not None
                  and config.server_tls.mutual else "")
        echo(f"serving on {url_scheme(config.server_tls)}://{config.host}:{config.port}"
             f"{mutual} (API docs at /docs, console at /console/)")
        freeze_long_lived()  # the started server's objects: out of every collection
        run_until_stopped(server)
    finally:
        if supervisor is not None:
            supervisor.stop()
        regulator.stop()


def _load(path: Path, name: str | None) -> RegulatorServeConfig:
    config = load_regulator_config(path)
    if name is not None and name != config.regulator.name:
        raise InvalidConfig(f"--name {name!r} but {path} configures regulator "
                            f"{config.regulator.name!r}")
    return config


def worker_command(path: Path, name: str, rpc_url: str | None,
                   share: IngestShare) -> list[str]:
    """The argument vector of ingest worker ``share`` of the regulator configured in
    ``path`` (``jointledger serve --role regulator --ingest-worker K/N``)."""
    command = [sys.executable, "-m", "ledger_node.cli", "serve", "--role", "regulator",
               "--name", name, "--config", str(path), "--ingest-worker",
               f"{share.index}/{share.of}"]
    return command + (["--rpc-url", rpc_url] if rpc_url is not None else [])


def run_ingest_worker(path: Path, share: IngestShare, *, name: str | None = None,
                      rpc_url: str | None = None) -> None:
    """One ingest worker (``--ingest-worker K/N``, started by the supervisor): verify and
    index the logs of ``share`` every ``follow_interval`` s, reading the anchors the
    supervisor stores; serve nothing. Returns on SIGTERM or SIGINT, after the round in
    progress commits, or when the supervisor that started it is gone."""
    config = _load(path, name).with_process_role(ingest=share, follow_chain=False)
    regulator = build_regulator(config, rpc_url=rpc_url)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    regulator.start()
    try:
        while supervisor_alive() and not stop.wait(1.0):
            pass
    finally:
        regulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
