"""The web console of the regulator node: its static page, its JSON API and its login.

* ``GET /console/`` and ``/console/assets/<file>`` serve the plain HTML/CSS/JS of
  ``api/console/`` (no build step, nothing from the internet).
* ``/console/api/*`` answers the page. Without a session it is the **auditor view**: only
  what the chain holds or anyone could verify (checkpoints, anchoring latency, volume from
  checkpoint sizes, the disclosure log, verification of documents against the chain). A
  **regulator session** adds alerts, records with their decrypted payments, traces and
  faults.
* ``POST /v1/console/sessions`` (SM2-signed by a regulator member, like the rest of
  ``/v1``) issues a one-time login token that the page exchanges for a session cookie
  (:mod:`api.console_session`). Every regulator-only call re-checks the session's member
  against the chain's membership: no session is 401, a removed member 403.

Every response under ``/console`` carries a strict Content-Security-Policy, ``nosniff`` and
``no-referrer``; state-changing calls need the ``X-JL-Console: 1`` header (CSRF).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.console_session import ConsoleSession, ConsoleSessions
from api.errors import ProblemException
from api.problems import ProblemFactory
from api.ratelimit import limit_member
from api.regulator_schemas import ConsoleLogin
from api.routes.common import MAX_STORED_INT, problem_responses
from api.routes.regulator import RegulatorDep, SignedRegulator, TraceRequest
from ledger_node.chain.adapter import Role
from ledger_node.errors import (
    Forbidden,
    InvalidBundle,
    InvalidCaseFile,
    Unauthenticated,
    UnknownPlatform,
)
from ledger_node.jsonfields import show
from ledger_node.protocol.auth import AuthenticatedMember, RequestAuthenticator
from ledger_node.protocol.bundle import (
    BUNDLE_FORMAT,
    CHECK_NAMES,
    CHECK_STRUCTURE,
    ProofBundle,
    verify_bundle,
)
from ledger_node.protocol.escrow import identity_key
from ledger_node.regulator import console_view
from ledger_node.regulator.casefile import (
    CASE_FILE_FORMAT,
    CaseReport,
    is_case_file,
    parse_case_file,
)
from ledger_node.regulator.node import NumberedAlert, RegulatorNode, TracedRecord
from ledger_node.regulator.store import StoredAnchor, parse_evidence_ref

_log = logging.getLogger(__name__)

COOKIE: Final = "jl_console"
CSRF_HEADER: Final = "X-JL-Console"
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'")
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
ASSETS_DIR: Final = Path(__file__).resolve().parent.parent / "console"
CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}
_REF: Final = r"^[a-z][a-z0-9_-]{0,31}/[0-9a-fA-F]{64}/[0-9]{1,19}$"
_LOG_ID: Final = r"^[0-9a-fA-F]{64}$"
_ASSET_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")
DEFAULT_CHECKPOINTS: Final = 200
MAX_CHECKPOINTS: Final = 5_000
MAX_BUCKET_S: Final = 7 * 86_400

signed_router = APIRouter(prefix="/v1", tags=["console"])
router = APIRouter(prefix="/console", tags=["console"])


# --------------------------------------------------------------------------------------
# Headers and CSRF
# --------------------------------------------------------------------------------------


class ConsoleHeadersMiddleware:
    """Add the console's security headers (CSP, nosniff, no-referrer) to every response
    under ``/console`` and to the login endpoint; JSON answers are also ``no-store``."""

    def __init__(self, app: ASGIApp, problems: ProblemFactory) -> None:
        """Wrap ``app``; ``problems`` builds the 500 answer for an error nothing handled."""
        self.app = app
        self.problems = problems

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; add the headers to the response start of console paths."""
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not (path == "/console" or path.startswith("/console/")
                                           or path == "/v1/console/sessions"):
            await self.app(scope, receive, send)
            return
        no_store = not path.startswith("/console/assets/") and path != "/console/"
        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in {h for h, _ in SECURITY_HEADERS}]
                headers += list(SECURITY_HEADERS)
                if no_store:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        except Exception:
            # Starlette answers unhandled errors outside every middleware, without these
            # headers: answer here instead, as the app's own handler would
            if started:
                raise
            _log.exception("unhandled error in %s %s", scope.get("method", ""), path)
            response = self.problems.response(
                "internal-error", "the node failed to handle the request; it has been logged",
                path)
            await response(scope, receive, with_headers)


