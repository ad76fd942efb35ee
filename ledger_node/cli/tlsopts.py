"""The client TLS options of the commands that talk to a node or a chain: ``--ca``,
``--client-cert``, ``--client-key``.

They replace the ``[tls]`` table of the command's ``--config`` where it has one (the CA
bundle if ``--ca`` is given, the certificate and key if ``--client-cert`` is), so a member
runs its tools with its node config alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ledger_node.errors import InvalidConfig
from ledger_node.tls import CLIENT_OPTION_NAMES, NO_CLIENT_TLS, ClientTls, merge_client_tls


def add_client_tls_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--ca``, ``--client-cert`` and ``--client-key`` to ``parser``."""
    group = parser.add_argument_group("TLS (https nodes and chains)")
    group.add_argument("--ca", type=Path, metavar="PEM",
                       help="CA bundle the https servers' certificates must chain to "
                       "(default: the config's [tls] ca, else the system's CAs)")
    group.add_argument("--client-cert", type=Path, metavar="PEM",
                       help="client certificate for servers that require mutual TLS "
                       "(default: the config's [tls] client_cert)")
    group.add_argument("--client-key", type=Path, metavar="PEM",
                       help="the client certificate's private key (with --client-cert)")


def given_client_tls(args: argparse.Namespace) -> ClientTls:
    """What the command line gave (:data:`NO_CLIENT_TLS` if nothing). Raises
    :class:`InvalidConfig` naming the option for a certificate without its key (or the
    reverse)."""
    ca, cert, key = (getattr(args, name, None) for name in ("ca", "client_cert", "client_key"))
    if (cert is None) != (key is None):
        missing = "--client-cert" if cert is None else "--client-key"
        raise InvalidConfig(f"{missing} is missing: --client-cert and --client-key come "
                            "together")
    return ClientTls(ca, cert, key)


def client_tls(args: argparse.Namespace, configured: ClientTls = NO_CLIENT_TLS) -> ClientTls:
    """The client TLS of a command: ``configured`` with the command line's options replacing
    it, checked (:class:`InvalidConfig` naming the option or key of an unusable file)."""
    given = given_client_tls(args)
    merged = merge_client_tls(configured, given)
    names = CLIENT_OPTION_NAMES if given.configured else ("tls.ca", "tls.client_cert",
                                                          "tls.client_key")
    merged.ssl_context(names)
    return merged
