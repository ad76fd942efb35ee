"""``/v1/disclosures``: regulators' disclosure requests addressed to this platform, and the
sealed answers the platform's own system posts for the node to store and log on chain."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import MemberDep, NodeDep
from api.routes.common import RequestIdPath, problem_responses
from api.routes.logs import require_owner_or_regulator
from api.schemas import (
    DisclosureFulfilment,
    DisclosureRequestPublic,
    DisclosureResponseCreate,
    DisclosureResponsePublic,
)
from ledger_node.chain.adapter import Role
from ledger_node.errors import Forbidden

router = APIRouter(prefix="/v1/disclosures", tags=["disclosures"])



@router.get("", response_model=list[DisclosureRequestPublic],
            responses=problem_responses(401, 403, 503),
            summary="Disclosure requests addressed to this platform (own platform or regulator)")
def disclosure_requests(node: NodeDep, member: MemberDep) -> list[DisclosureRequestPublic]:
    """Every disclosure request addressed to this platform, read from the chain, oldest
    first, with whether it is fulfilled on chain and whether this node holds the answer.

    Needs an SM2-signed request from this log's own platform or a regulator.
    """
    require_owner_or_regulator(member, node, "disclosure requests")
    return [DisclosureRequestPublic.of(request, stored)
            for request, stored in node.disclosure_requests()]


@router.post(
    "/{request_id}/response",
    response_model=DisclosureFulfilment,
    status_code=201,
    responses={200: {"model": DisclosureFulfilment,
                     "description": "Already answered with this response (idempotent)"},
               **problem_responses(401, 403, 404, 409, 413, 422, 503)},
    summary="Answer a disclosure request with a sealed response (own platform only, signed)",
)
def answer_disclosure(request_id: RequestIdPath, body: DisclosureResponseCreate,
                      node: NodeDep, member: MemberDep) -> JSONResponse:
    """Store the sealed response durably, then log ``SM3(response)`` on chain with
    ``fulfilDisclosure`` from this platform's account.

    Only this log's own platform may answer (the node never holds records: the platform's
    system seals the opening for the requesting regulator). The request must exist on chain
    (404 ``unknown-disclosure-request``), be addressed to this platform (403
    ``disclosure-not-addressed``) and name a commitment in this log (422
    ``commitment-not-in-log``); the response must be sealed for the requesting regulator's
    registered key (422 ``invalid-disclosure-response``). The same response again is 200
    with the same answer; a different one is 409 ``disclosure-conflict``.
    """
    if member.role is not Role.PLATFORM or \
            member.address.lower() != node.platform_address.lower():
        raise Forbidden(
            f"{member.address} ({member.role.name.lower()} {member.name}) may not answer "
            f"disclosure requests at {node.platform}'s node: only {node.platform} may"
        )
    answer = node.answer_disclosure(request_id, bytes.fromhex(body.response), index=body.index)
    return JSONResponse(DisclosureFulfilment.of(answer.stored).model_dump(mode="json"),
                        status_code=201 if answer.created else 200)


@router.get(
    "/{request_id}/response",
    response_model=DisclosureResponsePublic,
    responses=problem_responses(401, 403, 404, 422),
    summary="The sealed answer to a disclosure request (regulator or own platform, signed)",
)
def disclosure_response(request_id: RequestIdPath, node: NodeDep, member: MemberDep
                        ) -> DisclosureResponsePublic:
    """The sealed response stored here and logged on chain; only the regulator whose key it
    was sealed for can open it. 404 ``disclosure-not-answered`` until then."""
    require_owner_or_regulator(member, node, "disclosure responses")
    return DisclosureResponsePublic.of(node.disclosure_response(request_id))
