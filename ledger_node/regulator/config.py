"""The regulator node's config file, and the node it describes.

``jointledger serve --role regulator`` reads it with :func:`load_regulator_config` (the
HTTP layer, :mod:`api.regulator_server`, then serves the node). The config file is TOML::


    [regulator]
    name = "pboc"                  # the regulator's member name on chain
    store = "pboc-regulator.db"    # SQLite store (WAL); relative paths: to the config file
    follow_interval = 1.0          # seconds between follow-and-ingest rounds
    page_size = 10000              # leaves per fetch (1..10000)

    [platforms]                    # each platform's node, by member name
    unionpay = "http://127.0.0.1:8701"
    wechatpay = ["http://127.0.0.1:8702", "http://127.0.0.1:8712"]  # one node per log shard

    [aml]                          # optional: AmlConfig.to_json keys (PBoC 2016 defaults)
    cash_threshold_fen = 5000000

    [http]
    host = "127.0.0.1"             # any address; beyond loopback TLS (or allow_plaintext)
    port = 8790
    tls_cert = "tls/pboc.pem"      # optional: serve https (tls_key too; client_ca: mutual TLS)
    tls_key = "tls/pboc.key"
    # and the limits of docs/api.md "Limits"

    [tls]                          # what the follower and chain client trust and present
    ca = "tls/ca.pem"              # the consortium CA (default: the system's CAs)
    client_cert = "tls/pboc.pem"   # for platform nodes that require mutual TLS
    client_key = "tls/pboc.key"

    [keys]
    sm2 = "keys/pboc.sm2.pem"              # the regulator's current SM2 key
    account = "keys/pboc.account.key"      # its chain account key
    retired_sm2 = []                       # old SM2 keys: escrows sealed for them stay readable

    [chain]
    deployment = "deployment.json"
    rpc_url = "http://127.0.0.1:8545"      # --rpc-url overrides it

    [store]                                # optional: the store on PostgreSQL instead
    url = "postgresql://pboc@db.example:5432/pboc"   # then regulator.store is not needed

Every mistake raises :class:`~ledger_node.errors.InvalidConfig` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from ledger_node.chain.adapter import Deployment, LedgerChain, Role
from ledger_node.chain.rpc_server import DEFAULT_CHAIN_URL
from ledger_node.client.sdk import RegulatorClient
from ledger_node.config_file import config_table, config_value, read_config
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.keyfiles import load_member_keys
from ledger_node.errors import InvalidAmlConfig, InvalidConfig, InvalidKey
from ledger_node.http_settings import SETTINGS_KEYS, Settings, settings_from_table
from ledger_node.protocol.aml import AmlConfig
from ledger_node.regulator.node import (
    DEFAULT_PAGE,
    HttpLeafSource,
    IngestShare,
    LeafSource,
    RegulatorConfig,
    RegulatorNode,
)
from ledger_node.regulator.pg_store import is_postgres_url, redact_url
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

DEFAULT_PORT: Final = 8790
_SECTIONS: Final = {
    "regulator": {"name", "store", "follow_interval", "page_size"},
    "platforms": None,  # any member name
    "aml": None,  # checked by AmlConfig.from_json
    "http": {"host", "port", *SETTINGS_KEYS, *SERVER_KEYS},
    "tls": CLIENT_KEYS,
    "keys": {"sm2", "account", "retired_sm2"},
    "chain": {"deployment", "rpc_url"},
    "store": {"url"},
}


@dataclass(frozen=True)
class RegulatorServeConfig:
    """Everything needed to run a regulator node with its HTTP API."""

    regulator: RegulatorConfig
    platforms: Mapping[str, str | tuple[str, ...]]
    """Each platform's node URL, or its nodes' URLs, one per log shard, as configured (each
    node's log is read from its ``/v1/health``)."""
    sm2_key: Path
    account_key: Path
    deployment: Path
    retired_sm2: tuple[Path, ...] = ()
    rpc_url: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    http: Settings = field(default_factory=Settings)
    server_tls: ServerTls | None = None
    """The node's https certificate and key (and client CA for mutual TLS), if any."""
    allow_plaintext: bool = False
    """Serve plain HTTP beyond loopback (warned at start); without it that is refused."""
    client_tls: ClientTls = NO_CLIENT_TLS
    """What the follower and the chain client trust and present."""

    @property
    def plaintext_warning(self) -> str | None:
        """The warning to give at start when plain HTTP is served beyond loopback."""
        return check_bind(self.host, self.server_tls, self.allow_plaintext)

    @property
    def url(self) -> str:
        """Where a client on this machine reaches the node (``https`` with TLS)."""
        return f"{url_scheme(self.server_tls)}://{local_host(self.host)}:{self.port}"

    @property
    def store_takes_workers(self) -> bool:
        """Whether the store can take several ingest workers (several writer processes):
        a PostgreSQL store can; a SQLite file has one writer."""
        return self.regulator.store_url is not None

    def check_ingest_workers(self, workers: int) -> None:
        """Raise :class:`InvalidConfig` unless the store can take ``workers`` ingest worker
        processes: several need a PostgreSQL store."""
        if workers > 1 and not self.store_takes_workers:
            raise InvalidConfig(
                f"--workers {workers}: {workers} ingest workers need a PostgreSQL store, but "
                f"the SQLite store {self.regulator.store_path} has one writer. Try: "
                "--workers 1 (and serve more with --ingest off replicas), or "
                '[store] url = "postgresql://..." in the config (docs/storage.md)')

    def with_process_role(self, *, ingest: IngestShare | None, follow_chain: bool
                          ) -> RegulatorServeConfig:
        """This config for one process of a regulator run as several (docs/deploy.md
        "The regulator's processes"): the logs it ingests (``None``: none) and whether it
        follows the chain. Raises :class:`InvalidConfig` for a share of several workers
        on a store that takes one (:meth:`check_ingest_workers`)."""
        if ingest is not None:
            self.check_ingest_workers(ingest.of)
        return replace(self, regulator=replace(self.regulator, ingest=ingest,
                                               follow_chain=follow_chain))


def regulator_config_toml(*, name: str, store: str, platforms: Mapping[str, Sequence[str]],
                          host: str, port: int, tls_lines: str, keys_dir: str,
                          deployment: str, rpc_url: str, follow_interval: float,
                          store_url: str | None = None) -> str:
    """The text of regulator ``name``'s node config, in the format
    :func:`load_regulator_config` reads: its store (with ``store_url`` a PostgreSQL
    database instead of the SQLite file ``store``), the ``platforms`` it follows (each
    platform's node URLs, one per log shard), address, TLS lines
    (:func:`~ledger_node.tls.tls_config_toml`, or ``""``), key files in ``keys_dir`` and
    chain (``[store] url`` when ``store_url`` is given). The one writer of this format
    (``jointledger init``, the local site)."""
    followed = "".join(
        f"{platform} = " + (toml_string(urls[0]) if len(urls) == 1 else
                            "[" + ", ".join(toml_string(url) for url in urls) + "]") + "\n"
        for platform, urls in platforms.items())
    return (f"[regulator]\nname = {toml_string(name)}\nstore = {toml_string(store)}\n"
            f"follow_interval = {follow_interval}\n\n[platforms]\n{followed}\n"
            f"[http]\nhost = {toml_string(host)}\nport = {port}\n{tls_lines}\n"
            f"[keys]\nsm2 = {toml_string(f'{keys_dir}/{name}.sm2.pem')}\n"
            f"account = {toml_string(f'{keys_dir}/{name}.account.key')}\n\n"
            f"[chain]\ndeployment = {toml_string(deployment)}\n"
            f"rpc_url = {toml_string(rpc_url)}\n"
            + ("" if store_url is None else f"\n[store]\nurl = {toml_string(store_url)}\n"))


def load_regulator_config(path: Path) -> RegulatorServeConfig:
    """Read a regulator config file (format in the module docstring)."""
    document = read_config(path, _SECTIONS)
    base = path.resolve().parent
    regulator = config_table(document, "regulator", _SECTIONS)
    platforms = config_table(document, "platforms", _SECTIONS)
    http = config_table(document, "http", _SECTIONS)
    keys = config_table(document, "keys", _SECTIONS)
    chain = config_table(document, "chain", _SECTIONS)
    for section, data in (("regulator", regulator), ("keys", keys), ("chain", chain)):
        if not data:
            raise InvalidConfig(f"[{section}] is missing")
    urls: dict[str, str | tuple[str, ...]] = {}
    for name, value in platforms.items():
        listed = value if isinstance(value, list) else [value]
        if not listed or not all(isinstance(url, str) and url.startswith(("http://", "https://"))
                                 for url in listed):
            raise InvalidConfig(f"platforms.{name} must be an http(s) URL or a non-empty list "
                                f"of them (one per log shard), got {value!r}")
        if len(set(listed)) != len(listed):
            raise InvalidConfig(f"platforms.{name} lists a URL twice: {value!r}")
        urls[name] = value if isinstance(value, str) else tuple(listed)
    try:
        aml = AmlConfig.from_json(config_table(document, "aml", _SECTIONS))
    except InvalidAmlConfig as exc:
        raise InvalidConfig(f"[aml] {exc}") from None
    retired = config_value("keys", keys, "retired_sm2", list, [])
    if not all(isinstance(p, str) for p in retired):
        raise InvalidConfig("keys.retired_sm2 must be a list of file names")
    page = config_value("regulator", regulator, "page_size", int, DEFAULT_PAGE)
    if not 1 <= page <= DEFAULT_PAGE:
        raise InvalidConfig(f"regulator.page_size must be in 1..{DEFAULT_PAGE}, got {page}")
    interval = float(config_value("regulator", regulator, "follow_interval", (int, float), 1.0))
    if interval <= 0:
        raise InvalidConfig("regulator.follow_interval must be positive")
    host = config_value("http", http, "host", str, "127.0.0.1")
    port = config_value("http", http, "port", int, DEFAULT_PORT)
    if not 0 <= port <= 65535:
        raise InvalidConfig(f"http.port {port} is not a TCP port")
    server_tls, allow_plaintext = read_server_tls(http, base)
    check_bind(host, server_tls, allow_plaintext)
    client_tls = read_client_tls(config_table(document, "tls", _SECTIONS), base)
    settings = settings_from_table(http)
    store_url = config_value("store", config_table(document, "store", _SECTIONS), "url", str)
    if store_url is not None and not is_postgres_url(store_url):
        raise InvalidConfig(f"store.url must be a postgresql:// URL, got "
                            f"{redact_url(store_url)!r}")
    store_file = config_value("regulator", regulator, "store", str,
                              required=store_url is None)
    return RegulatorServeConfig(
        regulator=RegulatorConfig(
            name=config_value("regulator", regulator, "name", str, required=True),
            store_path=None if store_file is None else base / store_file,
            page_size=page, follow_interval=interval, aml=aml, store_url=store_url),
        platforms=urls,
        sm2_key=base / config_value("keys", keys, "sm2", str, required=True),
        account_key=base / config_value("keys", keys, "account", str, required=True),
        retired_sm2=tuple(base / p for p in retired),
        deployment=base / config_value("chain", chain, "deployment", str, required=True),
        rpc_url=config_value("chain", chain, "rpc_url", str),
        host=host, port=port, http=settings, server_tls=server_tls,
        allow_plaintext=allow_plaintext, client_tls=client_tls,
    )


def build_regulator(config: RegulatorServeConfig, *, chain: LedgerChain | None = None,
                    rpc_url: str | None = None) -> RegulatorNode:
    """A (not yet started) regulator node for ``config``.

    Checks that the account is an active regulator on chain named as configured and that its
    registered SM2 key is the configured current key (so escrows sealed from now on open).
    The follower reaches each platform node, and the chain, with the config's ``[tls]``.
    """
    try:
        member_keys = load_member_keys(config.sm2_key, config.account_key)
        retired = [gmcrypto.private_key_from_pem(p.read_bytes()) for p in config.retired_sm2]
    except (InvalidKey, OSError) as exc:
        raise InvalidConfig(f"key files: {exc}") from None
    deployment = Deployment.load(config.deployment)
    if chain is None:
        chain = LedgerChain.from_rpc(rpc_url or config.rpc_url or DEFAULT_CHAIN_URL,
                                     **config.client_tls.requests_options())
    bound = chain.with_account(member_keys.account).attach(deployment)
    member = bound.member(member_keys.account.address)
    name = config.regulator.name
    if member.role is not Role.REGULATOR or not member.active or member.name != name:
        raise InvalidConfig(f"account {member_keys.account.address} is not the active "
                            f"regulator {name!r} on chain (chain says "
                            f"{member.role.name.lower()} {member.name!r})")
    if member.public_key != member_keys.sm2_key.public_key().raw:
        raise InvalidConfig(f"keys.sm2 is not the SM2 key {name} has registered on chain; "
                            "after a rotation, move the old key to keys.retired_sm2")
    sources: dict[str, list[LeafSource]] = {
        platform: [HttpLeafSource(RegulatorClient(url, member_keys.account.address,
                                                  member_keys.sm2_key, retries=2,
                                                  tls=config.client_tls))
                   for url in ((urls,) if isinstance(urls, str) else urls)]
        for platform, urls in config.platforms.items()
    }
    return RegulatorNode(config.regulator, bound, [member_keys.sm2_key, *retired], sources)
