"""A platform node's config file, and the node it describes.

``jointledger serve --role platform --name unionpay --config FILE`` reads it with
:func:`load_serve_config` (the HTTP layer, :mod:`api.server`, then serves the node). The
config file is TOML::


    [node]
    platform = "unionpay"          # the platform's name; its log is (platform, shard)
    shard = 0
    store = "unionpay.db"          # SQLite store (WAL); relative paths: to the config file
    hash = "sm3"                   # "sm3" | "sha256"
    seal_interval = 0.2            # seconds between checkpoints at most
    seal_size = 10000              # or as soon as this many leaves are pending
    max_batch = 10000              # leaves per submission at most
    member_cache_ttl = 1.0         # seconds a signer's membership is reused before a re-read
    member_stale_limit = 60.0      # an older entry is not used, even while the chain is down
    member_refresh_wait = 1.0      # seconds a submission waits for a due re-read at most
    chain_probe_interval = 2.0     # seconds between background chain probes (for health)
    chain_status_max_age = 15.0    # an older probe result counts as "chain not answering"

    [http]
    host = "127.0.0.1"             # any address; beyond loopback TLS (or allow_plaintext)
    port = 8700                    # 0: any free port
    tls_cert = "tls/unionpay.pem"  # serve https with this certificate chain (PEM) ...
    tls_key = "tls/unionpay.key"   # ... and its key
    client_ca = "tls/ca.pem"       # mutual TLS: clients need a certificate from this CA
    allow_plaintext = false        # true: plain HTTP beyond loopback (warned at start)
    max_body_bytes = 33554432      # larger bodies get 413 before parsing
    clock_skew_ms = 30000          # signed requests: allowed clock distance
    membership_ttl_s = 2.0         # seconds a chain membership record is cached
    # and the limits of docs/api.md "Limits" (max_connections, header_timeout_s, ...)

    [tls]                          # optional: what the node's own clients trust and present
    ca = "tls/ca.pem"              # CA bundle for https nodes and chain (default: system CAs)
    client_cert = "tls/unionpay.pem"   # presented to servers requiring mutual TLS
    client_key = "tls/unionpay.key"

    [keys]
    sm2 = "keys/unionpay.sm2.pem"          # the platform's SM2 private key (PEM)
    account = "keys/unionpay.account.key"  # its chain account key (hex)

    [chain]
    deployment = "deployment.json" # the JointLedger deployment (chain id, address, ...)
    rpc_url = "http://127.0.0.1:8545"  # JSON-RPC node; --rpc-url overrides it
    confirmations = 1              # blocks (its own included) that make an anchoring final
    rpc_timeout_s = 30.0           # per JSON-RPC request; retried 4 times with backoff
    receipt_timeout_s = 120.0      # a transaction not mined by then is checked and re-sent

The node's clients (the chain, and counterparty nodes in a reconciliation) use ``[tls]``.
The chain is reached through ``rpc_url``; without one (neither in the file nor
``--rpc-url``) the node uses the embedded chain at its default address
:data:`DEFAULT_CHAIN_URL`, where ``jointledger chain`` serves it over JSON-RPC, so every
member's node reaches one and the same chain. Tests and tools may hand an in-process
:class:`~ledger_node.chain.adapter.LedgerChain` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ledger_node.chain.adapter import Deployment, LedgerChain
from ledger_node.chain.rpc_server import DEFAULT_CHAIN_URL
from ledger_node.config_file import config_table, config_value, read_config
from ledger_node.crypto.keyfiles import MemberKeys, load_member_keys
from ledger_node.errors import InvalidConfig, InvalidKey
from ledger_node.http_settings import SETTINGS_KEYS, Settings, settings_from_table
from ledger_node.platform.node import NodeConfig, PlatformNode
from ledger_node.tls import (
    CLIENT_KEYS,
    NO_CLIENT_TLS,
    SERVER_KEYS,
    ClientTls,
    ServerTls,
    check_bind,
    local_host,
    read_client_tls,
    read_server_tls,
    toml_string,
    url_scheme,
)

DEFAULT_PORT: Final = 8700
_SECTIONS: Final = {
    "node": {"platform", "shard", "store", "hash", "seal_interval", "seal_size", "max_batch",
             "member_cache_ttl", "member_stale_limit", "member_refresh_wait",
             "chain_probe_interval", "chain_status_max_age"},
    "http": {"host", "port", *SETTINGS_KEYS, *SERVER_KEYS},
    "tls": CLIENT_KEYS,
    "keys": {"sm2", "account"},
    "chain": {"deployment", "rpc_url", "confirmations", "rpc_timeout_s", "receipt_timeout_s"},
}


@dataclass(frozen=True)
class ServeConfig:
    """Everything needed to run one platform node with its HTTP API."""

    node: NodeConfig
    sm2_key: Path
    account_key: Path
    deployment: Path
    rpc_url: str | None = None
    rpc_timeout: float = 30.0
    receipt_timeout: float = 120.0
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    http: Settings = field(default_factory=Settings)
    server_tls: ServerTls | None = None
    """The node's https certificate and key (and client CA for mutual TLS), if any."""
    allow_plaintext: bool = False
    """Serve plain HTTP beyond loopback (warned at start); without it that is refused."""
    client_tls: ClientTls = NO_CLIENT_TLS
    """What the node's clients (chain, counterparty nodes) trust and present."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidConfig(f"http.port {self.port} is not a TCP port")
        check_bind(self.host, self.server_tls, self.allow_plaintext)

    @property
    def plaintext_warning(self) -> str | None:
        """The warning to give at start when plain HTTP is served beyond loopback."""
        return check_bind(self.host, self.server_tls, self.allow_plaintext)

    @property
    def url(self) -> str:
        """Where a client on this machine reaches the node (``https`` with TLS)."""
        return f"{url_scheme(self.server_tls)}://{local_host(self.host)}:{self.port}"


def platform_config_toml(*, platform: str, shard: int, store: str, host: str, port: int,
                         tls_lines: str, keys_dir: str, deployment: str, rpc_url: str,
                         seal_interval: float, seal_size: int) -> str:
    """The text of platform ``platform``'s node config (log shard ``shard``), in the format
    :func:`load_serve_config` reads: its store, address, TLS lines
    (:func:`~ledger_node.tls.tls_config_toml`, or ``""`` for plain HTTP), key files in
    ``keys_dir`` and chain. The one writer of this format (``jointledger init``, the local
    site)."""
    return (f"[node]\nplatform = {toml_string(platform)}\nstore = {toml_string(store)}\n"
            f"shard = {shard}\nseal_interval = {seal_interval}\nseal_size = {seal_size}\n\n"
            f"[http]\nhost = {toml_string(host)}\nport = {port}\n{tls_lines}\n"
            f"[keys]\nsm2 = {toml_string(f'{keys_dir}/{platform}.sm2.pem')}\n"
            f"account = {toml_string(f'{keys_dir}/{platform}.account.key')}\n\n"
            f"[chain]\ndeployment = {toml_string(deployment)}\n"
            f"rpc_url = {toml_string(rpc_url)}\n")


def load_serve_config(path: Path) -> ServeConfig:
    """Read a TOML config file (format in the module docstring).

    Relative paths in it are resolved against the file's directory. Raises
    :class:`InvalidConfig` naming the offending key for a missing, unreadable or malformed
    file.
    """
    document = read_config(path, _SECTIONS)
    base = path.resolve().parent
    node = config_table(document, "node", _SECTIONS, required=True)
    http = config_table(document, "http", _SECTIONS)
    server_tls, allow_plaintext = read_server_tls(http, base)
    client_tls = read_client_tls(config_table(document, "tls", _SECTIONS), base)
    keys = config_table(document, "keys", _SECTIONS, required=True)
    chain = config_table(document, "chain", _SECTIONS, required=True)

    def file(section: str, data: Mapping[str, Any], key: str) -> Path:
        return base / Path(config_value(section, data, key, str, required=True))

    number = (int, float)
    try:
        node_config = NodeConfig(
            platform=config_value("node", node, "platform", str, required=True),
            store_path=file("node", node, "store"),
            shard=config_value("node", node, "shard", int, 0),
            hash_name=config_value("node", node, "hash", str, "sm3"),
            seal_interval=float(config_value("node", node, "seal_interval", number, 0.2)),
            seal_size=config_value("node", node, "seal_size", int, 10_000),
            max_batch=config_value("node", node, "max_batch", int, 10_000),
            member_cache_ttl=float(config_value("node", node, "member_cache_ttl", number, 1.0)),
            member_stale_limit=float(config_value("node", node, "member_stale_limit", number,
                                                  60.0)),
            member_refresh_wait=float(config_value("node", node, "member_refresh_wait", number,
                                                   1.0)),
            chain_probe_interval=float(config_value("node", node, "chain_probe_interval",
                                                    number, 2.0)),
            chain_status_max_age=float(config_value("node", node, "chain_status_max_age",
                                                    number, 15.0)),
            confirmations=config_value("chain", chain, "confirmations", int, 1),
        )
        rpc_timeout = float(config_value("chain", chain, "rpc_timeout_s", number, 30.0))
        receipt_timeout = float(config_value("chain", chain, "receipt_timeout_s", number, 120.0))
        if node_config.confirmations < 1 or rpc_timeout <= 0 or receipt_timeout <= 0:
            raise ValueError("chain.confirmations must be at least 1, chain.rpc_timeout_s and "
                             "chain.receipt_timeout_s positive")
        settings = settings_from_table(http)
    except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise InvalidConfig(f"{path}: {exc}") from None
    return ServeConfig(
        node=node_config,
        sm2_key=file("keys", keys, "sm2"),
        account_key=file("keys", keys, "account"),
        deployment=file("chain", chain, "deployment"),
        rpc_url=config_value("chain", chain, "rpc_url", str),
        rpc_timeout=rpc_timeout,
        receipt_timeout=receipt_timeout,
        host=config_value("http", http, "host", str, "127.0.0.1"),
        port=config_value("http", http, "port", int, DEFAULT_PORT),
        http=settings,
        server_tls=server_tls,
        allow_plaintext=allow_plaintext,
        client_tls=client_tls,
    )


def load_keys(config: ServeConfig) -> MemberKeys:
    """The platform's SM2 key and chain account key; :class:`InvalidConfig` if unusable."""
    try:
        return load_member_keys(config.sm2_key, config.account_key)
    except InvalidKey as exc:
        raise InvalidConfig(f"key files: {exc}") from None


def build_node(config: ServeConfig, *, chain: LedgerChain | None = None,
               rpc_url: str | None = None) -> PlatformNode:
    """A (not yet started) node for ``config``.

    The chain is ``chain`` if given (any provider; re-bound to the platform's account and
    the deployment file), else a JSON-RPC client of ``rpc_url``, the config's ``rpc_url`` or
    the embedded chain's default address :data:`DEFAULT_CHAIN_URL`, reached with the
    config's ``[tls]``. Raises
    :class:`InvalidConfig` for unusable key files, :class:`~ledger_node.errors.ChainError`
    / :class:`~ledger_node.errors.DeploymentError` if the chain cannot be reached or holds
    no such deployment.
    """
    keys = load_keys(config)
    deployment = Deployment.load(config.deployment)
    if chain is None:
        chain = LedgerChain.from_rpc(rpc_url or config.rpc_url or DEFAULT_CHAIN_URL,
                                     request_timeout=config.rpc_timeout,
                                     receipt_timeout=config.receipt_timeout,
                                     **config.client_tls.requests_options())
    bound = chain.with_account(keys.account).attach(deployment)
    return PlatformNode(config.node, bound, keys.sm2_key)