def require_console_header(request: Request) -> None:
    """CSRF guard of state-changing calls: ``X-JL-Console: 1``, and a JSON body if any.

    A page of another origin cannot send a custom header without a CORS preflight, which
    this app never grants; the session cookie is also ``SameSite=Strict``.
    """
    if request.headers.get(CSRF_HEADER) != "1":
        raise Forbidden(f"console calls that change state need the header {CSRF_HEADER}: 1")
    content_type = request.headers.get("content-type", "")
    has_body = request.headers.get("content-length", "0") not in ("", "0") or (
        "transfer-encoding" in request.headers)
    if (request.method == "POST" or has_body) and not content_type.split(";")[0].strip(
            ).lower() == "application/json":
        raise Forbidden("console calls that change state must send application/json, "
                        f"not {content_type or 'no content type'!r}")


CsrfChecked = Annotated[None, Depends(require_console_header)]


# --------------------------------------------------------------------------------------
# Who is looking
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """The console's viewer: a regulator with a live session, or an auditor (nobody)."""

    member: AuthenticatedMember | None

    @property
    def is_regulator(self) -> bool:
        """Whether the viewer may see the regulator's data."""
        return self.member is not None

    def to_json(self) -> dict[str, Any]:
        """``{"role", "member", "name"}``."""
        if self.member is None:
            return {"role": "auditor", "member": None, "name": None}
        return {"role": "regulator", "member": self.member.address, "name": self.member.name}


def get_sessions(request: Request) -> ConsoleSessions:
    """The app's console session store."""
    sessions: ConsoleSessions = request.app.state.console_sessions
    return sessions


def _live_session(request: Request) -> tuple[str, ConsoleSession] | None:
    session_id = request.cookies.get(COOKIE)
    if not session_id:
        return None
    session = get_sessions(request).session(session_id)
    return None if session is None else (session_id, session)


def _still_regulator(request: Request, member: AuthenticatedMember) -> None:
    """Raise :class:`Forbidden` unless the chain still has ``member`` as an active regulator."""
    authenticator: RequestAuthenticator = request.app.state.authenticator
    record = authenticator.member(member.address)
    if not record.active or record.role is Role.NONE:
        raise Forbidden(f"{member.address} ({member.name}) has been removed from the "
                        "consortium; the console session no longer opens the regulator view")
    if record.role is not Role.REGULATOR:
        raise Forbidden(f"{member.address} is now a {record.role.name.lower()}; only "
                        "regulators see the regulator view")


def console_viewer(request: Request) -> Viewer:
    """The viewer of a public console call: the session's regulator if it is still one,
    else an auditor (a session whose member was removed is ended)."""
    live = _live_session(request)
    if live is None:
        return Viewer(None)
    session_id, session = live
    try:
        _still_regulator(request, session.member)
    except Forbidden:
        get_sessions(request).end(session_id)
        return Viewer(None)
    return Viewer(session.member)


def console_regulator(request: Request) -> AuthenticatedMember:
    """The regulator of a regulator-only console call: 401 without a live session, 403
    when the session's member is no longer an active regulator on chain."""
    live = _live_session(request)
    if live is None:
        raise Unauthenticated("this console page needs a regulator session: run "
                              "jointledger console-login and open the URL it prints")
    _still_regulator(request, live[1].member)
    return live[1].member


ViewerDep = Annotated[Viewer, Depends(console_viewer)]
RegulatorSession = Annotated[AuthenticatedMember, Depends(console_regulator)]


