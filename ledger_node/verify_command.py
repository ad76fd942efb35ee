"""``jointledger verify``: check a proof bundle with no node running.

With ``--rpc-url`` the bundle is checked against the chain (root, owner, SM2 key, anchoring
transaction); with only ``--checkpoint-key`` it is checked up to the signed checkpoint and
the output says plainly that the anchoring itself was not checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger_node import gmcrypto
from ledger_node.bundle import CheckStatus, ProofBundle, Verdict, verify_bundle
from ledger_node.chain import Deployment, LedgerChain
from ledger_node.commitment import FieldDisclosure, RecordOpening

Echo = Callable[[str], None]
_MARKS = {
    CheckStatus.PASSED: "PASS",
    CheckStatus.FAILED: "FAIL",
    CheckStatus.NOT_RUN: "----",
    CheckStatus.NOT_CHECKED: "n/a ",
}


def read_json(path: Path, what: str) -> Any:
    """Return the parsed JSON document at ``path``; raise ``ValueError`` naming ``what``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"the {what} {path} is not JSON: {exc}") from None


def run_verify(
    bundle_path: Path,
    *,
    rpc_url: str | None,
    checkpoint_key: Path | None,
    deployment: Path | None = None,
    opening: Path | None = None,
    disclosure: Path | None = None,
    as_json: bool = False,
    echo: Echo = print,
) -> int:
    """Verify the bundle at ``bundle_path``; print the verdict; return 0 if valid, else 1.

    Raises ``ValueError`` for unreadable inputs, :class:`~ledger_node.errors.LedgerError`
    subclasses for malformed documents (``InvalidBundle`` names the field) or an
    unreachable chain.
    """
    bundle = ProofBundle.from_json(read_json(bundle_path, "bundle"))
    key = (
        gmcrypto.public_key_from_pem(checkpoint_key.read_bytes())
        if checkpoint_key is not None
        else None
    )
    verdict = verify_bundle(
        bundle,
        chain=LedgerChain.from_rpc(rpc_url) if rpc_url else None,
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
        lines.append(f"  {_MARKS[check.status]}  {check.name.ljust(width)}  {check.detail}")
    lines.append(verdict.summary)
    return "\n".join(lines)
