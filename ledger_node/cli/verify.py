"""``jointledger verify``: check a proof bundle or a regulator's case file, no node running.

With ``--rpc-url`` a bundle is checked against the chain (root, owner, SM2 key, anchoring
transaction); with only ``--checkpoint-key`` it is checked up to the signed checkpoint and
the output says plainly that the anchoring itself was not checked. A document whose
``format`` is the case-file format is checked as a case file
(:mod:`ledger_node.regulator.casefile`),
always against the chain; ``--regulator-key`` adds the decryption of escrows and sealed
disclosure responses.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from ledger_node.chain.adapter import Deployment, LedgerChain
from ledger_node.crypto import gmcrypto
from ledger_node.jsonlimits import (
    MAX_JSON_DEPTH,
    JsonTextRefused,
    check_json_text,
    json_nested_deeper_than,
)
from ledger_node.protocol.bundle import ProofBundle, Verdict, verify_bundle
from ledger_node.protocol.checks import check_line
from ledger_node.protocol.commitment import FieldDisclosure, RecordOpening
from ledger_node.regulator.casefile import (
    is_case_file,
    parse_case_file,
    render_case_report,
    verify_case_file,
)
from ledger_node.tls import NO_CLIENT_TLS, ClientTls

Echo = Callable[[str], None]


_WRITTEN_BY: Final[dict[str, str]] = {
    "bundle or case file": "one JSON document: a proof bundle (jointledger proof --out) or a "
                           "case file (jointledger casefile build --out)",
    "opening": "a whole-record opening (JSON, e.g. jointledger disclose collect --out)",
    "disclosure": "a single-field disclosure (JSON, jointledger disclose RECEIPTS --field "
                  "NAME --out)",
}


MALFORMED_ADVICE: Final = ("expected the document as jointledger wrote it (a proof bundle: "
                           "jointledger proof; a case file: jointledger casefile build). Try: "
                           "the file as written, fetched or built again; a changed file "
                           "cannot be verified")
"""The expected-and-try half of a refusal of a malformed bundle, case file or disclosure."""


def _as_written(what: str) -> str:
    """What a ``what`` file should be and which command writes it."""
    return _WRITTEN_BY.get(what, f"the {what} as JSON")


def read_json(path: Path, what: str) -> Any:
    """Return the parsed JSON document at ``path``; raise ``ValueError`` naming ``what``.

    The file is UTF-8 (a leading byte order mark, as editors write, is skipped); nesting
    deeper than :data:`MAX_JSON_DEPTH` is refused before parsing (see
    :mod:`ledger_node.jsonlimits`: it would overflow the stack rather than raise).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror}; expected "
                         f"{_as_written(what)}. Try: check the path") from None
    text = raw.removeprefix(codecs.BOM_UTF8)
    try:
        check_json_text(text)
    except JsonTextRefused as refused:
        raise ValueError(f"the {what} {path} is refused: {refused.reason}") from None
    if json_nested_deeper_than(text, MAX_JSON_DEPTH):
        raise ValueError(f"the {what} {path} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"the {what} {path} is not JSON ({exc}); expected "
                         f"{_as_written(what)}. Try: the file that command wrote, not a "
                         "receipts (JSON lines), records or config file") from None