def limited_console_regulator(request: Request, member: RegulatorSession
                              ) -> AuthenticatedMember:
    """The session's regulator on an expensive console call, within the member's rate (the
    same bucket as its signed requests: :mod:`api.ratelimit`)."""
    return limit_member(request, member)


LimitedSession = Annotated[AuthenticatedMember, Depends(limited_console_regulator)]


# --------------------------------------------------------------------------------------
# Login
# --------------------------------------------------------------------------------------


@signed_router.post("/console/sessions", status_code=201, response_model=ConsoleLogin,
                    responses=problem_responses(401, 403),
                    summary="A one-time console login token for the signing regulator")
def console_login(request: Request, member: SignedRegulator) -> ConsoleLogin:
    """The token is valid once, for a minute; ``jointledger console-login`` prints the URL
    (``login_path`` on this node) that hands it to the console page."""
    sessions = get_sessions(request)
    token = sessions.issue_token(member)
    return ConsoleLogin(login_path=f"/console/#login={token}",
                        expires_in_s=int(sessions.token_ttl_s))


class SessionRequest(BaseModel):
    """The login token ``console-login`` printed (the URL's ``#login=`` part)."""

    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=200)


@router.post("/api/session", responses=problem_responses(401, 403, 422),
             summary="Exchange a login token for a session cookie")
