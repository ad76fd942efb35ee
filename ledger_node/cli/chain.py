"""``jointledger chain``: the embedded chain served as JSON-RPC, deployed for a consortium.

Every member's node, the regulator, auditors and ordinary Ethereum tools then reach one and
the same chain with ``--rpc-url``, as they would reach a Besu network. With a consortium
file the contract is deployed for the initial members (their accounts funded, since this
is a development chain) and the deployment file that nodes load is written.

With ``--tls-cert``/``--tls-key`` it serves https (and with ``--client-ca`` only to clients
whose certificate chains to that CA); beyond loopback it serves plain HTTP only with
``--allow-plaintext``, and warns.

The server's limits (:class:`~ledger_node.chain.rpc_server.RpcLimits`) are options too:
:func:`add_limit_options` adds them to a parser and :func:`limits_from_options` reads them
back. Importing this module stays cheap (the chain is imported when it is served), so the
command line can build its parser without loading py-evm.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ledger_node.chain.adapter import Deployment, LedgerChain
    from ledger_node.chain.consortium import Consortium
    from ledger_node.chain.rpc_server import ChainServer, RpcLimits

from ledger_node.tls import OPTION_NAMES, ServerTls, check_bind

Echo = Callable[[str], None]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _method_list(text: str) -> frozenset[str]:
    methods = frozenset(name.strip() for name in text.split(",") if name.strip())
    if not methods:
        raise argparse.ArgumentTypeError("name at least one method")
    return methods


_LIMIT_OPTIONS: Final[tuple[tuple[str, str, Callable[[str], Any], str, str], ...]] = (
    ("max_body_bytes", "--rpc-max-body-bytes", _positive_int, "BYTES",
     "largest request body; larger ones get HTTP 413 (default 5242880, geth's 5 MiB)"),
    ("max_batch", "--rpc-max-batch", _positive_int, "N",
     "most calls in one JSON-RPC batch (default 1000, geth's)"),
    ("read_timeout", "--rpc-read-timeout", _positive_float, "SECONDS",
     "time a request body may take to arrive; then HTTP 408 (default 30, geth's)"),
    ("header_timeout", "--rpc-header-timeout", _positive_float, "SECONDS",
     "time a request's head may take once it began; then the connection is cut (default 10, "
     "geth's ReadHeaderTimeout)"),
    ("max_connections", "--rpc-max-connections", _positive_int, "N",
     "most connections served at once; one more gets HTTP 503 (default 256)"),
    ("request_timeout", "--rpc-request-timeout", _positive_float, "SECONDS",
     "time one HTTP request (a batch) may run; calls not started by then get -32002 "
     "(default 30)"),
    ("gas_cap", "--rpc-gascap", _positive_int, "GAS",
     "most gas an eth_call / eth_estimateGas may use (default 50000000, geth's "
     "--rpc.gascap)"),
    ("evm_timeout", "--rpc-evmtimeout", _positive_float, "SECONDS",
     "wall-clock limit of one eth_call / eth_estimateGas, enforced inside the EVM "
     "(default 5, geth's --rpc.evmtimeout)"),
    ("tx_timeout", "--rpc-txtimeout", _positive_float, "SECONDS",
     "time a sent transaction may take to execute, tried before it is mined; longer ones "
     "are refused (default 1)"),
    ("max_logs_range", "--rpc-max-logs-range", _positive_int, "BLOCKS",
     "widest eth_getLogs range, toBlock - fromBlock (default 1000, Besu's "
     "--rpc-max-logs-range)"),
    ("max_log_addresses", "--rpc-max-log-addresses", _positive_int, "N",
     "most addresses in one log filter (default 1000, geth's)"),
    ("max_log_topics", "--rpc-max-log-topics", _positive_int, "N",
     "most alternatives in one topic position of a log filter (default 1000, geth's)"),
    ("max_filters", "--rpc-max-filters", _positive_int, "N",
     "most filters (eth_newFilter ...) one client address keeps (default 256)"),
    ("filter_timeout", "--rpc-filter-timeout", _positive_float, "SECONDS",
     "a filter not polled for this long is dropped (default 300, geth's 5 minutes)"),
    ("methods", "--rpc-methods", _method_list, "M1,M2,...",
     "serve only these methods of the allow-list (default: all of it)"),
)
"""RpcLimits field, option, type, metavar and help of each limit option."""


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    """Add the server's limits to ``parser`` as ``--rpc-*`` options (docs/chain-server.md).
    An option not given leaves the limit at its default."""
    group = parser.add_argument_group(
        "JSON-RPC limits", "what one client's request may cost the chain (docs/chain-server.md)"
    )
    for name, flag, kind, metavar, text in _LIMIT_OPTIONS:
        group.add_argument(flag, dest=f"rpc_{name}", type=kind, metavar=metavar, help=text)


def limits_from_options(args: argparse.Namespace) -> RpcLimits:
    """The limits given by :func:`add_limit_options`' options, defaults for the others."""
    from ledger_node.chain.rpc_server import RpcLimits

    given = {name: getattr(args, f"rpc_{name}", None) for name, *_ in _LIMIT_OPTIONS}
    return RpcLimits(**{name: value for name, value in given.items() if value is not None})


