"""A consortium directory as ``jointledger init`` lays it out, read back by ``up`` and
``status``.

The directory's ``run`` file is the one list of its processes, in start order, one per line
as ``NAME: jointledger ARGS`` (the Procfile format, so honcho or foreman can run it too);
``#`` lines are comments. ``up`` starts exactly these commands; ``status`` asks the node
processes among them for their health, with the TLS settings of their own configs.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from ledger_node.errors import InvalidConfig
from ledger_node.tls import ClientTls

RUN_FILE: Final = "run"
"""The Procfile of a consortium directory."""
COMMAND_NAME: Final = "jointledger"

ProcessRole = Literal["chain", "platform", "regulator"]


@dataclass(frozen=True)
class SiteProcess:
    """One line of the run file: a process name and its ``jointledger`` arguments."""

    name: str
    args: tuple[str, ...]

    @property
    def role(self) -> ProcessRole:
        """``chain`` for ``jointledger chain``, else the ``serve --role``."""
        if self.args[0] == "chain":
            return "chain"
        return "regulator" if self.option("--role") == "regulator" else "platform"

    def option(self, name: str) -> str | None:
        """The value of option ``name`` in the arguments, if given."""
        for index, arg in enumerate(self.args[:-1]):
            if arg == name:
                return self.args[index + 1]
        return None

    @property
    def command_line(self) -> str:
        """The line as a shell would run it."""
        return shlex.join([COMMAND_NAME, *self.args])


@dataclass(frozen=True)
class NodeEndpoint:
    """Where a node process of the directory answers, and how its own clients connect."""

    url: str
    client_tls: ClientTls


def read_run_file(directory: Path) -> list[SiteProcess]:
    """The processes of the consortium in ``directory``, in start order. Raises
    :class:`InvalidConfig` for a missing run file or a line that is not
    ``NAME: jointledger chain|serve ...``."""
    path = directory / RUN_FILE
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidConfig(f"{path}: cannot read it ({exc.strerror}); expected {directory} to "
                            "be a directory made by jointledger init (its run file lists the "
                            f"processes). Try: jointledger init {directory} --platform NAME, "
                            "or the directory init wrote") from None
    processes: list[SiteProcess] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, colon, command = line.partition(":")
        words = shlex.split(command)
        if (not colon or not name.strip() or len(words) < 2 or words[0] != COMMAND_NAME
                or words[1] not in ("chain", "serve")):
            raise InvalidConfig(f"{path} line {number}: expected 'NAME: {COMMAND_NAME} "
                                f"chain|serve ...', got {line!r}")
        processes.append(SiteProcess(name.strip(), tuple(words[1:])))
    if not processes:
        raise InvalidConfig(f"{path}: no processes listed")
    return processes


def node_endpoint(directory: Path, process: SiteProcess) -> NodeEndpoint:
    """The URL of node ``process`` and its config's client TLS (read from its
    ``--config``). Raises :class:`InvalidConfig` for the chain or a bad config."""
    config = process.option("--config")
    if process.role == "chain" or config is None:
        raise InvalidConfig(f"{process.name}: not a node with a --config")
    if process.role == "regulator":
        from ledger_node.regulator.config import load_regulator_config

        regulator = load_regulator_config(directory / config)
        return NodeEndpoint(regulator.url, regulator.client_tls)
    from ledger_node.platform.config import load_serve_config

    platform = load_serve_config(directory / config)
    return NodeEndpoint(platform.url, platform.client_tls)


def chain_address(process: SiteProcess) -> tuple[str, int]:
    """The host and port ``jointledger chain`` binds (its ``--host``, ``--port``)."""
    host = process.option("--host") or "127.0.0.1"
    port = process.option("--port")
    return host, int(port) if port is not None else 8545
