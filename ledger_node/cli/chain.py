"""``jointledger chain``: the embedded chain served as JSON-RPC, deployed for a consortium.

Every member's node, the regulator, auditors and ordinary Ethereum tools then reach one and
the same chain with ``--rpc-url``, as they would reach a Besu network. With a consortium
file the contract is deployed for the initial members (their accounts funded, since this
is a development chain) and the deployment file that nodes load is written.

With ``--tls-cert``/``--tls-key`` it serves https (and with ``--client-ca`` only to clients
whose certificate chains to that CA); beyond loopback it serves plain HTTP only with
``--allow-plaintext``, and warns.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from ledger_node.chain.adapter import ETH_TESTER_FAUCET_KEY, Deployment, LedgerChain
from ledger_node.chain.consortium import (
    DEV_FUNDING_WEI,
    Consortium,
    deploy_consortium,
    load_consortium,
)
from ledger_node.chain.rpc_server import ChainServer
from ledger_node.errors import DeploymentError
from ledger_node.tls import OPTION_NAMES, ServerTls, check_bind

Echo = Callable[[str], None]


def run_chain(
    host: str,
    port: int,
    *,
    consortium_path: Path | None = None,
    deployment_path: Path = Path("deployment.json"),
    data: Path | None = None,
    echo: Echo = print,
    stop: threading.Event | None = None,
    tls: ServerTls | None = None,
    allow_plaintext: bool = False,
) -> int:
    """Serve the embedded chain until SIGINT/SIGTERM (or ``stop``); return 0.

    With ``tls`` it serves https (mutual TLS if ``tls.client_ca``); beyond loopback without
    it only with ``allow_plaintext`` (then warned). Raises
    :class:`~ledger_node.errors.InvalidConfig` naming the option for unusable certificate
    files or a plain-HTTP bind beyond loopback, before anything is served.

    With ``data`` the chain is stored there and a restart continues it (same head, blocks,
    state); an existing deployment file that matches the stored chain is kept, not redeployed.
    Without it the chain lives in memory. Raises :class:`~ledger_node.errors.InvalidConfig`
    for a bad consortium file (before anything is served),
    :class:`~ledger_node.errors.ChainStoreCorrupt` for a damaged store, and ``OSError`` if
    the port is taken.
    """
    warning = check_bind(host, tls, allow_plaintext, names=OPTION_NAMES)
    names = (OPTION_NAMES.cert, OPTION_NAMES.key, OPTION_NAMES.client_ca)
    context = tls.context(names) if tls else None
    consortium = load_consortium(consortium_path) if consortium_path else None
    chain = LedgerChain.embedded_on_disk(data) if data else LedgerChain.embedded()
    try:
        if warning is not None:
            echo(warning)
        server = ChainServer(chain, host, port, ssl_context=context,
                             allow_plaintext=allow_plaintext)  # binds now; serves on start()
        return _serve(chain, server, consortium, deployment_path, data is not None, echo, stop)
    finally:
        chain.close()


def _serve(chain: LedgerChain, server: ChainServer, consortium: Consortium | None,
           deployment_path: Path, durable: bool, echo: Echo,
           stop: threading.Event | None) -> int:
    echo(f"JSON-RPC chain at {server.url} (chain id {chain.chain_id}, "
         f"{'stored' if durable else 'in memory'}, head block {chain.block_number()})")
    echo(f"dev faucet key {ETH_TESTER_FAUCET_KEY} (development only: public and funded)")
    existing = _existing_deployment(chain, deployment_path) if durable else None
    if existing is not None:
        echo(f"JointLedger {existing.address} (deployed in block {existing.deploy_block}) "
             f"kept from {deployment_path}")
    elif consortium is not None:
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
        echo(f"connect with --rpc-url {server.url}")
        echo("serving; Ctrl-C to stop")
        done.wait()
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        echo("chain server stopped; " + ("every mined block is on disk" if durable
                                         else "the in-memory chain is gone"))
    return 0


def _existing_deployment(chain: LedgerChain, path: Path) -> Deployment | None:
    """The deployment in ``path`` if it lives on this stored chain, else ``None``."""
    if not path.exists():
        return None
    try:
        deployment = Deployment.load(path)
        chain.attach(deployment)
    except DeploymentError:
        return None
    return deployment


def _install_signal_handlers(done: threading.Event) -> dict[signal.Signals, Any]:
    """Make SIGINT and SIGTERM set ``done`` (main thread only); return the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    return {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
