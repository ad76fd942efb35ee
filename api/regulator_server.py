"""Running a regulator node with its HTTP API: ``jointledger serve --role regulator``.

The config file and the node it describes are :mod:`ledger_node.regulator.config`'s.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import uvicorn

from api.regulator_app import create_regulator_app
from api.server import run_until_stopped, warn_at_start, warn_stderr
from api.serving import uvicorn_config
from ledger_node.errors import InvalidConfig
from ledger_node.gcpause import freeze_long_lived
from ledger_node.regulator.config import (
    build_regulator,
    load_regulator_config,
)
from ledger_node.tls import url_scheme


def serve_regulator_file(path: Path, *, name: str | None = None, rpc_url: str | None = None,
                         echo: Callable[[str], None] = print,
                         warn: Callable[[str], None] = warn_stderr) -> None:
    """``jointledger serve --role regulator --name NAME --config PATH [--rpc-url URL]``.

    Serves https with the config's TLS; plain HTTP beyond loopback only with
    ``allow_plaintext``, and then ``warn`` says so first."""
    config = load_regulator_config(path)
    if name is not None and name != config.regulator.name:
        raise InvalidConfig(f"--name {name!r} but {path} configures regulator "
                            f"{config.regulator.name!r}")
    warn_at_start(config.plaintext_warning, warn)
    regulator = build_regulator(config, rpc_url=rpc_url)
    regulator.start()
    try:
        app = create_regulator_app(regulator, config.http)
        server = uvicorn.Server(uvicorn_config(app, config.http, host=config.host,
                                               port=config.port, tls=config.server_tls))
        echo(f"{config.regulator.name} regulator node: following "
             f"{', '.join(sorted(config.platforms)) or 'no platform'}; "
             f"{regulator.record_count()} records indexed")
        mutual = (", client certificates required" if config.server_tls is not None
                  and config.server_tls.mutual else "")
        echo(f"serving on {url_scheme(config.server_tls)}://{config.host}:{config.port}"
             f"{mutual} (API docs at /docs, console at /console/)")
        freeze_long_lived()  # the started server's objects: out of every collection
        run_until_stopped(server)
    finally:
        regulator.stop()
