"""``jointledger console-login``: the URL that opens a regulator session in the web console.

The regulator's key files sign ``POST /v1/console/sessions`` on its node (the same SM2
request signature as the rest of the regulator API); the node answers a one-time login
token, valid for a minute, inside ``login_path``. The command prints the full URL to open
in a browser; the page exchanges the token for a session cookie and drops it from the
address bar. The keys never leave this process.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from ledger_node.cli.advice import config_advice, unreachable_advice
from ledger_node.crypto.keyfiles import key_paths, load_member_keys
from ledger_node.errors import InvalidConfig, InvalidKey
from ledger_node.protocol.auth import sign_request
from ledger_node.regulator.node import node_audience
from ledger_node.tls import NO_CLIENT_TLS, ClientTls, merge_client_tls

LOGIN_PATH: Final = "/v1/console/sessions"
EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_UNUSABLE: Final = 2

Echo = Callable[[str], None]


@dataclass(frozen=True)
class LoginTarget:
    """Where to log in and with which key files."""

    url: str
    sm2_key: Path
    account_key: Path
    name: str | None  # the regulator node's name (its requests' audience); None: ask it
    tls: ClientTls = NO_CLIENT_TLS  # what an https node is reached with


def login_target(*, config: Path | None, url: str | None, name: str | None,
                 sm2_key: Path | None, account_key: Path | None,
                 keys_dir: Path | None, tls: ClientTls = NO_CLIENT_TLS) -> LoginTarget:
    """Combine ``--config`` (the regulator's serve TOML) with the explicit options, which
    win (``tls``: the command line's TLS options over the config's ``[tls]``). Raises
    :class:`InvalidConfig` when no node URL or no key files result."""
    if config is not None:
        from ledger_node.regulator.config import load_regulator_config

        served = load_regulator_config(config)
        url = url or served.url
        name = name or served.regulator.name
        sm2_key = sm2_key or served.sm2_key
        account_key = account_key or served.account_key
        tls = merge_client_tls(served.client_tls, tls)
    if keys_dir is not None:
        if name is None:
            raise InvalidConfig("--keys DIR needs --name: the key files are DIR/NAME.*")
        private, _, account = key_paths(keys_dir, name)
        sm2_key = sm2_key or private
        account_key = account_key or account
    if url is None:
        raise InvalidConfig("give the regulator node's --url, or its --config")
    if not url.startswith(("http://", "https://")):
        raise InvalidConfig(f"--url must be an http(s) URL, got {url!r}")
    if sm2_key is None or account_key is None:
        raise InvalidConfig("give the regulator's key files: --config, or --sm2-key and "
                            "--account-key, or --keys DIR with --name")
    return LoginTarget(url.rstrip("/"), sm2_key, account_key, name, tls)


def request_login_url(target: LoginTarget, *, http: httpx.Client | None = None) -> str:
    """Make the signed login request; return the full console URL with the token.

    Raises :class:`~ledger_node.errors.InvalidKey` for unusable key files,
    :class:`ConsoleLoginRefused` when the node refuses (the problem's detail) and
    ``httpx.HTTPError`` when it cannot be reached.
    """
    keys = load_member_keys(target.sm2_key, target.account_key)
    client = http or httpx.Client(base_url=target.url, timeout=10,
                                  verify=target.tls.ssl_context())
    try:
        name = target.name
        if name is None:
            health = client.get("/v1/health")
            health.raise_for_status()
            name = str(health.json()["name"])
        headers = sign_request(keys.sm2_key, keys.account.address, "POST", LOGIN_PATH, b"",
                               audience=node_audience(name))
        answer = client.post(LOGIN_PATH, headers=headers)
    finally:
        if http is None:
            client.close()
    if answer.status_code != 201:
        try:
            detail = str(answer.json().get("detail", answer.text))
        except ValueError:
            detail = answer.text
        raise ConsoleLoginRefused(answer.status_code, detail)
    return target.url + str(answer.json()["login_path"])


class ConsoleLoginRefused(Exception):
    """The node refused the login request (status and the problem's detail)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"the node refused the login ({status}): {detail}")
        self.status = status
        self.detail = detail


def run_console_login(*, config: Path | None, url: str | None, name: str | None,
                      sm2_key: Path | None, account_key: Path | None, keys_dir: Path | None,
                      echo: Echo = print,
                      warn: Echo = lambda text: print(text, file=sys.stderr),
                      tls: ClientTls = NO_CLIENT_TLS) -> int:
    """Print the login URL; return 0, 1 when refused or unreachable, 2 for unusable input."""
    try:
        target = login_target(config=config, url=url, name=name, sm2_key=sm2_key,
                              account_key=account_key, keys_dir=keys_dir, tls=tls)
        target.tls.ssl_context()
    except InvalidConfig as exc:
        detail = str(exc)
        warn("jointledger console-login: " + (
            f"{detail}. Try: jointledger console-login --help" if config is None
            else config_advice(config, detail, "regulator")))
        return EXIT_UNUSABLE
    try:
        login_url = request_login_url(target)
    except InvalidKey as exc:
        warn(f"jointledger console-login: {exc}; expected the regulator's SM2 private key "
             "and account key files. Try: the regulator's --config, or --sm2-key and "
             "--account-key from jointledger keys new")
        return EXIT_UNUSABLE
    except ConsoleLoginRefused as exc:
        warn(f"jointledger console-login: {exc}; expected the regulator node to accept a "
             "login signed with the regulator's keys. Try: the regulator node's URL "
             "(jointledger status DIR lists it) and the regulator's own config")
        return EXIT_REFUSED
    except (httpx.HTTPError, ValueError) as exc:  # ValueError: an answer that is not JSON
        warn("jointledger console-login: " + unreachable_advice(
            "the regulator node", target.url, f"{type(exc).__name__}: {exc}",
            url_hint="give its address with --url"))
        return EXIT_REFUSED
    echo(login_url)
    warn("open this URL within a minute; it works once (the console then keeps a session "
         "cookie for 8 hours)")
    return EXIT_OK
