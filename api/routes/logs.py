"""``/v1/logs/{log_id}/leaves``: batch intake (``POST``, authenticated by the batch
signature) and the regulator's read of whole leaves with escrows (``GET``, signed request);
``/v1/logs/{log_id}/summaries``: anyone's bulk read of leaf summaries (no escrows)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from api.deps import AuthenticatorDep, LimitedMemberDep, NodeDep, SettingsDep
from api.errors import ProblemException
from api.routes.common import DigestPath, problem_responses
from api.schemas import (
    MAX_BATCH,
    Digest,
    LeafRangePublic,
    LeafSummaryPublic,
    SubmissionCreate,
    SubmissionReceipts,
)
from ledger_node.chain.adapter import Role
from ledger_node.errors import Forbidden, InvalidBatch, InvalidLeaf, LeafRangeUnavailable
from ledger_node.log.leaf import Leaf, LeafSummary
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.auth import AuthenticatedMember, authorize_batch_signer

router = APIRouter(prefix="/v1/logs", tags=["intake"])

MAX_RANGE = MAX_BATCH
"""The most leaves one ``GET /v1/logs/{log_id}/leaves`` returns."""


def _check_log(log_id: str, node: PlatformNode) -> None:
    if bytes.fromhex(log_id) != node.log_id:
        raise ProblemException(
            "unknown-log",
            f"log {log_id.lower()} is not served here; this node serves {node.platform}'s log "
            f"{node.log_id.hex()}",
        )


def require_owner_or_regulator(member: AuthenticatedMember, node: PlatformNode,
                               what: str) -> None:
    """Let through a regulator or this log's own platform; otherwise raise Forbidden."""
    if member.role is Role.REGULATOR:
        return
    if member.role is Role.PLATFORM and member.address.lower() == node.platform_address.lower():
        return
    raise Forbidden(
        f"{member.address} ({member.role.name.lower()} {member.name}) may not read "
        f"{node.platform}'s {what}: only {node.platform} and regulators may"
    )


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
    _check_log(log_id, node)
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
    # The node computes the batch digest once and verifies the SM2 signature with it against
    # the same registered key before it stores the batch; here only the signer's right.
    authorize_batch_signer(
        authenticator.member,
        platform_address=node.platform_address,
        log_id=node.log_id,
        signer=submission.signer,
    )
    receipts = node.submit_signed(leaves, signer=submission.signer,
                                  signature=bytes.fromhex(submission.signature))
    # Serialised by hand: validating 10,000 response models would cost more than the commit.
    body = ",".join(
        f'{{"index":{r.index},"leaf_hash":"{r.leaf_hash.hex()}",'
        f'"duplicate":{"true" if r.duplicate else "false"}}}'
        for r in receipts
    )
    return Response(f'{{"receipts":[{body}]}}', status_code=201, media_type="application/json")


def _tag(value: bytes | None) -> str:
    return "null" if value is None else f'"{value.hex()}"'


def leaves_json(leaves: list[Leaf]) -> str:
    """``[leaf.to_json() ...]`` as JSON text, built directly: the values are hex, which
    needs no escaping, and a page of 10,000 293-byte escrows takes 20 ms so against 46 ms
    for ``json.dumps`` of ``to_json()`` and 56 ms through :class:`LeafRangePublic`. The
    text is exactly ``to_json``'s: tests/test_api_wire.py holds them equal."""
    return ",".join(
        f'{{"commitment":"{leaf.commitment.hex()}","escrow":"{leaf.escrow.hex()}",'
        f'"match_tag":{_tag(leaf.match_tag)},"amount_tag":{_tag(leaf.amount_tag)}}}'
        for leaf in leaves
    )


@router.get(
    "/{log_id}/leaves",
    response_model=LeafRangePublic,
    responses=problem_responses(401, 403, 404, 416, 422, 429),
    summary="Whole leaves [start, end) with their escrows (regulator or own platform, signed)",
    tags=["regulator"],
)
def leaf_range(
    log_id: DigestPath,
    node: NodeDep,
    member: LimitedMemberDep,
    start: Annotated[int, Query(ge=0, le=2**63 - 1, description="first index")],
    end: Annotated[int, Query(ge=1, le=2**63 - 1, description="one past the last index")],
) -> Response:
    """Leaves ``start..end-1`` of this log as stored, escrows included, for a regulator who
    rebuilds the anchored roots and opens the escrows (PROTOCOL §6).

    Needs an SM2-signed request (``X-JL-*`` headers) from a regulator or this log's own
    platform. ``end - start`` is 1..10,000 (422 ``invalid-range``); ``end`` may not pass the
    log's current size (416 ``range-not-satisfiable``, with ``size``). Rate-limited per
    member (429 ``rate-limited``).
    """
    require_owner_or_regulator(member, node, "leaves and escrows")
    return _range_response(log_id, node, start, end, "leaves",
                           lambda: leaves_json(node.leaves(start, end, limit=MAX_RANGE)))