def open_session(body: SessionRequest, request: Request, _: CsrfChecked) -> JSONResponse:
    """Spend the token; set the ``jl_console`` cookie (HttpOnly, SameSite=Strict)."""
    sessions = get_sessions(request)
    session_id, session = sessions.exchange(body.token)
    try:
        _still_regulator(request, session.member)
    except Forbidden:
        sessions.end(session_id)
        raise
    response = JSONResponse(Viewer(session.member).to_json())
    response.set_cookie(COOKIE, session_id, max_age=int(sessions.session_ttl_s),
                        path="/console", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.get("/api/session", summary="Who is looking: auditor, or the session's regulator")
def current_session(viewer: ViewerDep) -> dict[str, Any]:
    """``{"role": "auditor"|"regulator", "member", "name"}``."""
    return viewer.to_json()


@router.delete("/api/session", status_code=204, responses=problem_responses(403),
               summary="Log out: end the session, clear the cookie")
def close_session(request: Request, _: CsrfChecked) -> Response:
    """Ends the session if there is one; always clears the cookie."""
    live = _live_session(request)
    if live is not None:
        get_sessions(request).end(live[0])
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response


# --------------------------------------------------------------------------------------
# Public data (auditor and regulator)
# --------------------------------------------------------------------------------------


def _anchors_by_log(regulator: RegulatorNode) -> dict[bytes, list[StoredAnchor]]:
    by_log: dict[bytes, list[StoredAnchor]] = {}
    for anchor in regulator.all_anchors():
        by_log.setdefault(anchor.log_id, []).append(anchor)
    return by_log


def _points(anchors: Sequence[StoredAnchor]) -> list[console_view.AnchorPoint]:
    return [console_view.AnchorPoint(a.tree_size, a.timestamp, a.block_time) for a in anchors]


@router.get("/api/overview", summary="The regulator node, the chain head and every log")
def overview(regulator: RegulatorDep, viewer: ViewerDep) -> dict[str, Any]:
    """Per log: anchored and verified sizes, checkpoints, the last anchoring block's time;
    the head block, its time and how far it runs ahead of this node's clock.
    ``records`` and ``faults`` only for a regulator session (null otherwise)."""
    head, head_time = regulator.chain.head()
    by_log = _anchors_by_log(regulator)
    logs = []
    for state in regulator.logs():
        anchors = by_log.get(state.log_id, [])
        logs.append({
            "platform": state.platform, "log_id": state.log_id.hex(),
            "shard": console_view.shard_of(state.platform, state.log_id),
            "anchored_size": max((a.tree_size for a in anchors), default=0),
            "verified_size": state.verified_size, "checkpoints": len(anchors),
            "last_block_time": max((a.block_time for a in anchors), default=None),
        })
    return {
        "regulator": regulator.config.name,
        "chain_id": regulator.chain.deployment.chain_id,
        "contract": regulator.chain.deployment.address,
        "head_block": head,
        "head_block_time": head_time,
        # How far the chain's clock runs ahead of this node's: an embedded chain that mines
        # more than one block a second moves each block a second past its parent, so its
        # block times (and the anchoring latencies read from them) run ahead of real time.
        "chain_clock_ahead_s": max(0, head_time - int(time.time())),
        "records": regulator.record_count() if viewer.is_regulator else None,
        "logs": logs,
        "faults": len(regulator.faults()) if viewer.is_regulator else None,
    }


@router.get("/api/checkpoints", responses=problem_responses(404, 422),
            summary="Each log's newest anchored checkpoints, oldest first; pages backwards")
def checkpoints(
    regulator: RegulatorDep,
    platform: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CHECKPOINTS)] = DEFAULT_CHECKPOINTS,
    log_id: Annotated[str | None, Query(pattern=_LOG_ID, description=(
        "only this log (64 hex digits)"))] = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_STORED_INT, description=(
        "only checkpoints with a tree size below this (the next older page)"))] = None,
) -> dict[str, Any]:
    """Per checkpoint: size, root, signed time, anchoring block and its time, the latency
    between them, the transaction, and whether the regulator verified it against the leaves.
    Per log, ``older`` says whether checkpoints older than the ones shown exist: the next
    page is ``log_id=<log>&before=<smallest tree size shown>``."""
    states = [s for s in regulator.logs() if platform is None or s.platform == platform]
    if platform is not None and not states:
        raise UnknownPlatform(f"no log of platform {platform!r} is anchored on chain")
    if log_id is not None:
        states = [s for s in states if s.log_id.hex() == log_id.lower()]
        if not states:
            where = "" if platform is None else f" of platform {platform!r}"
            raise ProblemException("unknown-log", f"no log {log_id.lower()}{where} is "
                                   "anchored on chain")
    by_log = _anchors_by_log(regulator)
    logs = []
    for state in states:
        page = console_view.page_before(by_log.get(state.log_id, []),
                                        lambda a: a.tree_size, before, limit)
        logs.append({"platform": state.platform, "log_id": state.log_id.hex(), "checkpoints": [
            {"tree_size": a.tree_size, "root": a.root.hex(), "timestamp": a.timestamp,
             "block_number": a.block_number, "block_time": a.block_time,
             "latency_s": a.block_time - a.timestamp, "tx_hash": "0x" + a.tx_hash.hex(),
             "verified": a.tree_size <= state.verified_size}
            for a in page.checkpoints], "older": page.older})
    return {"logs": logs}


@router.get("/api/charts", responses=problem_responses(422),
            summary="Volume per platform over time, anchoring latency, alerts by rule")
def charts(regulator: RegulatorDep, viewer: ViewerDep,
           bucket_s: Annotated[int, Query(ge=1, le=MAX_BUCKET_S)] = 60) -> dict[str, Any]:
    """Volume is records anchored per bucket (checkpoint size deltas by block time, all
    platforms over one time range); ``bucket_s`` is widened if the range would need more
    than 2,000 buckets. ``alerts_by_rule`` only for a regulator session."""
    by_log = _anchors_by_log(regulator)
    states = regulator.logs()
    times = [a.block_time for anchors in by_log.values() for a in anchors]
    bucket = console_view.chart_bucket(times, bucket_s)
    span = (min(times), max(times)) if times else None
    by_platform: dict[str, list[console_view.AnchorPoint]] = {}
    volume: dict[str, dict[int, int]] = {}
    for state in states:  # a platform with several shards: one series, summed over logs
        points = _points(by_log.get(state.log_id, []))
        by_platform.setdefault(state.platform, []).extend(points)
        series = volume.setdefault(state.platform, {})
        for point in console_view.volume_series(points, bucket, span):
            series[point.t] = series.get(point.t, 0) + point.records
    return {
        "bucket_s": bucket,
        "volume": [{"platform": name, "points": [{"t": t, "records": n}
                                                 for t, n in sorted(series.items())]}
                   for name, series in volume.items()],
        "latency": [{"platform": name, "points": [
            {"t": p.t, "latency_s": p.latency_s}
            for p in sorted(console_view.latency_series(points), key=lambda p: p.t)]}
            for name, points in by_platform.items()],
        "alerts_by_rule": (console_view.rule_counts(a.rule for a in regulator.alerts())
                           if viewer.is_regulator else None),
    }