def read_key(path: Path, what: str) -> bytes:
    """Return the bytes of a key file; raise ``ValueError`` naming ``what`` if unreadable."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror}") from None


def run_verify(
    bundle_path: Path,
    *,
    rpc_url: str | None,
    checkpoint_key: Path | None,
    deployment: Path | None = None,
    opening: Path | None = None,
    disclosure: Path | None = None,
    regulator_keys: Sequence[Path] = (),
    as_json: bool = False,
    echo: Echo = print,
    tls: ClientTls = NO_CLIENT_TLS,
) -> int:
    """Verify the bundle or case file at ``bundle_path``; print the verdict or report;
    return 0 if valid, else 1.

    A document whose ``format`` is the case-file format goes to :func:`run_verify_case_file`
    (``--opening``, ``--disclosure`` and ``--checkpoint-key`` are for bundles; the
    regulator's keys for case files). Raises ``ValueError`` for unreadable inputs and
    options that do not fit the document, :class:`~ledger_node.errors.LedgerError`
    subclasses for malformed documents (``InvalidBundle`` and ``InvalidCaseFile`` name the
    field) or an unreachable chain.
    """
    document = read_json(bundle_path, "bundle or case file")
    if is_case_file(document):
        for given, option in ((opening, "--opening"), (disclosure, "--disclosure"),
                              (checkpoint_key, "--checkpoint-key")):
            if given is not None:
                raise ValueError(f"{option} is for proof bundles; {bundle_path} is a case file")
        return run_verify_case_file(document, rpc_url=rpc_url, deployment=deployment, tls=tls,
                                    regulator_keys=regulator_keys, as_json=as_json, echo=echo)
    if regulator_keys:
        raise ValueError(f"--regulator-key is for case files; {bundle_path} is not one")
    bundle = ProofBundle.from_json(document)
    key = (
        gmcrypto.public_key_from_pem(read_key(checkpoint_key, "checkpoint key"))
        if checkpoint_key is not None
        else None
    )
    verdict = verify_bundle(
        bundle,
        chain=(LedgerChain.from_rpc(rpc_url, **tls.requests_options()) if rpc_url
               else None),
        checkpoint_key=key,
        deployment=Deployment.load(deployment) if deployment else None,
        opening=RecordOpening.from_json(read_json(opening, "opening")) if opening else None,
        disclosure=(
            FieldDisclosure.from_json(read_json(disclosure, "disclosure")) if disclosure else None
        ),
    )
    if as_json:
        echo(json.dumps(verdict.to_json(), indent=2))
    else:
        echo(render_verdict(bundle, verdict))
    return 0 if verdict.valid else 1


def render_verdict(bundle: ProofBundle, verdict: Verdict) -> str:
    """Return the verdict as lines for people: one per check, then the summary."""
    checkpoint = bundle.checkpoint.checkpoint
    lines = [
        f"bundle: leaf {bundle.index} of {bundle.tree_size} in {checkpoint.platform}'s log "
        f"{checkpoint.log_id.hex()[:16]}…, chain {bundle.anchor.chain_id}, "
        f"contract {bundle.anchor.contract}",
        f"mode: {verdict.mode}",
    ]
    width = max(len(check.name) for check in verdict.checks)
    for check in verdict.checks:
        lines.append(check_line(check, width))
    lines.append(verdict.summary)
    return "\n".join(lines)


def run_verify_case_file(
    document: Any,
    *,
    rpc_url: str | None,
    deployment: Path | None = None,
    regulator_keys: Sequence[Path] = (),
    as_json: bool = False,
    echo: Echo = print,
    tls: ClientTls = NO_CLIENT_TLS,
) -> int:
    """Verify a case file document against the chain at ``rpc_url`` (an https chain with
    ``tls``); print the report; return 0 if every performed check passed, else 1.

    Raises ``ValueError`` without ``rpc_url`` or for an unreadable key file,
    :class:`~ledger_node.errors.InvalidCaseFile` (naming the JSON path) for a malformed
    document, :class:`~ledger_node.errors.InvalidKey` for a key that is not an SM2 private
    key and :class:`~ledger_node.errors.ChainError` if the chain cannot be read.
    """
    if not rpc_url:
        raise ValueError("a case file is checked against the chain: give --rpc-url")
    case = parse_case_file(document)
    keys = [gmcrypto.private_key_from_pem(read_key(path, "regulator key"))
            for path in regulator_keys]
    report = verify_case_file(
        case,
        chain=LedgerChain.from_rpc(rpc_url, **tls.requests_options()),
        deployment=Deployment.load(deployment) if deployment else None,
        regulator_keys=keys,
    )
    echo(json.dumps(report.to_json(), indent=2) if as_json else render_case_report(report))
    return 0 if report.valid else 1
