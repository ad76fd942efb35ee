"""``jointledger init DIR``: lay out a whole consortium in one directory.

It writes what an operator would otherwise assemble by hand (docs/deploy.md): every
member's keys (``keys/``, as ``jointledger keys new``), the consortium file, a CA made for
DIR and a certificate for every server and auditor (``tls/``; an auditor's is its client
certificate for the mutual-TLS chain and nodes), one config file per node (platform nodes,
one per log shard, and the regulator's), the ``run`` file (a Procfile: what ``jointledger
up`` starts, in order), systemd units (``systemd/``) and a README saying what to start in
which order. Every server serves https with mutual TLS; every node trusts the CA.

The files are written by their formats' owners (``consortium_toml``,
``platform_config_toml``, ``regulator_config_toml``, ``tls_config_toml``), the same code the
demo's local site uses, so ``init`` cannot drift from what the loaders read.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ledger_node.chain.consortium import MEMBER_NAME, consortium_toml
from ledger_node.cli.sitedir import COMMAND_NAME, RUN_FILE, SiteProcess
from ledger_node.crypto.keyfiles import key_paths, new_member_keys
from ledger_node.demo.certs import LOCAL_HOSTS, issue, new_ca
from ledger_node.demo.localsite import JOINTLEDGER
from ledger_node.platform.config import platform_config_toml
from ledger_node.regulator.config import regulator_config_toml
from ledger_node.tls import local_host, tls_config_toml

CHAIN: Final = "chain"
"""The chain's process name (and certificate name); no member may take it."""
MAX_SHARDS: Final = 64
CERT_DAYS: Final = 365
SEAL_INTERVAL: Final = 1.0
SEAL_SIZE: Final = 10_000
FOLLOW_INTERVAL: Final = 1.0


class InitRefused(ValueError):
    """The options or the directory do not make a consortium; the message says why."""


@dataclass(frozen=True)
class ConsortiumPlan:
    """What ``init`` lays out: the members, the nodes' addresses, the chain."""

    platforms: tuple[str, ...]
    regulator: str
    auditors: tuple[str, ...] = ()
    shards: Mapping[str, int] = field(default_factory=dict)
    """Log shards per platform (1 when not named)."""
    threshold: int = 2
    rpc_url: str | None = None
    """An external chain's JSON-RPC URL; ``None``: ``jointledger chain`` is laid out."""
    hosts: Mapping[str, str] = field(default_factory=dict)
    """Host per member name (or ``chain``); the rest use ``default_host``."""
    default_host: str = "127.0.0.1"
    chain_port: int = 8545
    first_node_port: int = 8701

    @property
    def members(self) -> list[tuple[str, str]]:
        """(name, role) of every member, platforms first."""
        return ([(name, "platform") for name in self.platforms] + [(self.regulator, "regulator")]
                + [(name, "auditor") for name in self.auditors])

    def host(self, name: str) -> str:
        """The address member ``name``'s nodes (or the chain) bind and are reached at."""
        return self.hosts.get(name, self.default_host)

    def chain_url(self) -> str:
        """The JSON-RPC URL every node uses."""
        if self.rpc_url is not None:
            return self.rpc_url
        return f"https://{local_host(self.host(CHAIN))}:{self.chain_port}"

    def node_ports(self) -> dict[tuple[str, int], int]:
        """The port of each (platform, shard) node and of (regulator, 0), consecutive."""
        nodes = [(name, shard) for name in self.platforms
                 for shard in range(self.shards.get(name, 1))] + [(self.regulator, 0)]
        return {node: self.first_node_port + index for index, node in enumerate(nodes)}