@router.get("/api/disclosures", responses=problem_responses(422),
            summary="The on-chain disclosure log, newest first")
def disclosures(
    regulator: RegulatorDep, viewer: ViewerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_CHECKPOINTS)] = DEFAULT_CHECKPOINTS,
) -> dict[str, Any]:
    """The newest ``limit`` disclosure requests on chain (any regulator's); ``collected``
    (this regulator holds a verified opening) only for a regulator session."""
    newest = regulator.chain.disclosure_request_count()
    requests = [regulator.chain.disclosure_request(i)
                for i in range(newest, max(newest - limit, 0), -1)]
    names = {m.address.lower(): m.name for m in regulator.chain.members()}
    out = []
    for r in requests:
        collected: bool | None = None
        if viewer.is_regulator:
            stored = regulator.disclosure(r.id)
            collected = stored is not None and stored.opening is not None
        out.append({
            "id": r.id, "regulator": names.get(r.regulator.lower(), r.regulator),
            "regulator_address": r.regulator,
            "platform": names.get(r.platform.lower(), r.platform),
            "platform_address": r.platform, "commitment": r.commitment.hex(),
            "case_reference": r.case_id.hex(), "requested_block": r.requested_block,
            "fulfilled": r.fulfilled,
            "fulfilled_block": r.fulfilled_block if r.fulfilled else None,
            "response_digest": r.response_digest.hex() if r.fulfilled else None,
            "collected": collected,
        })
    return {"total": newest, "requests": out}


# --------------------------------------------------------------------------------------
# Verify a dropped document
# --------------------------------------------------------------------------------------


def _check_rows(checks: Sequence[Any], prefix: str = "") -> list[dict[str, str]]:
    return [{"name": prefix + c.name, "status": c.status.value, "detail": c.detail}
            for c in checks]


def _malformed(kind: str, detail: str, names: Sequence[str]) -> dict[str, Any]:
    """The verdict on a document of a known format that does not parse."""
    rows = [{"name": CHECK_STRUCTURE, "status": "failed", "detail": detail}]
    rows += [{"name": n, "status": "not_run", "detail": f"not run: {CHECK_STRUCTURE} did not "
              "pass"} for n in names if n != CHECK_STRUCTURE]
    return {"kind": kind, "valid": False, "summary": f"INVALID: {CHECK_STRUCTURE}: {detail}",
            "checks": rows}


def _case_checks(report: CaseReport) -> list[dict[str, str]]:
    rows = _check_rows(report.checks)
    for item in report.items:
        rows += _check_rows(item.checks, prefix=f"{item.where} ({item.label}) ")
    return rows


def verify_document(regulator: RegulatorNode, document: Any,
                    open_escrows: bool) -> dict[str, Any]:
    """The console's verdict on a proof bundle or a case file, checked against the chain
    (never the regulator's store); with ``open_escrows`` the node's keys decrypt a case
    file's escrows."""
    if is_case_file(document):
        try:
            case = parse_case_file(document)
        except InvalidCaseFile as exc:
            return _malformed("case_file", str(exc), ())
        report = regulator.verify_case_file(case, open_escrows=open_escrows)
        return {"kind": "case_file", "valid": report.valid, "summary": report.summary,
                "checks": _case_checks(report), "counts": report.counts(),
                "regulator_key": report.regulator_key,
                "deployment_pinned": report.deployment_pinned}
    try:
        bundle = ProofBundle.from_json(document)
    except InvalidBundle as exc:
        return _malformed("bundle", str(exc), CHECK_NAMES)
    verdict = verify_bundle(bundle, chain=regulator.chain)
    return {"kind": "bundle", "valid": verdict.valid, "summary": verdict.summary,
            "checks": _check_rows(verdict.checks), "mode": verdict.mode,
            "deployment_pinned": verdict.deployment_pinned,
            "root": None if verdict.root is None else verdict.root.hex()}


