"""``POST /v1/logs/{log_id}/leaves``: batch intake, authenticated by the batch signature."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import AuthenticatorDep, NodeDep, SettingsDep
from api.errors import ProblemException
from api.routes.common import DigestPath, problem_responses
from api.schemas import SubmissionCreate, SubmissionReceipts
from ledger_node.auth import authenticate_batch
from ledger_node.errors import InvalidBatch, InvalidLeaf

router = APIRouter(prefix="/v1/logs", tags=["intake"])


@router.post(
    "/{log_id}/leaves",
    status_code=201,
    response_model=SubmissionReceipts,
    responses=problem_responses(400, 401, 403, 404, 413, 422, 503),
    summary="Submit a signed batch of 1..10,000 leaves",
)
def submit_leaves(
    log_id: DigestPath,
    submission: SubmissionCreate,
    node: NodeDep,
    settings: SettingsDep,
    authenticator: AuthenticatorDep,
) -> Response:
    """Append the leaves to this node's log; answer once they are durably committed.

    The batch is authenticated by its SM2 signature over ``batch_digest(log_id, leaves)``:
    the signer must be the active platform member that owns this log (a regulator, auditor,
    unknown or removed member is refused). Re-sending leaves returns the same receipts with
    ``duplicate: true`` and stores nothing twice. A rejected batch stores nothing.
    """
    if bytes.fromhex(log_id) != node.log_id:
        raise ProblemException(
            "unknown-log",
            f"log {log_id.lower()} is not served here; this node serves {node.platform}'s log "
            f"{node.log_id.hex()}",
        )
    if len(submission.leaves) > settings.max_batch:
        raise InvalidBatch(
            f"a batch holds 1..{settings.max_batch} leaves, got {len(submission.leaves)}"
        )
    leaves = []
    for i, leaf in enumerate(submission.leaves):
        try:
            leaves.append(leaf.to_leaf())
        except InvalidLeaf as exc:
            raise InvalidLeaf(f"leaves[{i}].{exc.field}", exc.reason) from None
    # The node verifies the SM2 signature against the same registered key before it stores
    # the batch; checking it here too would double the most expensive step of intake.
    evidence = authenticate_batch(
        authenticator.members,
        platform_address=node.platform_address,
        log_id=node.log_id,
        leaves=leaves,
        signer=submission.signer,
        signature=bytes.fromhex(submission.signature),
        verify_signature=False,
    )
    receipts = node.submit(leaves, evidence)
    # Serialised by hand: validating 10,000 response models would cost more than the commit.
    body = ",".join(
        f'{{"index":{r.index},"leaf_hash":"{r.leaf_hash.hex()}",'
        f'"duplicate":{"true" if r.duplicate else "false"}}}'
        for r in receipts
    )
    return Response(f'{{"receipts":[{body}]}}', status_code=201, media_type="application/json")
