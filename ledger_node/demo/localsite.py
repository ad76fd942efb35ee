"""A consortium of real processes on 127.0.0.1, for benchmarks and demos.

It does what an operator would do with the CLI: ``keys new`` per member, a consortium file,
``jointledger chain --consortium`` (the embedded chain served as JSON-RPC, the contract
deployed), and ``jointledger serve`` per platform node, each its own process with its own
keys and store. Everything lives under one directory; :meth:`LocalSite.stop` ends it all.

With ``tls`` (the default) the site is a consortium's in miniature: a CA made for the run
issues a certificate to each member's node, to the chain server and to the site itself (it
plays every member's tools) in ``tls/`` (:mod:`ledger_node.demo.certs`); every server
serves https and requires a client certificate from that CA (mutual TLS), every node config
says so in ``[http]`` and trusts the CA in ``[tls]``, and :attr:`LocalSite.client_tls` is
what a client of the site needs. Without it everything is plain HTTP on 127.0.0.1.
"""

from __future__ import annotations

import functools
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

import httpx

from ledger_node.chain.adapter import Deployment, LedgerChain
from ledger_node.chain.consortium import (
    DEV_FUNDING_WEI,
    consortium_toml,
    deploy_consortium,
    load_consortium,
)
from ledger_node.crypto.keyfiles import MemberKeys, key_paths, load_member_keys, new_member_keys
from ledger_node.demo.certs import issue, new_ca
from ledger_node.platform.config import platform_config_toml
from ledger_node.regulator.config import load_regulator_config, regulator_config_toml
from ledger_node.tls import NO_CLIENT_TLS, ClientTls, tls_config_toml

DEFAULT_MEMBERS: Sequence[tuple[str, str]] = (
    ("unionpay", "platform"), ("wechatpay", "platform"), ("pboc", "regulator"))
JOINTLEDGER: Sequence[str] = (sys.executable, "-m", "ledger_node.cli")
"""How to run the ``jointledger`` command of this Python (no PATH needed)."""
TLS_DIR = "tls"
"""The site's certificates, under its root: ``ca.pem`` and ``NAME.pem``/``NAME.key``."""


class SiteError(RuntimeError):
    """A site process failed to start; the message carries its output."""