def parse_document(body: bytes) -> Any:
    """The JSON document of a verify request; 422 problem if it is not JSON of a known
    format (proof bundle or case file)."""
    try:
        document = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProblemException("validation-error", f"the document is not UTF-8 text: {exc}"
                               ) from None
    except json.JSONDecodeError as exc:
        raise ProblemException("validation-error", f"the document is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ProblemException("validation-error", "the document is not a JSON object: a "
                               "proof bundle or a case file is one")
    if "format" not in document:
        raise ProblemException("validation-error", "the document has no \"format\": expected "
                               f"{BUNDLE_FORMAT!r} or {CASE_FILE_FORMAT!r}")
    if document["format"] not in (BUNDLE_FORMAT, CASE_FILE_FORMAT):
        raise ProblemException("validation-error", f"unknown format {show(document['format'])}"
                               f": expected {BUNDLE_FORMAT!r} or {CASE_FILE_FORMAT!r}")
    return document


@router.post("/api/verify", responses=problem_responses(403, 422),
             summary="Verify a proof bundle or a case file against the chain")
async def verify(request: Request, regulator: RegulatorDep, _: CsrfChecked) -> dict[str, Any]:
    """The body is the document itself. A case file is checked with the regulator's keys
    (escrows and sealed answers decrypted) only in a regulator session."""
    document = parse_document(await request.body())
    viewer = await run_in_threadpool(console_viewer, request)
    result: dict[str, Any] = await run_in_threadpool(verify_document, regulator, document,
                                                     viewer.is_regulator)
    return result


# --------------------------------------------------------------------------------------
# Regulator only
# --------------------------------------------------------------------------------------


def record_json(traced: TracedRecord) -> dict[str, Any]:
    """A record as the console shows it: where, the commitment, the payment, the bundle."""
    return traced.to_json() | {"commitment": traced.record.commitment.hex()}


def console_alert_json(regulator: RegulatorNode, numbered: NumberedAlert) -> dict[str, Any]:
    """An alert as ``GET /v1/alerts`` gives it (:meth:`NumberedAlert.to_json`), plus
    ``basis``: the settings it was raised under, from which the page explains it in the
    reader's language with amounts in yuan (``detail`` is the protocol's English sentence in
    fen, kept for machines and files)."""
    return numbered.to_json() | {
        "basis": console_view.alert_basis(numbered.alert.rule, regulator.config.aml)}


@router.get("/api/alerts", responses=problem_responses(401, 403),
            summary="AML alerts (regulator session)")
def alerts(regulator: RegulatorDep, member: RegulatorSession) -> dict[str, Any]:
    """Every alert with its number (from 1, kept across restarts), as ``GET /v1/alerts``,
    and the basis it was raised on."""
    return {"alerts": [console_alert_json(regulator, n) for n in regulator.numbered_alerts()]}


@router.get("/api/alerts/{alert_id}", responses=problem_responses(401, 403, 404, 422, 429),
            summary="One alert with its records across platforms (regulator session)")
def alert(alert_id: Annotated[int, PathParam(ge=1, le=2**31)], regulator: RegulatorDep,
          member: LimitedSession) -> dict[str, Any]:
    """The alert and each record it rests on, with payment and proof bundle."""
    chosen = regulator.alert(alert_id)
    return {"alert": console_alert_json(regulator, NumberedAlert(alert_id, chosen)),
            "records": [record_json(r) for r in regulator.alert_evidence(chosen)]}


