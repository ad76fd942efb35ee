"""``POST /v1/verify``: anyone may verify a proof bundle against the chain."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import NodeDep
from api.routes.common import problem_responses
from api.schemas import VerdictPublic, VerifyRequest
from ledger_node.errors import DeploymentError
from ledger_node.protocol.bundle import ProofBundle, Verdict, verify_bundle
from ledger_node.protocol.checks import Check
from ledger_node.protocol.commitment import FieldDisclosure, RecordOpening

router = APIRouter(prefix="/v1/verify", tags=["verify"])


@router.post("", response_model=VerdictPublic, responses=problem_responses(400, 413, 422, 503),
             summary="Verify a proof bundle (and an opening or disclosure) against the chain")
def verify(request: VerifyRequest, node: NodeDep) -> VerdictPublic:
    """Check the bundle against the root anchored on chain, never against this node's store.

    A well-formed bundle that does not verify (another log, another chain, a wrong path or
    root) gets 200 with ``valid: false`` and the reasons; a malformed one gets 422.
    """
    bundle = ProofBundle.from_json(request.bundle)
    opening = None if request.opening is None else RecordOpening.from_json(request.opening)
    disclosure = (None if request.disclosure is None
                  else FieldDisclosure.from_json(request.disclosure))
    try:
        verdict = verify_bundle(bundle, chain=node.chain, opening=opening,
                                disclosure=disclosure)
    except DeploymentError as exc:  # defensive: the verifier reports these as checks
        verdict = Verdict(False, False, (Check("deployment", False, str(exc)),))
    return VerdictPublic.of(verdict)