def _range_response(log_id: str, node: PlatformNode, start: int, end: int, key: str,
                    encoded: Callable[[], str]) -> Response:
    """Leaves ``[start, end)`` of this node's log as ``{log_id, platform, hash, start, end,
    size, <key>: encoded()}``, the JSON built by hand (a 10,000-leaf page through
    pydantic would cost more than reading it)."""
    _check_log(log_id, node)
    try:
        items = encoded()
    except LeafRangeUnavailable as exc:
        raise ProblemException("range-not-satisfiable", str(exc),
                               extensions={"size": exc.size}) from None
    head = (f'{{"log_id":"{node.log_id.hex()}","platform":{json.dumps(node.platform)},'
            f'"hash":"{node.hash_name}","start":{start},"end":{end},"size":{node.size()},'
            f'"{key}":[')
    return Response(head + items + "]}", media_type="application/json")


class LeafSummaryRangePublic(BaseModel):
    """The leaf summaries ``[start, end)`` of a log: what each leaf hash is made of."""

    log_id: Digest
    platform: str = Field(examples=["unionpay"])
    hash: str = Field(examples=["sm3"])
    start: int = Field(description="index of the first summary returned")
    end: int = Field(description="one past the index of the last summary returned")
    size: int = Field(description="the log's size when the range was read")
    summaries: list[LeafSummaryPublic]


def summaries_json(summaries: list[LeafSummary]) -> str:
    """``[summary.to_json() ...]`` as compact JSON text, built directly.

    Hand-built on purpose, the one place a summary is not written by
    :meth:`~ledger_node.log.leaf.LeafSummary.to_json`: this is the hot path of
    reconciliation (other platforms read whole logs, 10,000 summaries a page), and text
    made from hex values, which need no escaping, takes 21 ms a page against 43 ms for
    ``json.dumps`` of ``to_json()`` and 54 ms through :class:`LeafSummaryRangePublic`
    (measured with 293-byte escrows; their SM3, which all three pay, is 18 ms of each, and
    is now paid once, by the node's check of each leaf row). The text is exactly
    ``to_json``'s, key order included: tests/test_api_wire.py holds them equal.
    """
    return ",".join(
        f'{{"commitment":"{s.commitment.hex()}","escrow_digest":"{s.escrow_digest.hex()}",'
        f'"match_tag":{_tag(s.match_tag)},"amount_tag":{_tag(s.amount_tag)}}}'
        for s in summaries
    )


@router.get(
    "/{log_id}/summaries",
    response_model=LeafSummaryRangePublic,
    responses=problem_responses(404, 416, 422),
    summary="Leaf summaries [start, end): commitments, escrow digests, match tags (public)",
    tags=["leaves", "reconciliation"],
)
def summary_range(
    log_id: DigestPath,
    node: NodeDep,
    start: Annotated[int, Query(ge=0, le=2**63 - 1, description="first index")],
    end: Annotated[int, Query(ge=1, le=2**63 - 1, description="one past the last index")],
) -> Response:
    """Leaves ``start..end-1`` of this log as their summaries: commitment, SM3 of the escrow,
    match and amount tags, i.e. exactly the parts each leaf hash is made of, so that a reader
    rebuilds the tree and compares it with the roots anchored on chain. Escrows are not
    served. Every field is already public through proof bundles: no authentication.

    Another platform reconciling cross-platform payments reads the log this way
    (docs/reconciliation.md). ``end - start`` is 1..10,000 (422 ``invalid-range``); ``end``
    may not pass the log's current size (416 ``range-not-satisfiable``, with ``size``).
    """
    return _range_response(log_id, node, start, end, "summaries",
                           lambda: summaries_json(node.summaries(start, end, limit=MAX_RANGE)))