def run_chain(
    host: str,
    port: int,
    *,
    consortium_path: Path | None = None,
    deployment_path: Path = Path("deployment.json"),
    data: Path | None = None,
    echo: Echo = print,
    stop: threading.Event | None = None,
    limits: RpcLimits | None = None,
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
    Without it the chain lives in memory. ``limits`` bound what one client's request may cost
    (default: :class:`~ledger_node.chain.rpc_server.RpcLimits`' defaults). Raises
    :class:`~ledger_node.errors.InvalidConfig` for a bad consortium file (before anything is
    served), a non-loopback host or a method in ``limits.methods`` the server does not have,
    :class:`~ledger_node.errors.ChainStoreCorrupt` for a damaged store, and ``OSError`` if
    the port is taken.
    """
    from ledger_node.chain.adapter import LedgerChain
    from ledger_node.chain.consortium import load_consortium
    from ledger_node.chain.rpc_server import ChainServer
    from ledger_node.errors import InvalidConfig

    warning = check_bind(host, tls, allow_plaintext, names=OPTION_NAMES)
    names = (OPTION_NAMES.cert, OPTION_NAMES.key, OPTION_NAMES.client_ca)
    context = tls.context(names) if tls else None
    consortium = load_consortium(consortium_path) if consortium_path else None
    chain = LedgerChain.embedded_on_disk(data) if data else LedgerChain.embedded()
    try:
        if warning is not None:
            echo(warning)
        try:  # binds now; serves on start()
            server = ChainServer(chain, host, port, limits=limits, ssl_context=context,
                                 allow_plaintext=allow_plaintext)
        except ValueError as exc:  # a method the server does not have, a bad limit
            raise InvalidConfig(f"cannot serve the chain: {exc}") from exc
        except OSError as exc:  # the port is taken, or the address is not this machine's
            raise InvalidConfig(f"cannot listen on {host}:{port} ({exc.strerror}); expected a "
                                "free port on an address of this machine. Try: another "
                                "--port (or --host), or stop the process holding it") from exc
        return _serve(chain, server, consortium, deployment_path, data is not None, echo, stop)
    finally:
        chain.close()


def _serve(chain: LedgerChain, server: ChainServer, consortium: Consortium | None,
           deployment_path: Path, durable: bool, echo: Echo,
           stop: threading.Event | None) -> int:
    from ledger_node.chain.adapter import ETH_TESTER_FAUCET_KEY
    from ledger_node.chain.consortium import DEV_FUNDING_WEI, deploy_consortium

    echo(f"JSON-RPC chain at {server.url} (chain id {chain.chain_id}, "
         f"{'stored' if durable else 'in memory'}, head block {chain.block_number()})")
    echo(f"dev faucet key {ETH_TESTER_FAUCET_KEY} (development only: public and funded)")
    echo(_describe(server.limits))
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


def _describe(limits: RpcLimits) -> str:
    """One line for the operator: the limits the server keeps."""
    methods = "all allow-listed" if limits.methods is None else ", ".join(sorted(limits.methods))
    return "; ".join([
        f"limits: eth_call/eth_estimateGas {limits.gas_cap:,} gas, {limits.evm_timeout:g} s",
        f"transactions {limits.tx_timeout:g} s",
        f"eth_getLogs {limits.max_logs_range:,} blocks, {limits.max_log_addresses:,} "
        f"addresses, {limits.max_log_topics:,} topics a position",
        f"{limits.max_filters} filters a client, dropped after {limits.filter_timeout:g} s idle",
        f"bodies {limits.max_body_bytes:,} bytes within {limits.read_timeout:g} s",
        f"batches {limits.max_batch:,} calls within {limits.request_timeout:g} s",
        f"methods: {methods}",
    ])


def _existing_deployment(chain: LedgerChain, path: Path) -> Deployment | None:
    """The deployment in ``path`` if it lives on this stored chain, else ``None``."""
    from ledger_node.chain.adapter import Deployment
    from ledger_node.errors import DeploymentError

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