_EPHEMERAL_RANGE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT: Final = 10_000


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive TCP ports free on 127.0.0.1 right now.

    Chosen at random below the kernel's ephemeral range: a port from ``bind(0)`` is one the
    kernel also hands to outgoing connections, so any client may take it between this probe
    and the server's own bind (parallel test workers made that happen: "address already in
    use"). Below the range only another caller's random pick can collide."""
    try:
        ephemeral_low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32_768
    high = ephemeral_low if ephemeral_low > _LOWEST_PORT + 1_000 else 65_536  # exclusive
    for _ in range(200):
        base = random.randint(_LOWEST_PORT, high - count)
        probes: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise OSError(f"no {count} consecutive free TCP ports on 127.0.0.1 found")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (see :func:`free_ports`)."""
    return free_ports(1)


class LocalSite:
    """Keys, chain process and node processes of one consortium under ``root``."""

    def __init__(self, root: Path, members: Sequence[tuple[str, str]] = DEFAULT_MEMBERS,
                 threshold: int = 2, *, tls: bool = True,
                 regulator_store_url: str | None = None) -> None:
        """Create key files for ``members`` (name, role) and the consortium file; with
        ``tls`` a CA for the run and certificates for every member's node, the chain server
        and the site's own clients (see the module docstring). With
        ``regulator_store_url`` the regulator's store is that PostgreSQL database instead of
        a SQLite file in ``root``."""
        self.root = root
        self.regulator_store_url = regulator_store_url
        self.tls = tls
        self.members = tuple(members)
        root.mkdir(parents=True, exist_ok=True)
        for name, _ in self.members:
            if not key_paths(root / "keys", name)[0].exists():
                new_member_keys(root / "keys", name)
        (root / "consortium.toml").write_text(consortium_toml(self.members, threshold))
        self.client_tls: ClientTls = NO_CLIENT_TLS
        """What a client of the site's servers trusts and presents (the site's certificate)."""
        if tls:
            ca = new_ca(root / TLS_DIR, "JointLedger local site CA")
            for name in [*(name for name, _ in self.members), "chain"]:
                issue(ca, root / TLS_DIR, name)
            site = issue(ca, root / TLS_DIR, "site")
            self.client_tls = ClientTls(ca.cert, site.cert, site.key)
        self._client_context = self.client_tls.ssl_context()
        self.scheme = "https" if tls else "http"
        self.rpc_url = ""
        self.node_urls: dict[str, str] = {}
        self.shard_urls: dict[str, dict[int, str]] = {}
        """Each platform's node URL per log shard (shard 0's is also in ``node_urls``)."""
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> LocalSite:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    @property
    def deployment(self) -> Deployment:
        """The consortium's deployment (after :meth:`start_chain`)."""
        return Deployment.load(self.root / "deployment.json")

    def keys(self, name: str) -> MemberKeys:
        """Member ``name``'s private keys (the site holds them all: it plays every member)."""
        private, _, account = key_paths(self.root / "keys", name)
        return load_member_keys(private, account)

    def start_chain(self, *, data: str | None = None) -> str:
        """Start ``jointledger chain`` with the consortium; return its JSON-RPC URL.

        With ``data`` (a file name under the site's directory) the chain is stored there, so
        ``jointledger chain --data`` can serve it again after the site stops.
        """
        port = free_port()
        deployment = self.root / "deployment.json"
        deployment.unlink(missing_ok=True)
        stored = ["--data", data] if data is not None else []
        served = ["--tls-cert", f"{TLS_DIR}/chain.pem", "--tls-key", f"{TLS_DIR}/chain.key",
                  "--client-ca", f"{TLS_DIR}/ca.pem"] if self.tls else []
        self._start("chain", ["chain", "--port", str(port), "--consortium", "consortium.toml",
                              "--deployment", "deployment.json", *stored, *served],
                    ready=deployment.exists)
        self.rpc_url = f"{self.scheme}://127.0.0.1:{port}"
        return self.rpc_url

    def chain(self) -> LedgerChain:
        """A client of the site's chain (with :attr:`client_tls`), not bound to a contract."""
        return LedgerChain.from_rpc(self.rpc_url, **self.client_tls.requests_options())

    def use_chain(self, rpc_url: str) -> Deployment:
        """Deploy the consortium on the running chain at ``rpc_url`` (a development chain
        whose faucet holds funds, e.g. anvil) instead of :meth:`start_chain`; return the
        deployment. Members are funded from the faucet, as ``jointledger chain`` does.

        Raises :class:`~ledger_node.errors.ChainError` if the chain cannot be reached or
        has no funded faucet, and :class:`~ledger_node.errors.InvalidConfig` for a bad
        consortium file.
        """
        chain = LedgerChain.from_rpc(rpc_url, **self.client_tls.requests_options())
        deployment = deploy_consortium(chain.with_account(chain.dev_faucet()),
                                       load_consortium(self.root / "consortium.toml"),
                                       fund_wei=DEV_FUNDING_WEI)
        deployment.save(self.root / "deployment.json")
        self.rpc_url = rpc_url
        return deployment

    def start_node(self, name: str, *, seal_interval: float = 0.2,
                   seal_size: int = 10_000, shard: int = 0) -> str:
        """Start ``jointledger serve`` for platform ``name`` (its log shard ``shard``);
        return its API URL.

        Shard 0 is the process ``name`` (config ``NAME.toml``, store ``NAME.db``); another
        shard is ``NAME-shardN`` with its own config and store. A regulator started later
        follows every shard of the platforms it follows.
        """
        args, url = self._platform_config(name, seal_interval, seal_size, shard)
        self._start(_shard_key(name, shard), args, ready=lambda: self.healthy(url))
        return url

    def start_regulator(self, name: str = "pboc", *, follow_interval: float = 0.2,
                        platforms: Sequence[str] | None = None) -> str:
        """Start ``jointledger serve --role regulator`` following the started platform nodes
        (or ``platforms``); return its API URL."""
        args, url = self._regulator_config(name, follow_interval, platforms)
        self._start(name, args, ready=lambda: self.healthy(url))
        return url

    def start_regulator_replica(self, name: str = "pboc", replica: int = 1) -> str:
        """Start an API replica of regulator ``name`` (``jointledger serve --role regulator
        --ingest off --port P`` on the config :meth:`start_regulator` wrote, sharing its
        store); return its URL. Its process key is ``NAME-replicaN``."""
        port = free_port()
        url = f"{self.scheme}://127.0.0.1:{port}"
        self._start(f"{name}-replica{replica}",
                    ["serve", "--role", "regulator", "--name", name, "--config",
                     f"{name}-regulator.toml", "--ingest", "off", "--port", str(port)],
                    ready=lambda: self.healthy(url))
        return url

    def start_nodes(self, platforms: Sequence[str], regulator: str | None = None, *,
                    seal_interval: float = 0.2, seal_size: int = 10_000,
                    follow_interval: float = 0.2) -> dict[str, str]:
        """Start the nodes of ``platforms`` and the ``regulator`` node (following them) all
        at once, which is faster than one by one; return each name's API URL."""
        pending = [(name, *self._platform_config(name, seal_interval, seal_size))
                   for name in platforms]
        if regulator is not None:
            pending.append((regulator, *self._regulator_config(regulator, follow_interval,
                                                               platforms)))
        for name, args, _ in pending:
            self._launch(name, args)
        for name, _, url in pending:
            self._wait(name, functools.partial(self.healthy, url))
        return {name: url for name, _, url in pending}

    def _platform_config(self, name: str, seal_interval: float, seal_size: int,
                         shard: int = 0) -> tuple[list[str], str]:
        """Write platform ``name``'s node config (of log shard ``shard``); its serve
        arguments and URL."""
        port = free_port()
        key = _shard_key(name, shard)
        config = self.root / f"{key}.toml"
        config.write_text(platform_config_toml(
            platform=name, shard=shard, store=f"{key}.db", host="127.0.0.1", port=port,
            tls_lines=self._tls_toml(name), keys_dir="keys", deployment="deployment.json",
            rpc_url=self.rpc_url, seal_interval=seal_interval, seal_size=seal_size))
        url = f"{self.scheme}://127.0.0.1:{port}"
        if shard == 0:
            self.node_urls[name] = url
        self.shard_urls.setdefault(name, {})[shard] = url
        return ["serve", "--role", "platform", "--name", name, "--config", config.name], url

    def write_regulator_config(self, name: str = "pboc", *, follow_interval: float = 0.2,
                               platforms: Sequence[str] | None = None,
                               store: str | None = None, store_url: str | None = None,
                               file: str | None = None) -> Path:
        """Write a config of regulator ``name`` following the started platform nodes (or
        ``platforms``), every shard of each, with its store in ``store`` (default
        ``NAME-regulator.db``) or the PostgreSQL database ``store_url``; return the file
        (default ``NAME-regulator.toml``). Its processes are started by the caller
        (:meth:`start_regulator_process`; benches: ingest workers on a fresh store)."""
        config = self.root / (file or f"{name}-regulator.toml")
        self._regulator_config(name, follow_interval, platforms, store=store,
                               store_url=store_url, config=config)
        return config

    def start_regulator_process(self, key: str, config: Path, *options: str) -> str:
        """Start ``jointledger serve --role regulator`` on ``config`` with ``options``
        (``--ingest off``, ``--workers N``) on a port of its own, as process ``key``;
        return its URL once it answers."""
        port = free_port()
        url = f"{self.scheme}://127.0.0.1:{port}"
        name = load_regulator_config(config).regulator.name
        self._start(key, ["serve", "--role", "regulator", "--name", name, "--config",
                          str(config), "--port", str(port), *options],
                    ready=lambda: self.healthy(url))
        return url

    def process_ids(self) -> dict[str, int]:
        """The process id of each running process, by key (``"chain"``, node names)."""
        return {key: p.pid for key, p in self._processes.items() if p.poll() is None}

    def _regulator_config(self, name: str, follow_interval: float,
                          platforms: Sequence[str] | None, *, store: str | None = None,
                          store_url: str | None = None,
                          config: Path | None = None) -> tuple[list[str], str]:
        """Write regulator ``name``'s config; its serve arguments and URL."""
        port = free_port()
        config = config or self.root / f"{name}-regulator.toml"
        followed = {p: u for p, u in self.node_urls.items() if p != name} if (
            platforms is None) else {p: self.node_urls[p] for p in platforms}
        config.write_text(regulator_config_toml(
            name=name, store=store or f"{name}-regulator.db",
            platforms={p: self._shard_url_list(p, url) for p, url in followed.items()},
            host="127.0.0.1", port=port, tls_lines=self._tls_toml(name), keys_dir="keys",
            deployment="deployment.json", rpc_url=self.rpc_url,
            follow_interval=follow_interval,
            store_url=store_url if store_url is not None else self.regulator_store_url))
        url = f"{self.scheme}://127.0.0.1:{port}"
        self.node_urls[name] = url
        return ["serve", "--role", "regulator", "--name", name, "--config", config.name], url

    def _tls_toml(self, name: str) -> str:
        """The TLS lines of member ``name``'s config (:func:`tls_config_toml`: its
        certificate served with mutual TLS, the CA trusted as a client); nothing without
        TLS."""
        if not self.tls:
            return ""
        return tls_config_toml(f"{TLS_DIR}/{name}.pem", f"{TLS_DIR}/{name}.key",
                               f"{TLS_DIR}/ca.pem")

    def healthy(self, url: str) -> bool:
        """Whether the node at ``url`` answers its health check (over the site's TLS)."""
        try:
            return httpx.get(f"{url}/v1/health", timeout=2,
                             verify=self._client_context).status_code == 200
        except httpx.HTTPError:
            return False

    def _shard_url_list(self, name: str, url: str) -> list[str]:
        """``name``'s node URL, or its shards' URLs in shard order if it has several."""
        shards = self.shard_urls.get(name, {})
        if len(shards) <= 1:
            return [url]
        return [u for _, u in sorted(shards.items())]

    def process_alive(self, key: str) -> bool:
        """Whether process ``key`` (``"chain"`` or a node name) was started and still runs."""
        process = self._processes.get(key)
        return process is not None and process.poll() is None

    def stop_process(self, key: str) -> None:
        """Stop one process (``"chain"`` or a node name) with SIGTERM, then SIGKILL."""
        self._stop_together([key])

    def kill_process(self, key: str) -> None:
        """SIGKILL one process (``"chain"`` or a node name): no shutdown, as in a crash."""
        process = self._processes.pop(key, None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """Stop every node, then the chain.

        The nodes get SIGTERM together and are then waited for, so their shutdowns overlap
        instead of adding up.
        """
        self._stop_together([k for k in self._processes if k != "chain"])
        self._stop_together(["chain"])

    def _stop_together(self, keys: list[str]) -> None:
        """SIGTERM to each of ``keys`` that runs, then wait for each; SIGKILL after 30 s."""
        running = []
        for key in keys:
            process = self._processes.pop(key, None)
            if process is not None and process.poll() is None:
                process.terminate()
                running.append(process)
        deadline = time.monotonic() + 30
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _start(self, key: str, args: list[str], *, ready: Callable[[], bool],
               timeout: float = 90.0) -> None:
        self._launch(key, args)
        self._wait(key, ready, timeout)

    def _launch(self, key: str, args: list[str]) -> None:
        """Start ``jointledger ARGS`` as process ``key``, its output in ``KEY.log``."""
        with (self.root / f"{key}.log").open("wb") as log:
            self._processes[key] = subprocess.Popen(
                [*JOINTLEDGER, *args], cwd=self.root, stdout=log, stderr=subprocess.STDOUT)

    def _wait(self, key: str, ready: Callable[[], bool], timeout: float = 90.0) -> None:
        """Wait until ``ready()``; stop the process and raise :class:`SiteError` if it
        exits or ``timeout`` seconds pass first."""
        process = self._processes[key]
        deadline = time.monotonic() + timeout
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop_process(key)
                output = (self.root / f"{key}.log").read_text(errors="replace")[-2000:]
                raise SiteError(f"{key} did not start: {output}")
            time.sleep(0.1)


def _shard_key(name: str, shard: int) -> str:
    """The process key (and config/store file stem) of platform ``name``'s shard."""
    if shard < 0:
        raise ValueError(f"shard must be >= 0, got {shard}")
    return name if shard == 0 else f"{name}-shard{shard}"
