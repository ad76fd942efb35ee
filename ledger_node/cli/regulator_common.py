"""What the regulator's commands (``trace``, ``alerts``, ``faults``, ``disclose``,
``casefile``) share: the node and keys from the regulator's serve config, one signed SDK
client, the explanation of every failure, and the table and JSON printers.

Each command signs with the regulator's own key files (``[keys] sm2`` and ``account`` of
the config ``jointledger serve --role regulator`` reads) and talks to the node at
``http(s)://{[http] host}:{port}`` (https when it serves TLS; the config's ``[tls]`` is what
the command trusts and presents) unless ``--url`` is given. A failure is printed as one line
saying what was found, what was expected and what to try; the exit status is
:data:`EXIT_REFUSED` (1) for a node that is unreachable or refuses, :data:`EXIT_UNUSABLE`
(2) for unusable input (config, key files, options).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from ledger_node.cli.advice import config_advice, unreachable_advice
from ledger_node.client.sdk import RegulatorClient
from ledger_node.crypto.keyfiles import load_member_keys
from ledger_node.errors import ApiError, InvalidConfig, InvalidKey
from ledger_node.tls import ClientTls

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_UNUSABLE: Final = 2

Echo = Callable[[str], None]


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


@dataclass(frozen=True)
class RegulatorTarget:
    """The regulator node to ask and the files to sign with, from its serve config."""

    config: Path
    url: str
    name: str
    sm2_key: Path
    account_key: Path
    deployment: Path
    rpc_url: str | None
    tls: ClientTls
    """What the command trusts and presents: the config's ``[tls]`` (the follower's own)."""


def regulator_target(config: Path, url: str | None = None) -> RegulatorTarget:
    """Read the regulator's serve config (``url`` overrides its ``[http]``); raises
    :class:`InvalidConfig` naming the key or the option."""
    from ledger_node.regulator.config import load_regulator_config

    served = load_regulator_config(config)
    if url is not None and not url.startswith(("http://", "https://")):
        raise InvalidConfig(f"--url must be an http(s) URL, got {url!r}")
    scheme = "https" if served.server_tls is not None else "http"
    return RegulatorTarget(config, (url or f"{scheme}://{served.host}:{served.port}").rstrip("/"),
                           served.regulator.name, served.sm2_key, served.account_key,
                           served.deployment, served.rpc_url, served.client_tls)


class CommandRefused(Exception):
    """The command cannot go on; ``str`` is the whole message, ``exit_status`` its code."""

    def __init__(self, message: str, exit_status: int = EXIT_UNUSABLE) -> None:
        super().__init__(message)
        self.exit_status = exit_status


Action = Callable[[RegulatorClient, RegulatorTarget], int]
"""A command's body: given the signed client and its target, print and return a status."""


def run_regulator_command(command: str, config: Path, url: str | None, action: Action, *,
                          warn: Echo = _stderr, http: httpx.Client | None = None) -> int:
    """Load the target and the keys, run ``action`` with a signed client, and turn every
    failure into one explained line on ``warn`` and an exit status."""
    prefix = f"jointledger {command}:"
    try:
        target = regulator_target(config, url)
        keys = load_member_keys(target.sm2_key, target.account_key)
    except (InvalidConfig, InvalidKey, OSError) as exc:
        warn(f"{prefix} {config_advice(config, f'cannot use {config}: {exc}', 'regulator')}")
        return EXIT_UNUSABLE
    client = RegulatorClient.for_regulator_node(target.url, keys.account.address,
                                                keys.sm2_key, target.name, http=http,
                                                timeout=60.0, retries=1, backoff=0.2,
                                                tls=target.tls)
    try:
        return action(client, target)
    except CommandRefused as exc:
        warn(f"{prefix} {exc}")
        return exc.exit_status
    except httpx.TransportError as exc:
        warn(f"{prefix} " + unreachable_advice(
            "the regulator node", target.url, f"{type(exc).__name__}: {exc or 'no answer'}",
            url_hint="give its address with --url"))
        return EXIT_REFUSED
    except ApiError as exc:
        warn(f"{prefix} {explain_api_error(exc, target, keys.account.address)}")
        return EXIT_REFUSED
    finally:
        client.close()


def explain_api_error(exc: ApiError, target: RegulatorTarget, account: str) -> str:
    """One line for a problem answer: what the node said, what was expected, what to try."""
    said = f"the node at {target.url} answered {exc.status} {exc.title}: {exc.detail}"
    if exc.problem_type == "about:blank" and exc.status in (404, 405, 200):
        return (f"{said}; expected the regulator node's API at that URL (this server answers "
                "as something else: a platform node, the chain?). Try: the regulator node's "
                "URL (jointledger status DIR lists it), or leave --url out to use the config's")
    if exc.status == 401:
        return (f"{said}; expected it to accept requests signed for regulator node "
                f"{target.name!r} with the key {target.sm2_key}: check that [regulator] name "
                "is the node's name and [keys] sm2 the key registered on chain, and that "
                "this machine's clock is right")
    if exc.status == 403:
        return (f"{said}; account {account} (from {target.account_key}) is not an active "
                "regulator member on chain: use the regulator's own config, or have "
                "governance admit this account")
    if exc.problem_type.endswith("/unknown-alert"):
        return f"{said}; try jointledger alerts --config {target.config} to list the ids"
    if exc.problem_type.endswith("/unknown-disclosure-request"):
        return (f"{said}; try jointledger disclose status --config {target.config} to list "
                "the requests")
    if exc.status == 404:
        return f"{said}; check the value given (the node knows no such thing)"
    if exc.status >= 500:
        return f"{said}; the node failed: see its log, and try again"
    return f"{said}; check the values given"


def hex_bytes(value: str, what: str, size: int = 32) -> bytes:
    """``value`` as ``size`` bytes of hex; :class:`CommandRefused` saying what was found."""
    try:
        data = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        data = b""
    if len(data) != size:
        raise CommandRefused(f"{what} {value!r} is not {size * 2} hex digits ({size} bytes)")
    return data


def print_json(document: Any, echo: Echo) -> None:
    """``document`` as indented JSON (for scripts: ``--json``)."""
    echo(json.dumps(document, indent=2, ensure_ascii=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *,
          right: Sequence[int] = ()) -> list[str]:
    """Rows under headers, columns padded to their widest cell (``right``: indexes of
    right-aligned columns, for numbers)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)])
              for i, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.rjust(widths[i]) if i in right else value.ljust(widths[i])
                         for i, value in enumerate(values)).rstrip()

    return [line(list(headers)), line(["-" * width for width in widths]),
            *(line(row) for row in cells)]


def yuan(amount_fen: object) -> str:
    """An amount in fen as yuan with thousands separators: ``150,000.00``."""
    if not isinstance(amount_fen, int):
        return "?"
    return f"{amount_fen // 100:,}.{amount_fen % 100:02d}"


def short(hex_text: object, keep: int = 12) -> str:
    """The first ``keep`` hex digits of a long value, marked as cut."""
    text = str(hex_text)
    return text if len(text) <= keep else text[:keep] + "…"


def write_private(path: Path, document: Any) -> None:
    """Write ``document`` as JSON to ``path``, readable by its owner only (0600)."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise CommandRefused(f"cannot write {path}: {exc.strerror} (expected a writable "
                             "file path for --out)") from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
