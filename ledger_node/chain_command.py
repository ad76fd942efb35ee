"""``jointledger chain``: the embedded chain served as JSON-RPC, deployed for a consortium.

Every member's node, the regulator, auditors and ordinary Ethereum tools then reach one and
the same chain with ``--rpc-url``, as they would reach a Besu network. With a consortium
file the contract is deployed for the initial members (their accounts funded, since this
is a development chain) and the deployment file that nodes load is written.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from ledger_node.chain import ETH_TESTER_FAUCET_KEY, LedgerChain
from ledger_node.consortium import DEV_FUNDING_WEI, deploy_consortium, load_consortium
from ledger_node.rpc_server import ChainServer

Echo = Callable[[str], None]


def run_chain(
    host: str,
    port: int,
    *,
    consortium_path: Path | None = None,
    deployment_path: Path = Path("deployment.json"),
    echo: Echo = print,
    stop: threading.Event | None = None,
) -> int:
    """Serve a fresh embedded chain until SIGINT/SIGTERM (or ``stop``); return 0.

    Raises :class:`~ledger_node.errors.InvalidConfig` for a bad consortium file (before
    anything is served) and ``OSError`` if the port is taken.
    """
    consortium = load_consortium(consortium_path) if consortium_path else None
    chain = LedgerChain.embedded()
    server = ChainServer(chain.w3, host, port)  # binds the port now; serves after start()
    echo(f"JSON-RPC chain at {server.url} (chain id {chain.chain_id})")
    echo(f"dev faucet key {ETH_TESTER_FAUCET_KEY} (development only: public and funded)")
    if consortium is not None:
        # Deployed before serving: nothing else may use the chain's Web3 while it serves.
        deployer = chain.with_account(chain.dev_faucet())
        deployment = deploy_consortium(deployer, consortium, fund_wei=DEV_FUNDING_WEI)
        deployment.save(deployment_path)
        echo(f"JointLedger {deployment.address} deployed in block "
             f"{deployment.deploy_block} for "
             f"{', '.join(f'{m.name} ({m.role.name.lower()})' for m in consortium.members)}, "
             f"{consortium.threshold}-of-N; deployment file {deployment_path}")
    done = stop if stop is not None else threading.Event()
    previous = _install_signal_handlers(done)
    server.start()
    try:
        echo("serving; Ctrl-C to stop")
        done.wait()
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _install_signal_handlers(done: threading.Event) -> dict[signal.Signals, Any]:
    """Make SIGINT and SIGTERM set ``done`` (main thread only); return the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    return {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
