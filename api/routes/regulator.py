"""Routes of the regulator node: health, ingest state, faults, trace, alerts, disclosures,
case files, and a platform's read of its own verified leaves. Everything but health needs a
signed request from a regulator member, except ``GET /v1/logs/{log_id}/leaves``, which the
platform owning the log may sign too (to restore its store)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import request_target
from api.errors import ProblemException
from api.problems import PROBLEM_MEDIA_TYPE, ProblemFactory
from api.ratelimit import limit_member
from api.regulator_schemas import (
    AlertList,
    AlertWithEvidence,
    CaseFilePublic,
    CollectedDisclosurePublic,
    CommitmentTrace,
    DisclosureList,
    FaultList,
    FaultPublic,
    IdentityTrace,
    IngestRound,
    IngestStatus,
    ListedDisclosure,
    LogProgressPublic,
    RegulatorDisclosurePublic,
    RegulatorHealth,
)
from api.routes.common import MAX_STORED_INT, DigestPath, RequestIdPath, problem_responses
from api.routes.logs import MAX_RANGE, leaves_json
from api.schemas import CryptoPublic, LeafRangePublic, ProblemPublic
from ledger_node.chain.adapter import Role
from ledger_node.crypto.gmcrypto import crypto_backends
from ledger_node.errors import Forbidden, InvalidLeafRange, LeafRangeUnavailable
from ledger_node.protocol.auth import AuthenticatedMember, RequestAuthenticator
from ledger_node.protocol.escrow import identity_key
from ledger_node.regulator.node import NumberedAlert, RegulatorNode

router = APIRouter(prefix="/v1", tags=["regulator"])
_HEX32 = r"^[0-9a-fA-F]{64}$"


def get_regulator(request: Request) -> RegulatorNode:
    """The regulator node this app serves."""
    regulator: RegulatorNode = request.app.state.regulator
    return regulator


RegulatorDep = Annotated[RegulatorNode, Depends(get_regulator)]


async def regulator_member(request: Request) -> AuthenticatedMember:
    """The regulator member who signed this request; 401/403 problem otherwise."""
    authenticator: RequestAuthenticator = request.app.state.authenticator
    body = await request.body()
    return await run_in_threadpool(
        authenticator.authenticate, request.method, request_target(request), request.headers,
        body, roles=(Role.REGULATOR,),
    )


SignedRegulator = Annotated[AuthenticatedMember, Depends(regulator_member)]


def limited_regulator(request: Request, member: SignedRegulator) -> AuthenticatedMember:
    """The signing regulator of an expensive request, within its rate (429 beyond it)."""
    return limit_member(request, member)


LimitedRegulator = Annotated[AuthenticatedMember, Depends(limited_regulator)]
"""A signed regulator request on an expensive route: traces, case files, alert evidence,
an ingest round (:mod:`api.ratelimit`)."""


async def platform_or_regulator_member(request: Request) -> AuthenticatedMember:
    """The platform or regulator member who signed this request; 401/403 problem otherwise
    (whether a platform may read the log asked for is the route's check)."""
    authenticator: RequestAuthenticator = request.app.state.authenticator
    body = await request.body()
    return await run_in_threadpool(
        authenticator.authenticate, request.method, request_target(request), request.headers,
        body, roles=(Role.PLATFORM, Role.REGULATOR),
    )


SignedPlatformOrRegulator = Annotated[AuthenticatedMember,
                                      Depends(platform_or_regulator_member)]


class TraceRequest(BaseModel):
    """Whom to trace: a real-name identity (hashed here, never stored) or its identity key."""

    model_config = ConfigDict(extra="forbid")
    identity: str | None = Field(default=None, min_length=1, max_length=256)
    identity_key: str | None = Field(default=None, pattern=_HEX32)


class DisclosureRequestBody(BaseModel):
    """Ask the platform holding ``commitment`` to open it for case ``case_id``."""

    model_config = ConfigDict(extra="forbid")
    commitment: str = Field(pattern=_HEX32)
    case_id: str = Field(pattern=_HEX32)


class CaseFileRequest(BaseModel):
    """What goes in a case file: alerts on these identities, these records, the case's
    collected disclosures."""

    model_config = ConfigDict(extra="forbid")
    case_id: str = Field(pattern=_HEX32)
    identities: list[str] = Field(default_factory=list, max_length=1000)
    refs: list[str] = Field(default_factory=list, max_length=10_000)


_TRACE_EXAMPLE = {"identity": "110101199003070011"}
_PENDING: dict[int | str, dict[str, Any]] = {202: {
    "model": ProblemPublic, "content": {PROBLEM_MEDIA_TYPE: {}},
    "description": "Not fulfilled on chain yet: a proof-pending problem with Retry-After"}}


@router.get("/health", response_model=RegulatorHealth,
            summary="Regulator node health (no authentication)")
def health(regulator: RegulatorDep) -> RegulatorHealth:
    """Counts only: how many logs are followed, how far behind, how many faults."""
    return RegulatorHealth.of(regulator.config.name, regulator.progress(),
                              len(regulator.faults()), regulator.last_error,
                              CryptoPublic(**crypto_backends()))


@router.get("/ingest", response_model=IngestStatus, responses=problem_responses(401, 403),
            summary="Each followed log: verified size against the newest anchored size")
def ingest(regulator: RegulatorDep, member: SignedRegulator) -> IngestStatus:
    """Ingest progress per platform log, and SM2 decryptions so far (one per batch)."""
    return IngestStatus(logs=[LogProgressPublic.of(p) for p in regulator.progress()],
                        records=regulator.record_count(),
                        sm2_decryptions=regulator.sm2_decryptions)


@router.post("/ingest", response_model=IngestRound, responses=problem_responses(401, 403, 429),
             summary="Follow the chain and ingest now (instead of waiting for the next round)")
def ingest_now(regulator: RegulatorDep, member: LimitedRegulator) -> IngestRound:
    """Run one follow-and-ingest round; answers how many leaves were added."""
    added = regulator.sync()
    return IngestRound(added=added, logs=[LogProgressPublic.of(p) for p in regulator.progress()])


@router.get(
    "/logs/{log_id}/leaves",
    response_model=LeafRangePublic,
    responses=problem_responses(401, 403, 404, 416, 422, 503),
    summary="A platform's own verified leaves [start, end) with escrows, read back (signed)",
)
def own_leaves(
    log_id: DigestPath,
    regulator: RegulatorDep,
    member: SignedPlatformOrRegulator,
    start: Annotated[int, Query(ge=0, le=MAX_STORED_INT, description="first index")],
    end: Annotated[int, Query(ge=1, le=MAX_STORED_INT, description="one past the last index")],
) -> Response:
    """Leaves ``start..end-1`` of a followed log as this regulator verified them against the
    anchored roots, escrows included, each re-checked before it is sent: how a platform
    whose store lost its tail or holds damaged rows restores them (``jointledger fsck
    --repair-from``), checking them against the chain again itself.

    Needs an SM2-signed request (``X-JL-*`` headers, audience this regulator node) from the
    platform that owns the log, or a regulator; ``size`` is the verified size. ``end -
    start`` is 1..10,000 (422 ``invalid-range``); ``end`` may not pass the verified size
    (416 ``range-not-satisfiable``, with ``size``).
    """
    wanted = bytes.fromhex(log_id)
    state = regulator.log_state(wanted)
    if state is None:
        raise ProblemException("unknown-log", f"log {log_id.lower()} is not followed here")
    if member.role is not Role.REGULATOR and member.address.lower() != (
            state.platform_address.lower()):
        raise Forbidden(f"{member.address} ({member.name}) may not read {state.platform}'s "
                        f"leaves: only {state.platform} and regulators may")
    if end <= start or end - start > MAX_RANGE:
        raise InvalidLeafRange(f"a range [start, end) holds 1..{MAX_RANGE} leaves, got "
                               f"[{start}, {end})")
    try:
        state, leaves = regulator.own_leaves(wanted, start, end)
    except LeafRangeUnavailable as exc:
        raise ProblemException("range-not-satisfiable", str(exc),
                               extensions={"size": exc.size}) from None
    head = (f'{{"log_id":"{state.log_id.hex()}","platform":{json.dumps(state.platform)},'
            f'"hash":"{state.hash_name}","start":{start},"end":{end},'
            f'"size":{state.verified_size},"leaves":[')
    return Response(head + leaves_json(leaves) + "]}", media_type="application/json")


@router.get("/faults", response_model=FaultList, responses=problem_responses(401, 403),
            summary="Data refused from platform nodes, and unreadable escrows")
def faults(regulator: RegulatorDep, member: SignedRegulator) -> FaultList:
    """Every fault: which platform, which log, which range, what was wrong."""
    return FaultList(faults=[FaultPublic.of(f) for f in regulator.faults()])


@router.post("/trace/identity", response_model=IdentityTrace,
             responses=problem_responses(401, 403, 422, 429),
             summary="Every record of one identity on every platform, with proof bundles")
def trace_identity(
    regulator: RegulatorDep, member: LimitedRegulator,
    body: Annotated[TraceRequest, Body(openapi_examples={"identity": {
        "summary": "by resident identity number", "value": _TRACE_EXAMPLE}})],
) -> IdentityTrace:
    """Give exactly one of ``identity`` (normalised and hashed to its identity key here) or
    ``identity_key``. The identity travels in the body, never in a URL."""
    if (body.identity is None) == (body.identity_key is None):
        raise ProblemException("bad-request", "give exactly one of identity and identity_key")
    key = (identity_key(body.identity) if body.identity is not None
           else bytes.fromhex(body.identity_key or ""))
    return IdentityTrace.of(key, regulator.trace_identity(key))


@router.get("/trace/commitment/{commitment}", response_model=CommitmentTrace,
            responses=problem_responses(401, 403, 422, 429),
            summary="The identities behind one commitment")
def trace_commitment(commitment: DigestPath, regulator: RegulatorDep,
                     member: LimitedRegulator) -> CommitmentTrace:
    """The record(s) with this commitment, their decrypted payments and proof bundles."""
    wanted = bytes.fromhex(commitment)
    return CommitmentTrace.of(wanted, regulator.trace_commitment(wanted))


@router.get("/alerts", response_model=AlertList, responses=problem_responses(401, 403),
            summary="AML alerts over everything ingested")
def alerts(regulator: RegulatorDep, member: SignedRegulator,
           rule: Annotated[str | None, Query(max_length=64)] = None) -> AlertList:
    """Alerts in a stable order, each with its number (from 1, kept across restarts and
    recomputations); ``GET /v1/alerts/{id}`` gives one with its evidence."""
    found = [n for n in regulator.numbered_alerts()
             if rule is None or n.alert.rule == rule or n.alert.rule.startswith(f"{rule}.")]
    return AlertList.of(found)


@router.get("/alerts/{alert_id}", response_model=AlertWithEvidence,
            responses=problem_responses(401, 403, 404, 429),
            summary="One alert with its evidence: records, proof bundles, checkpoints")
def alert(alert_id: Annotated[int, Path(ge=1, le=2**31)], regulator: RegulatorDep,
          member: LimitedRegulator) -> AlertWithEvidence:
    """The alert and each record it rests on with its proof bundle (checkpoint on chain)."""
    chosen = regulator.alert(alert_id)
    return AlertWithEvidence.of(NumberedAlert(alert_id, chosen),
                                regulator.alert_evidence(chosen))


@router.post("/disclosures", status_code=201, response_model=RegulatorDisclosurePublic,
             responses=problem_responses(401, 403, 404, 422),
             summary="Log on chain a request that a platform open a commitment")
def request_disclosure(body: DisclosureRequestBody, regulator: RegulatorDep,
                       member: SignedRegulator) -> RegulatorDisclosurePublic:
    """The request (regulator, commitment, case id) goes on chain; the platform answers
    off chain with the opening sealed for the regulator."""
    request_id = regulator.request_disclosure(bytes.fromhex(body.commitment),
                                              bytes.fromhex(body.case_id))
    stored = regulator.disclosure(request_id)
    assert stored is not None
    return RegulatorDisclosurePublic.of(stored)


@router.get("/disclosures", response_model=DisclosureList,
            responses=problem_responses(401, 403),
            summary="Disclosure requests this regulator made, collected or not")
def list_disclosures(regulator: RegulatorDep, member: SignedRegulator) -> DisclosureList:
    """Each request with whether its verified opening has been collected."""
    return DisclosureList(disclosures=[ListedDisclosure.of(d) for d in regulator.disclosures()])


@router.post("/disclosures/{request_id}/collect", response_model=CollectedDisclosurePublic,
             responses=_PENDING | problem_responses(401, 403, 404, 422),
             summary="Fetch, check and keep the platform's answer")
def collect_disclosure(request_id: RequestIdPath, request: Request, regulator: RegulatorDep,
                       member: SignedRegulator) -> CollectedDisclosurePublic | JSONResponse:
    """200 with the verified opening; 202 with ``Retry-After`` while the platform has not
    fulfilled the request on chain; 422 problem if the answer fails a check."""
    collected = regulator.collect_disclosure(request_id)
    if collected is None:
        problems: ProblemFactory = request.app.state.problems
        return problems.response(
            "proof-pending", f"disclosure request {request_id} is not fulfilled on chain yet",
            request.url.path, headers={"Retry-After": "1"}, retry_after=1)
    return CollectedDisclosurePublic.of(collected)


@router.post("/cases", response_model=CaseFilePublic,
             responses=problem_responses(401, 403, 404, 422, 429),
             summary="Build a self-contained case file")
def case_file(body: CaseFileRequest, regulator: RegulatorDep,
              member: LimitedRegulator) -> CaseFilePublic:
    """Alerts on ``identities`` (hex identity keys), the records they rest on plus ``refs``,
    and the case's collected disclosures, each with its proof."""
    identities = []
    for value in body.identities:
        try:
            key = bytes.fromhex(value)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ProblemException("bad-request", f"identity {value!r} is not 64 hex digits")
        identities.append(key)
    return CaseFilePublic.of(regulator.case_file(bytes.fromhex(body.case_id),
                                                 identities=identities, refs=body.refs))