def _pairs(values: Sequence[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, equals, setting = value.partition("=")
        if not equals or not name or not setting:
            raise InitRefused(f"{option} {value!r}: expected NAME=VALUE")
        pairs[name] = setting
    return pairs


def plan_from_options(*, platforms: Sequence[str], regulator: str, auditors: Sequence[str],
                      shards: Sequence[str], threshold: int | None, rpc_url: str | None,
                      hosts: Sequence[str], chain_port: int,
                      first_node_port: int) -> ConsortiumPlan:
    """Check the options and make the plan. ``shards`` are ``NAME=N``; ``hosts`` are
    ``HOST`` (every process) or ``NAME=HOST``. Raises :class:`InitRefused` saying which
    option is wrong and why."""
    if not platforms:
        raise InitRefused("give at least one --platform NAME")
    names = [*platforms, regulator, *auditors]
    for name in names:
        if not MEMBER_NAME.fullmatch(name):
            raise InitRefused(f"member name {name!r}: use lower case letters, digits, '_' "
                              "and '-', a letter first, 32 characters at most")
        if name == CHAIN:
            raise InitRefused(f"member name {CHAIN!r} is the chain's process name")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InitRefused(f"member named twice: {', '.join(duplicates)}")
    shard_counts: dict[str, int] = {}
    for name, count in _pairs(shards, "--shards").items():
        if name not in platforms:
            raise InitRefused(f"--shards {name}=…: {name} is not a --platform")
        if not count.isdigit() or not 1 <= int(count) <= MAX_SHARDS:
            raise InitRefused(f"--shards {name}={count}: the count must be in 1..{MAX_SHARDS}")
        shard_counts[name] = int(count)
    chosen = len(names) // 2 + 1 if threshold is None else threshold
    if not 1 <= chosen <= len(names):
        raise InitRefused(f"--threshold {chosen}: must be in 1..{len(names)} (the members)")
    if rpc_url is not None and not rpc_url.startswith(("http://", "https://")):
        raise InitRefused(f"--rpc-url {rpc_url!r}: expected an http(s) URL")
    default_host = "127.0.0.1"
    per_name: dict[str, str] = {}
    for value in hosts:
        if "=" in value:
            per_name |= _pairs([value], "--host")
        elif value:
            default_host = value
        else:
            raise InitRefused("--host: give HOST or NAME=HOST")
    unknown = sorted(set(per_name) - {*names, CHAIN})
    if unknown:
        raise InitRefused(f"--host {unknown[0]}=…: {unknown[0]} is not a member or 'chain'")
    node_count = sum(shard_counts.get(name, 1) for name in platforms) + 1
    for option, port, span in (("--chain-port", chain_port, 1),
                               ("--first-node-port", first_node_port, node_count)):
        if not 1 <= port or port + span - 1 > 65535:
            raise InitRefused(f"{option} {port}: the ports {port}..{port + span - 1} must be "
                              "TCP ports")
    if rpc_url is None and first_node_port <= chain_port < first_node_port + node_count:
        raise InitRefused(f"--chain-port {chain_port} is one of the node ports "
                          f"{first_node_port}..{first_node_port + node_count - 1}")
    return ConsortiumPlan(tuple(platforms), regulator, tuple(auditors), shard_counts, chosen,
                          rpc_url, per_name, default_host, chain_port, first_node_port)


def _node_key(name: str, shard: int) -> str:
    """A node's process name and config/store stem (the local site's naming)."""
    return name if shard == 0 else f"{name}-shard{shard}"


def lay_out(directory: Path, plan: ConsortiumPlan, *, force: bool = False) -> list[SiteProcess]:
    """Write the consortium of ``plan`` into ``directory`` (made if missing); return its
    processes in start order. Refuses (:class:`InitRefused`) a non-empty directory unless
    ``force``; with ``force`` existing member keys are kept and everything else rewritten."""
    if directory.exists() and not directory.is_dir():
        raise InitRefused(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise InitRefused(f"{directory} is not empty; give --force to lay the consortium "
                          "out over it (member keys already there are kept)")
    directory.mkdir(parents=True, exist_ok=True)
    for name, _ in plan.members:
        if not key_paths(directory / "keys", name)[0].exists():
            new_member_keys(directory / "keys", name)
    (directory / "consortium.toml").write_text(consortium_toml(plan.members, plan.threshold))

    ca = new_ca(directory / "tls", f"JointLedger consortium CA ({directory.resolve().name})",
                days=CERT_DAYS)
    servers = [*plan.platforms, plan.regulator] + ([CHAIN] if plan.rpc_url is None else [])
    for name in servers:
        host = plan.host(name)
        issue(ca, directory / "tls", name, [host, *(h for h in LOCAL_HOSTS if h != host)],
              days=CERT_DAYS)
    for name in plan.auditors:
        # An auditor runs no server, but reads the chain (and nodes' public routes), which
        # require a client certificate from DIR's CA: its own, never a platform's.
        issue(ca, directory / "tls", name, days=CERT_DAYS)

    def tls_lines(name: str) -> str:
        return tls_config_toml(f"tls/{name}.pem", f"tls/{name}.key", "tls/ca.pem")

    processes: list[SiteProcess] = []
    if plan.rpc_url is None:
        processes.append(SiteProcess(CHAIN, (
            "chain", "--host", plan.host(CHAIN), "--port", str(plan.chain_port),
            "--consortium", "consortium.toml", "--deployment", "deployment.json",
            "--data", "chain.db", "--tls-cert", "tls/chain.pem", "--tls-key", "tls/chain.key",
            "--client-ca", "tls/ca.pem")))
    ports = plan.node_ports()
    followed: dict[str, list[str]] = {}
    for (name, shard), port in ports.items():
        if name == plan.regulator:
            continue
        key = _node_key(name, shard)
        (directory / f"{key}.toml").write_text(platform_config_toml(
            platform=name, shard=shard, store=f"{key}.db", host=plan.host(name), port=port,
            tls_lines=tls_lines(name), keys_dir="keys", deployment="deployment.json",
            rpc_url=plan.chain_url(), seal_interval=SEAL_INTERVAL, seal_size=SEAL_SIZE))
        followed.setdefault(name, []).append(f"https://{local_host(plan.host(name))}:{port}")
        processes.append(SiteProcess(key, ("serve", "--role", "platform", "--name", name,
                                           "--config", f"{key}.toml")))
    regulator_config = f"{plan.regulator}-regulator.toml"
    (directory / regulator_config).write_text(regulator_config_toml(
        name=plan.regulator, store=f"{plan.regulator}-regulator.db", platforms=followed,
        host=plan.host(plan.regulator), port=ports[(plan.regulator, 0)],
        tls_lines=tls_lines(plan.regulator), keys_dir="keys", deployment="deployment.json",
        rpc_url=plan.chain_url(), follow_interval=FOLLOW_INTERVAL))
    processes.append(SiteProcess(plan.regulator, ("serve", "--role", "regulator", "--name",
                                                  plan.regulator, "--config", regulator_config)))

    (directory / RUN_FILE).write_text(_run_file(processes))
    _write_units(directory, processes, external_chain=plan.rpc_url is not None)
    (directory / "README.md").write_text(_readme(directory, plan, processes))
    return processes


def _run_file(processes: Sequence[SiteProcess]) -> str:
    """The Procfile: one ``NAME: jointledger ARGS`` line per process, in start order."""
    return ("# The consortium's processes in start order (Procfile format).\n"
            "# `jointledger up .` starts them all; `honcho -f run start` would too.\n"
            + "".join(f"{p.name}: {p.command_line}\n" for p in processes))


def _write_units(directory: Path, processes: Sequence[SiteProcess], *,
                 external_chain: bool) -> None:
    """One systemd unit per process: the chain first, platform nodes after it, the
    regulator after the platform nodes; each restarted on failure."""
    units = directory / "systemd"
    units.mkdir(exist_ok=True)
    root = directory.resolve()
    platforms = [f"jointledger-{p.name}.service" for p in processes if p.role == "platform"]
    for process in processes:
        after = ["network-online.target"]
        requires: list[str] = []
        if process.role != "chain" and not external_chain:
            after.append("jointledger-chain.service")
            requires.append("jointledger-chain.service")
        if process.role == "regulator":
            after += platforms
        command = shlex.join([*JOINTLEDGER, *process.args])
        (units / f"jointledger-{process.name}.service").write_text(
            f"[Unit]\nDescription=JointLedger {process.name} ({process.role})\n"
            f"Wants=network-online.target\nAfter={' '.join(after)}\n"
            + (f"Requires={' '.join(requires)}\n" if requires else "")
            + f"\n[Service]\nWorkingDirectory={root}\nExecStart={command}\n"
            "Environment=PYTHONUNBUFFERED=1\nKillSignal=SIGTERM\nTimeoutStopSec=60\n"
            "Restart=on-failure\nRestartSec=2\n\n[Install]\nWantedBy=multi-user.target\n")


def _readme(directory: Path, plan: ConsortiumPlan, processes: Sequence[SiteProcess]) -> str:
    """What is in the directory and what to start, in which order."""
    steps = []
    if plan.rpc_url is None:
        steps.append("1. The chain: `jointledger chain` serves the embedded chain over https "
                     "and, on its first start, deploys JointLedger for `consortium.toml` and "
                     "writes `deployment.json` (the chain is kept in `chain.db`).")
    else:
        steps.append(f"1. The chain is external ({plan.rpc_url}): deploy JointLedger on it "
                     "first and put the deployment file here as `deployment.json` "
                     "(`scripts/deploy.py --consortium consortium.toml --out deployment.json`, "
                     "docs/deploy.md section 7). Nodes refuse to start without it.")
    steps.append("2. The platform nodes (any order, once the chain answers): "
                 + ", ".join(f"`{p.name}`" for p in processes if p.role == "platform") + ".")
    steps.append(f"3. The regulator's node `{plan.regulator}`, which follows the platform "
                 "nodes.")
    commands = "".join(f"{p.name}: {p.command_line}\n" for p in processes)
    members = "".join(f"| {name} | {role} |\n" for name, role in plan.members)
    return f"""# JointLedger consortium

Laid out by `jointledger init`. Members ({plan.threshold}-of-{len(plan.members)} approvals
for governance):

| member | role |
|---|---|
{members}
## Start it

All at once, in the foreground (logs prefixed by process, Ctrl-C stops the nodes, then the
chain):

    jointledger up {directory}

Then `jointledger status {directory}` shows each node's health, log size and anchoring lag.

Started by hand or by systemd, the order is:

{chr(10).join(steps)}

The commands, run from this directory (the `run` file lists them in this order):

```
{commands}```

With systemd: copy `systemd/*.service` to `/etc/systemd/system/`, then
`systemctl daemon-reload` and `systemctl enable --now jointledger-<name>` in the order
above (each unit names the one it comes after).

## What is here

- `consortium.toml`: the members, their roles and the threshold (docs/config.md).
- `keys/`: every member's SM2 key pair and chain account key (private files mode 0600).
- `tls/`: the consortium CA (`ca.pem`; `ca.key` signs certificates: keep it offline) and a
  certificate per server and per auditor. Every server serves https and requires a client
  certificate from this CA; every node trusts it (`[tls]` in its config).
{_auditors_section(plan)}- `*.toml` besides the consortium file: one config per node
  (docs/config.md); stores (`*.db`) are written next to them.
- `run`: the processes in Procfile format; `systemd/`: one unit per process.

In a real consortium each member's host gets only that member's keys, certificate and
config: this directory holds them all so that one machine can run the whole consortium.
"""


def _auditors_section(plan: ConsortiumPlan) -> str:
    """The README's lines on each auditor's client certificate and how it checks a case
    file against the chain with it, from DIR (empty without auditors)."""
    if not plan.auditors:
        return ""
    name = plan.auditors[0]
    return (f"- `tls/AUDITOR.pem`, `tls/AUDITOR.key` for each auditor "
            f"({', '.join(plan.auditors)}): its client certificate from the consortium CA, "
            "to read the chain and the nodes' public routes over mutual TLS. An auditor "
            "checks a case file, run from this directory with nothing else of the "
            f"consortium's:\n  `jointledger verify case.json --rpc-url {plan.chain_url()} "
            f"--deployment deployment.json --ca tls/ca.pem --client-cert tls/{name}.pem "
            f"--client-key tls/{name}.key`.\n")


def run_init(directory: Path, plan: ConsortiumPlan, *, force: bool) -> int:
    """Lay the consortium out and say what was written and what to run next; exit 0, or 2
    (on stderr) when refused."""
    try:
        processes = lay_out(directory, plan, force=force)
    except InitRefused as exc:
        print(f"jointledger init: {exc}", file=sys.stderr)
        return 2
    print(f"consortium laid out in {directory}: {len(plan.members)} members, "
          f"{plan.threshold}-of-{len(plan.members)}")
    width = max(len(p.name) for p in processes)
    for process in processes:
        print(f"  {process.name:<{width}}  {process.command_line}")
    print(f"start it: {COMMAND_NAME} up {directory}   (then: {COMMAND_NAME} status "
          f"{directory}; read {os.path.join(directory, 'README.md')})")
    return 0
