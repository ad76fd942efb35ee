"""TLS between the consortium's servers and clients: what a server presents, what a client
trusts, and which addresses may be served without it.

A member's node serves other organisations across a network, so beyond loopback it serves
https (:class:`ServerTls`: its certificate and key, and with ``client_ca`` mutual TLS:
only clients whose certificate chains to the consortium CA get past the handshake). Plain
HTTP beyond loopback is refused unless the operator says ``allow_plaintext`` (e.g. behind a
TLS-terminating proxy on another host of a private network), and then the server warns at start
(:func:`check_bind`).

A client (the SDK, the regulator's follower, the CLI, the chain adapter) trusts a CA bundle
and may present a certificate (:class:`ClientTls`), as an :class:`ssl.SSLContext` for httpx
and as ``verify``/``cert`` for requests (web3's HTTP provider).

The TLS here is OpenSSL's, through Python's :mod:`ssl`: RSA/ECDSA certificates, TLS 1.2 or
later. TLCP (GB/T 38636, SM2 certificates) needs Tongsuo; see docs/deploy.md.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

from ledger_node.errors import InvalidConfig

LOOPBACK_NAMES: Final = frozenset({"localhost"})
"""Host names taken as loopback without resolving them (addresses are checked as such)."""
SERVER_KEYS: Final = frozenset({"tls_cert", "tls_key", "client_ca", "allow_plaintext"})
"""The ``[http]`` keys of a node config that configure its server's TLS."""
CLIENT_KEYS: Final = frozenset({"ca", "client_cert", "client_key"})
"""The keys of a node config's ``[tls]`` table: what its clients trust and present."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address (only this machine can connect)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate chain and key (PEM files), and the CA its clients' certificates
    must chain to (``client_ca``: mutual TLS), if any."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def context(self, names: tuple[str, str, str] = ("http.tls_cert", "http.tls_key",
                                                     "http.client_ca")) -> ssl.SSLContext:
        """The server's context: TLS 1.2 or later, this certificate; with ``client_ca`` a
        client certificate chaining to it is required. Raises :class:`InvalidConfig` naming
        the setting (``names``: what the certificate, key and client CA are called where
        they were given) of a file that is unreadable or does not fit."""
        cert_name, key_name, ca_name = names
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        for path, name in ((self.cert, cert_name), (self.key, key_name)):
            if not path.is_file():
                raise InvalidConfig(f"{name}: cannot read {path}")
        try:
            context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            raise InvalidConfig(f"{cert_name} / {key_name}: {self.cert} and {self.key} are not "
                                f"a PEM certificate chain and its private key ({exc})") from None
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            _load_ca(context, self.client_ca, ca_name)
        return context

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate."""
        return self.client_ca is not None


