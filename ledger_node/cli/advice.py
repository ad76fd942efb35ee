"""What every command says when it cannot go on: what was found, what was expected, what to
try (issue 17, item 5). One owner for the three kinds of advice the commands share:

- a config file that is missing, not TOML, missing a key, or of the wrong member's kind (a
  platform's node config where the regulator's is needed, or the reverse):
  :func:`config_advice`;
- a node or a chain that cannot be reached (nothing listening, a TLS handshake refused
  either way, no answer in time): :func:`unreachable_advice`;
- a deployment file the chain has not written yet: :func:`deployment_advice`.

Each returns the text after ``jointledger COMMAND:``; the caller prints it on standard
error and exits :data:`EXIT_UNUSABLE` (2: fix the input) or :data:`EXIT_REFUSED` (1: the
other side cannot or will not answer). Pure functions of their inputs except
:func:`config_kind`, which reads the file's tables to name what was given instead.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Final, Literal

EXIT_REFUSED: Final = 1
EXIT_UNUSABLE: Final = 2

ConfigKind = Literal["platform", "regulator", "member"]
"""The config a command takes: a platform node's, the regulator node's, or either (a
member's, for governance)."""

EXPECTED_CONFIG: Final[dict[str, str]] = {
    "platform": "a platform node's config ([node] platform = NAME, as jointledger serve --role "
                "platform reads; jointledger init writes DIR/NAME.toml)",
    "regulator": "the regulator node's config ([regulator] name = NAME, as jointledger serve "
                 "--role regulator reads; jointledger init writes DIR/NAME-regulator.toml)",
    "member": "a voting member's node config (a platform's DIR/NAME.toml or the regulator's "
              "DIR/NAME-regulator.toml from jointledger init)",
}
_EXAMPLE: Final[dict[str, str]] = {
    "platform": "--config site/unionpay.toml", "regulator": "--config site/pboc-regulator.toml",
    "member": "--config site/unionpay.toml"}


def config_kind(path: Path) -> Literal["platform", "regulator"] | None:
    """Whose node config ``path`` holds, by its tables (``[node]``: a platform's,
    ``[regulator]``: the regulator's); ``None`` when unreadable or neither."""
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if "regulator" in tables and "node" not in tables:
        return "regulator"
    if "node" in tables and "regulator" not in tables:
        return "platform"
    return None


def config_advice(path: Path | None, detail: str, expected: ConfigKind) -> str:
    """The line for a config the command cannot use: ``detail`` is what the loader found
    (its :class:`~ledger_node.errors.InvalidConfig` text). A config of the other member kind
    is named as such, since that is the usual mistake (a platform running ``trace``)."""
    wanted = EXPECTED_CONFIG[expected]
    if path is not None and expected != "member":
        found = config_kind(path)
        if found is not None and found != expected:
            whose = "a platform node's" if found == "platform" else "the regulator node's"
            return (f"{path} is {whose} config, but this command is the {expected}'s; expected "
                    f"{wanted}. Try: {_EXAMPLE[expected]}, the {expected}'s own config")
    if path is not None and not path.exists():
        return (f"no config file at {path}; expected {wanted}. Try: check the path, or lay a "
                "consortium out with jointledger init DIR")
    return (f"{detail}; expected {wanted}. Try: fix the key named (every key with an "
            "example: docs/config.md)")


def unreachable_advice(what: str, url: str, detail: str, *,
                       url_hint: str = "correct the URL") -> str:
    """The line for ``what`` (``the chain``, ``the regulator node``, …) at ``url`` not
    answering, ``detail`` being the transport's error text: the TLS cases (the server's
    certificate not trusted, the server asking for a client certificate) are told apart
    from nothing listening and from no answer in time, since each needs another fix.
    ``url_hint`` says how this command takes another URL."""
    said = f"cannot reach {what} at {url} ({detail.strip() or 'no answer'})"
    upper = detail.upper()
    if "CERTIFICATE_VERIFY_FAILED" in upper or "CERTIFICATE VERIFY FAILED" in upper:
        return (f"{said}; expected its certificate to chain to a CA this command trusts. Try: "
                "--ca DIR/tls/ca.pem (or the config's [tls] ca), the consortium CA of "
                "jointledger init")
    if "CERTIFICATE_REQUIRED" in upper or "CERTIFICATE REQUIRED" in upper or \
            "HANDSHAKE_FAILURE" in upper or "UNKNOWN_CA" in upper or "BAD_CERTIFICATE" in upper:
        return (f"{said}; it requires mutual TLS and refused the client certificate given (or "
                "none was): expected one issued by the consortium CA. Try: --client-cert "
                "DIR/tls/NAME.pem --client-key DIR/tls/NAME.key (or the config's [tls] "
                "client_cert and client_key)")
    if "TIMED OUT" in upper or "TIMEOUT" in upper:
        return (f"{said}; expected an answer in time. Try again; if it persists, check the "
                "server's log and load (jointledger status DIR)")
    if "WRONG_VERSION_NUMBER" in upper or "DISCONNECTED WITHOUT" in upper:
        return (f"{said}; expected {what} to speak the URL's protocol (http or https) on that "
                "port. Try: the URL's scheme and port (jointledger status DIR lists the "
                "nodes' URLs)")
    return (f"{said}; expected {what} listening there. Try: start it (jointledger up DIR, "
            f"then jointledger status DIR), or {url_hint}")


def deployment_advice(message: str) -> str:
    """The line for a :class:`~ledger_node.errors.DeploymentError` (``message``): a
    deployment file missing (the chain writes it at its first start), malformed, or not
    matching the chain reached."""
    if message.startswith("no deployment file at "):
        return (f"{message}; expected the one the chain writes when it deploys JointLedger at "
                "its first start. Try: start the chain first (jointledger up DIR), or point "
                "[chain] deployment (or --deployment) at the consortium's file")
    return (f"{message}; expected the deployment file of the chain reached. Try: the "
            "deployment.json written by that chain, and the chain's URL it was made on")