@router.get("/api/records/{ref:path}", responses=problem_responses(401, 403, 404, 422),
            summary="One record by reference platform/log_id/index (regulator session)",
            include_in_schema=False)  # OpenAPI cannot describe a parameter holding "/"
def record(ref: Annotated[str, PathParam(pattern=_REF, max_length=200)],
           regulator: RegulatorDep, member: RegulatorSession) -> dict[str, Any]:
    """The record with its decrypted payment and proof bundle."""
    try:
        parse_evidence_ref(ref)
    except ValueError:
        raise ProblemException("validation-error", f"{ref!r} is not a record reference "
                               "(platform/log id in hex/index)") from None
    indexed = regulator.record_by_ref(ref)
    return {"record": record_json(TracedRecord(indexed, regulator.bundle_for(indexed)))}


@router.post("/api/trace", responses=problem_responses(400, 401, 403, 422, 429),
             summary="Every record of one identity on every platform (regulator session)")
def trace(body: Annotated[TraceRequest, Body()], regulator: RegulatorDep,
          member: LimitedSession, _: CsrfChecked) -> dict[str, Any]:
    """Give ``identity`` (hashed here, never stored) or ``identity_key``."""
    if (body.identity is None) == (body.identity_key is None):
        raise ProblemException("bad-request", "give exactly one of identity and identity_key")
    key = (identity_key(body.identity) if body.identity is not None
           else bytes.fromhex(body.identity_key or ""))
    return {"identity_key": key.hex(),
            "records": [record_json(r) for r in regulator.trace_identity(key)]}


@router.get("/api/faults", responses=problem_responses(401, 403),
            summary="Data the regulator refused from platform nodes (regulator session)")
def faults(regulator: RegulatorDep, member: RegulatorSession) -> dict[str, Any]:
    """Each fault: platform, log, leaf range, kind, what was wrong, when first found."""
    return {"faults": [
        {"platform": f.platform, "log_id": f.log_id.hex(), "start": f.start, "end": f.end,
         "kind": f.kind, "detail": f.detail, "at": int(f.found_at),
         "last_seen": int(f.last_seen)}
        for f in regulator.faults()]}


# --------------------------------------------------------------------------------------
# Static files
# --------------------------------------------------------------------------------------


def _asset(name: str) -> Response:
    """The file ``name`` of the console's directory, or a 404 problem."""
    suffix = Path(name).suffix.lower()
    if not _ASSET_NAME.fullmatch(name) or suffix not in CONTENT_TYPES:
        raise _no_asset(name)
    path = (ASSETS_DIR / name).resolve()
    if path.parent != ASSETS_DIR or not path.is_file():
        raise _no_asset(name)
    return Response(path.read_bytes(), media_type=CONTENT_TYPES[suffix],
                    headers={"Cache-Control": "no-cache"})


def _no_asset(name: str) -> ProblemException:
    """The 404 problem of an asset that is not there."""
    return ProblemException("not-found", f"the console has no asset {name!r}")


@router.get("/", include_in_schema=False)
def index() -> Response:
    """The console's single page."""
    return _asset("index.html")


@router.get("/assets/{name}", include_in_schema=False)
def asset(name: str) -> Response:
    """One of the console's static files (CSS, JavaScript, images)."""
    return _asset(name)


def install_console(app: FastAPI, sessions: ConsoleSessions) -> None:
    """Serve the console from ``app`` (routes, session store, security headers)."""
    app.state.console_sessions = sessions
    app.include_router(signed_router)
    app.include_router(router)

    async def redirect() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=308)

    app.add_api_route("/console", redirect, include_in_schema=False)
    app.add_middleware(ConsoleHeadersMiddleware, problems=app.state.problems)


__all__ = ["COOKIE", "CONTENT_SECURITY_POLICY", "ConsoleHeadersMiddleware", "install_console",
           "verify_document"]