@dataclass(frozen=True)
class ClientTls:
    """What a client trusts (``ca``: a PEM bundle; ``None``: the system's CAs) and the
    certificate it presents for mutual TLS (``cert`` and ``key``, or neither)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise InvalidConfig("a client certificate needs its key and a key its certificate "
                                "(tls.client_cert and tls.client_key together)")

    def ssl_context(self, names: tuple[str, str, str] = ("tls.ca", "tls.client_cert",
                                                         "tls.client_key")) -> ssl.SSLContext:
        """The client's context (for httpx's ``verify=``): server certificates verified
        against ``ca`` with their host names, this client certificate presented. Raises
        :class:`InvalidConfig` naming the setting (``names``: what the CA bundle, the
        certificate and the key are called where they were given) of an unusable file."""
        ca_name, cert_name, key_name = names
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and host name
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ca is not None:
            _load_ca(context, self.ca, ca_name)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.cert is not None and self.key is not None:
            for path, name in ((self.cert, cert_name), (self.key, key_name)):
                if not path.is_file():
                    raise InvalidConfig(f"{name}: cannot read {path}")
            try:
                context.load_cert_chain(self.cert, self.key)
            except (ssl.SSLError, OSError) as exc:
                raise InvalidConfig(f"{cert_name} / {key_name}: {self.cert} and {self.key} are "
                                    f"not a PEM certificate and its private key ({exc})"
                                    ) from None
        return context

    def requests_options(self) -> dict[str, Any]:
        """``verify`` and ``cert`` for requests (web3's HTTP provider)."""
        return {"verify": str(self.ca) if self.ca is not None else True,
                "cert": (str(self.cert), str(self.key)) if self.cert is not None else None}

    @property
    def configured(self) -> bool:
        """Whether anything differs from the defaults (system CAs, no certificate)."""
        return self.ca is not None or self.cert is not None


NO_CLIENT_TLS: Final = ClientTls()
"""The system's CAs and no client certificate."""


def merge_client_tls(configured: ClientTls, given: ClientTls) -> ClientTls:
    """``configured`` (a config file's ``[tls]``) with what the command line ``given``
    replacing it: its CA bundle if it names one, its certificate and key if it names them."""
    ca = given.ca if given.ca is not None else configured.ca
    if given.cert is not None:
        return ClientTls(ca, given.cert, given.key)
    return ClientTls(ca, configured.cert, configured.key)


def _load_ca(context: ssl.SSLContext, path: Path, key: str) -> None:
    try:
        context.load_verify_locations(cafile=path)
    except FileNotFoundError:
        raise InvalidConfig(f"{key}: cannot read {path}") from None
    except (ssl.SSLError, OSError) as exc:
        raise InvalidConfig(f"{key}: {path} is not a PEM CA bundle ({exc})") from None


class SettingNames(NamedTuple):
    """What a server's TLS settings are called where they are given (in messages)."""

    host: str
    cert: str
    key: str
    client_ca: str
    allow_plaintext: str


CONFIG_NAMES: Final = SettingNames("http.host", "http.tls_cert", "http.tls_key",
                                   "http.client_ca", "http.allow_plaintext = true")
"""The names in a node config file's ``[http]`` table."""
OPTION_NAMES: Final = SettingNames("--host", "--tls-cert", "--tls-key", "--client-ca",
                                   "--allow-plaintext")
"""The names of ``jointledger chain``'s options."""
CLIENT_OPTION_NAMES: Final = ("--ca", "--client-cert", "--client-key")
"""The names of the client TLS options of the commands that talk to a node or chain."""


def check_bind(host: str, tls: ServerTls | None, allow_plaintext: bool, *,
               names: SettingNames = CONFIG_NAMES) -> str | None:
    """Whether a server may bind ``host`` as configured; the warning to give at start if it
    may only because ``allow_plaintext`` says so, else ``None``.

    Raises :class:`InvalidConfig` naming the host setting for an empty host, or for a host
    beyond loopback served without TLS unless ``allow_plaintext``.
    """
    if not host:
        raise InvalidConfig(f"{names.host} is empty")
    if tls is not None or is_loopback(host):
        return None
    if not allow_plaintext:
        raise InvalidConfig(
            f"{names.host} {host!r} is not a loopback address, and plain HTTP is served on "
            f"loopback only: a server other machines can reach serves TLS (give {names.cert} "
            f"and {names.key}, and {names.client_ca} for mutual TLS), or give "
            f"{names.allow_plaintext} to serve plain HTTP anyway (e.g. behind a "
            "TLS-terminating proxy): escrows and signed requests would cross the network in "
            "clear")
    return (f"WARNING: serving plain HTTP on {host} ({names.allow_plaintext}): anyone on the "
            "network path reads escrows, leaves and signed requests; serve TLS "
            f"({names.cert}, {names.key}) unless a TLS-terminating proxy fronts this server")


def _path(section: str, data: Mapping[str, Any], key: str, base: Path) -> Path | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidConfig(f"{section}.{key} must be a file name")
    return base / value


def read_server_tls(http: Mapping[str, Any], base: Path, *, section: str = "http"
                    ) -> tuple[ServerTls | None, bool]:
    """The server TLS and ``allow_plaintext`` of a config's ``[http]`` table (file names
    relative to ``base``), checked by building the context once. Raises
    :class:`InvalidConfig` naming the key."""
    cert = _path(section, http, "tls_cert", base)
    key = _path(section, http, "tls_key", base)
    client_ca = _path(section, http, "client_ca", base)
    allow = http.get("allow_plaintext", False)
    if not isinstance(allow, bool):
        raise InvalidConfig(f"{section}.allow_plaintext must be true or false")
    if cert is None and key is None:
        if client_ca is not None:
            raise InvalidConfig(f"{section}.client_ca needs {section}.tls_cert and "
                                f"{section}.tls_key: mutual TLS is TLS")
        return None, allow
    if cert is None or key is None:
        missing = "tls_cert" if cert is None else "tls_key"
        raise InvalidConfig(f"{section}.{missing} is missing: {section}.tls_cert and "
                            f"{section}.tls_key come together")
    tls = ServerTls(cert, key, client_ca)
    tls.context((f"{section}.tls_cert", f"{section}.tls_key", f"{section}.client_ca"))
    return tls, allow


def read_client_tls(table: Mapping[str, Any], base: Path, *, section: str = "tls") -> ClientTls:
    """The :class:`ClientTls` of a config's ``[tls]`` table (``ca``, ``client_cert``,
    ``client_key``; file names relative to ``base``), checked by building its context.
    Raises :class:`InvalidConfig` naming the key."""
    cert = _path(section, table, "client_cert", base)
    key = _path(section, table, "client_key", base)
    if (cert is None) != (key is None):
        missing = "client_cert" if cert is None else "client_key"
        raise InvalidConfig(f"{section}.{missing} is missing: {section}.client_cert and "
                            f"{section}.client_key come together")
    tls = ClientTls(_path(section, table, "ca", base), cert, key)
    tls.ssl_context((f"{section}.ca", f"{section}.client_cert", f"{section}.client_key"))
    return tls


def url_scheme(tls: ServerTls | None) -> str:
    """``https`` with TLS, else ``http``."""
    return "http" if tls is None else "https"


def local_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host`` (a wildcard
    address is reached on loopback), as a URL's host part."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def tls_config_toml(cert: str, key: str, ca: str) -> str:
    """The TLS lines of a member's node config, as :func:`read_server_tls` and
    :func:`read_client_tls` read them: the node serves ``cert`` (with ``key``) and requires
    a client certificate from ``ca`` (mutual TLS), lines that end the ``[http]`` table; then
    a ``[tls]`` table trusting ``ca`` and presenting the same certificate as a client.

    The one writer of these lines: ``jointledger init`` and the demo's local site use it.
    """
    return (f"tls_cert = {toml_string(cert)}\ntls_key = {toml_string(key)}\n"
            f"client_ca = {toml_string(ca)}\n\n"
            f"[tls]\nca = {toml_string(ca)}\nclient_cert = {toml_string(cert)}\n"
            f"client_key = {toml_string(key)}\n")


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (a JSON string is one)."""
    return json.dumps(text)
