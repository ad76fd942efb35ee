"""Running a regulator node with its HTTP API: ``jointledger serve --role regulator``.

The config file and the node it describes are :mod:`ledger_node.regulator.config`'s.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import uvicorn

from api.regulator_app import create_regulator_app
from api.server import run_until_stopped
from api.serving import uvicorn_config
from ledger_node.errors import InvalidConfig
from ledger_node.regulator.config import (
    build_regulator,
    load_regulator_config,
)


def serve_regulator_file(path: Path, *, name: str | None = None, rpc_url: str | None = None,
                         echo: Callable[[str], None] = print) -> None:
    """``jointledger serve --role regulator --name NAME --config PATH [--rpc-url URL]``."""
    config = load_regulator_config(path)
    if name is not None and name != config.regulator.name:
        raise InvalidConfig(f"--name {name!r} but {path} configures regulator "
                            f"{config.regulator.name!r}")
    regulator = build_regulator(config, rpc_url=rpc_url)
    regulator.start()
    try:
        app = create_regulator_app(regulator, config.http)
        server = uvicorn.Server(uvicorn_config(app, config.http, host=config.host,
                                               port=config.port))
        echo(f"{config.regulator.name} regulator node: following "
             f"{', '.join(sorted(config.platforms)) or 'no platform'}; "
             f"{regulator.record_count()} records indexed")
        echo(f"serving on http://{config.host}:{config.port} (API docs at /docs)")
        run_until_stopped(server)
    finally:
        regulator.stop()
