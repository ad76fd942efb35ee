"""RFC 9457 problem documents: the error types of the API and their central mapping.

Every error response is ``application/problem+json`` with ``type`` (a URI naming the
problem), ``title``, ``status``, ``detail`` (what exactly went wrong) and ``instance`` (the
request path). :func:`install_problem_handlers` maps request validation errors, HTTP errors
and every :class:`~ledger_node.errors.LedgerError` subclass to one of :data:`PROBLEMS`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import ProblemException
from ledger_node.errors import (
    AuthError,
    BatchEvidenceLost,
    ChainError,
    CommitmentNotInLog,
    ContractRevert,
    CryptoError,
    DisclosureConflict,
    DisclosureNotAddressed,
    DisclosureNotAnswered,
    DisclosureRejected,
    Forbidden,
    IngestOff,
    InvalidBatch,
    InvalidBundle,
    InvalidCaseFile,
    InvalidCheckpoint,
    InvalidDisclosureResponse,
    InvalidFingerprint,
    InvalidLeaf,
    InvalidLeafRange,
    InvalidListKey,
    InvalidOpening,
    InvalidProof,
    InvalidReconciliationInput,
    InvalidRecord,
    InvalidSignature,
    InvalidWindow,
    LeafDamaged,
    LeafRangeUnavailable,
    LedgerError,
    ListKeyUnavailable,
    LogVerificationFailed,
    NodeStopped,
    PairwiseKeyUnavailable,
    RiskDeviceAlreadyListed,
    RiskDeviceNotListed,
    StoreBehindChain,
    StoreCorrupted,
    StoreMismatch,
    StoreUnavailable,
    TreeMismatch,
    Unauthenticated,
    UnknownAlert,
    UnknownCheckpoint,
    UnknownCounterparty,
    UnknownDisclosureRequest,
    UnknownLeaf,
    UnknownPlatform,
    UnknownRiskReason,
)

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProblemType:
    """One kind of problem: its URI slug, title and HTTP status."""

    slug: str
    title: str
    status: int


PROBLEMS: Final = {
    p.slug: p
    for p in (
        ProblemType("malformed-json", "Malformed JSON", 400),
        ProblemType("bad-request", "Bad request", 400),
        ProblemType("unauthenticated", "Authentication failed", 401),
        ProblemType("forbidden", "Not allowed for this member", 403),
        ProblemType("not-found", "No such resource", 404),
        ProblemType("unknown-leaf", "Unknown leaf", 404),
        ProblemType("unknown-log", "Unknown log", 404),
        ProblemType("unknown-checkpoint", "Unknown checkpoint", 404),
        ProblemType("unknown-disclosure-request", "Unknown disclosure request", 404),
        ProblemType("disclosure-not-answered", "Disclosure request not answered here", 404),
        ProblemType("disclosure-not-addressed",
                    "Disclosure request addressed to another platform", 403),
        ProblemType("disclosure-conflict", "Disclosure request already answered", 409),
        ProblemType("range-not-satisfiable", "Leaves beyond the end of the log", 416),
        ProblemType("method-not-allowed", "Method not allowed", 405),
        ProblemType("body-too-large", "Request body too large", 413),
        ProblemType("unsupported-media-type", "Unsupported media type", 415),
        ProblemType("validation-error", "Request does not match the schema", 422),
        ProblemType("invalid-leaf", "Invalid leaf", 422),
        ProblemType("invalid-batch", "Invalid batch", 422),
        ProblemType("invalid-bundle", "Invalid proof bundle", 422),
        ProblemType("invalid-opening", "Invalid opening or disclosure", 422),
        ProblemType("invalid-record", "Invalid payment record", 422),
        ProblemType("invalid-proof-request", "Invalid proof request", 422),
        ProblemType("invalid-checkpoint", "Invalid checkpoint", 422),
        ProblemType("invalid-range", "Invalid leaf range", 422),
        ProblemType("invalid-disclosure-response", "Invalid disclosure response", 422),
        ProblemType("commitment-not-in-log", "Commitment not in this log", 422),
        ProblemType("internal-error", "Internal server error", 500),
        ProblemType("store-corrupted", "The node's store is corrupted", 500),
        ProblemType("store-damaged",
                    "The node's store holds damaged data: nothing damaged is served", 503),
        ProblemType("store-unavailable", "The node's database server does not answer", 503),
        ProblemType("store-behind-chain",
                    "The node's store lacks leaves the chain anchored: intake is stopped", 503),
        ProblemType("evidence-lost", "The leaf's signed batch was lost", 410),
        ProblemType("chain-unavailable", "The chain is unavailable", 503),
        ProblemType("node-stopped", "The node is not accepting submissions", 503),
        ProblemType("ingest-off", "This regulator process does not ingest", 409),
        ProblemType("proof-pending", "Proof pending", 202),
        ProblemType("unknown-alert", "Unknown alert", 404),
        ProblemType("unknown-platform", "Unknown platform", 404),
        ProblemType("disclosure-rejected", "Disclosure answer failed verification", 422),
        ProblemType("invalid-case-file", "Invalid case file", 422),
        ProblemType("chain-rejected", "The contract rejected the transaction", 409),
        ProblemType("invalid-fingerprint", "Invalid device fingerprint", 422),
        ProblemType("unknown-risk-reason", "Unknown risk reason", 422),
        ProblemType("risk-device-listed", "Device already listed", 409),
        ProblemType("risk-device-not-listed", "Device not listed", 404),
        ProblemType("list-key-unavailable", "This node does not hold the list key", 503),
        ProblemType("invalid-list-key", "The delivered list key does not open", 503),
        ProblemType("unknown-counterparty", "Unknown counterparty platform", 404),
        ProblemType("invalid-window", "Invalid reconciliation window", 422),
        ProblemType("invalid-reconciliation", "Invalid reconciliation input", 422),
        ProblemType("pairwise-key-unavailable", "Pairwise key unavailable", 422),
        ProblemType("counterparty-log-refused",
                    "The counterparty's node served a log that does not match the chain", 502),
        ProblemType("request-timeout", "Request not received in time", 408),
        ProblemType("headers-too-large", "Request header fields too large", 431),
        ProblemType("handler-timeout", "The node did not answer in time", 503),
        ProblemType("rate-limited", "Too many requests from this member", 429),
    )
}

# Most specific first: the first class the error is an instance of decides.
_LEDGER_ERRORS: Final[tuple[tuple[type[LedgerError], str], ...]] = (
    (Unauthenticated, "unauthenticated"),
    (InvalidFingerprint, "invalid-fingerprint"),
    (UnknownRiskReason, "unknown-risk-reason"),
    (RiskDeviceAlreadyListed, "risk-device-listed"),
    (RiskDeviceNotListed, "risk-device-not-listed"),
    (ListKeyUnavailable, "list-key-unavailable"),
    (InvalidListKey, "invalid-list-key"),
    (UnknownCounterparty, "unknown-counterparty"),
    (InvalidWindow, "invalid-window"),
    (InvalidReconciliationInput, "invalid-reconciliation"),
    (PairwiseKeyUnavailable, "pairwise-key-unavailable"),
    (LogVerificationFailed, "counterparty-log-refused"),
    (Forbidden, "forbidden"),
    (AuthError, "unauthenticated"),
    (LeafRangeUnavailable, "range-not-satisfiable"),
    (BatchEvidenceLost, "evidence-lost"),
    (UnknownLeaf, "unknown-leaf"),
    (UnknownAlert, "unknown-alert"),
    (UnknownPlatform, "unknown-platform"),
    (DisclosureRejected, "disclosure-rejected"),
    (InvalidCaseFile, "invalid-case-file"),
    (InvalidLeafRange, "invalid-range"),
    (UnknownDisclosureRequest, "unknown-disclosure-request"),
    (DisclosureNotAnswered, "disclosure-not-answered"),
    (DisclosureNotAddressed, "disclosure-not-addressed"),
    (DisclosureConflict, "disclosure-conflict"),
    (CommitmentNotInLog, "commitment-not-in-log"),
    (InvalidDisclosureResponse, "invalid-disclosure-response"),
    (UnknownCheckpoint, "unknown-checkpoint"),
    (NodeStopped, "node-stopped"),
    (IngestOff, "ingest-off"),
    (InvalidBatch, "invalid-batch"),
    (InvalidLeaf, "invalid-leaf"),
    (InvalidBundle, "invalid-bundle"),
    (InvalidOpening, "invalid-opening"),
    (InvalidRecord, "invalid-record"),
    (InvalidProof, "invalid-proof-request"),
    (InvalidCheckpoint, "invalid-checkpoint"),
    (InvalidSignature, "unauthenticated"),
    (CryptoError, "bad-request"),
    (LeafDamaged, "store-damaged"),
    (TreeMismatch, "store-damaged"),
    (StoreBehindChain, "store-behind-chain"),
    (StoreCorrupted, "store-corrupted"),
    (StoreUnavailable, "store-unavailable"),
    (StoreMismatch, "store-corrupted"),
    (ContractRevert, "chain-rejected"),
    (ChainError, "chain-unavailable"),
)

_HTTP_STATUS_SLUGS: Final = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "rate-limited",
}


def problem_extensions(error: LedgerError) -> dict[str, Any]:
    """The fields a problem document carries beside ``detail`` for errors that name them:
    the damaged leaf's ``index``, the ``chain_size`` and ``store_size`` of a store behind
    the chain."""
    if isinstance(error, LeafDamaged):
        return {"index": error.index}
    if isinstance(error, TreeMismatch):
        return {"tree_size": error.tree_size, "index": error.first_bad}
    if isinstance(error, StoreBehindChain):
        return {"chain_size": error.chain_size, "store_size": error.store_size,
                "disagrees": error.disagrees}
    return {}


def problem_slug_for(error: LedgerError) -> str:
    """The problem slug a ledger error maps to (``internal-error`` when none fits)."""
    for cls, slug in _LEDGER_ERRORS:
        if isinstance(error, cls):
            return slug
    if isinstance(error, ValueError):
        return "bad-request"
    return "internal-error"


class ProblemFactory:
    """Builds problem responses with type URIs under one base URI."""

    def __init__(self, base_uri: str) -> None:
        """Problem types are ``base_uri + slug``."""
        self.base_uri = base_uri

    def type_uri(self, slug: str) -> str:
        """The full type URI of ``slug``."""
        return self.base_uri + slug

    def document(self, slug: str, detail: str, instance: str,
                 **extensions: Any) -> dict[str, Any]:
        """The problem document for ``slug`` with ``detail`` about ``instance``."""
        problem = PROBLEMS[slug]
        return {
            "type": self.type_uri(slug),
            "title": problem.title,
            "status": problem.status,
            "detail": detail,
            "instance": instance,
            **extensions,
        }

    def response(self, slug: str, detail: str, instance: str,
                 headers: dict[str, str] | None = None, **extensions: Any) -> JSONResponse:
        """A ``application/problem+json`` response for ``slug``."""
        document = self.document(slug, detail, instance, **extensions)
        return JSONResponse(document, status_code=document["status"], headers=headers,
                            media_type=PROBLEM_MEDIA_TYPE)


def _location(loc: tuple[int | str, ...] | list[int | str]) -> str:
    return ".".join(str(part) for part in loc)


def validation_problem(factory: ProblemFactory, exc: RequestValidationError,
                       instance: str) -> JSONResponse:
    """Map a request validation error to ``malformed-json`` (400) or ``validation-error`` (422).

    The detail names the first offending field; ``errors`` lists every one.
    """
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (first.get("ctx") or {}).get("error", "invalid JSON")
        position = first.get("loc", ("body", "?"))[-1]
        return factory.response("malformed-json",
                                f"request body is not valid JSON: {reason} at offset {position}",
                                instance)
    listed = [
        {"field": _location(e.get("loc", ())), "message": str(e.get("msg", "")),
         "type": str(e.get("type", ""))}
        for e in errors[:20]
    ]
    first_error = listed[0] if listed else {"field": "body", "message": "invalid request"}
    detail = f"{first_error['field']}: {first_error['message']}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return factory.response("validation-error", detail, instance, errors=listed)


def install_problem_handlers(app: FastAPI, factory: ProblemFactory) -> None:
    """Register the handlers that turn every error into a problem document."""

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_problem(factory, exc, request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        slug = _HTTP_STATUS_SLUGS.get(exc.status_code)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if slug is None:
            document = {"type": "about:blank", "title": detail, "status": exc.status_code,
                        "detail": detail, "instance": request.url.path}
            return JSONResponse(document, status_code=exc.status_code,
                                headers=exc.headers, media_type=PROBLEM_MEDIA_TYPE)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route matches {request.method} {request.url.path}"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        headers = dict(exc.headers) if exc.headers else None
        return factory.response(slug, detail, request.url.path, headers=headers)

    async def on_ledger(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LedgerError)
        slug = problem_slug_for(exc)
        if PROBLEMS[slug].status >= 500:
            _log.error("%s %s failed: %r", request.method, request.url.path, exc)
        return factory.response(slug, str(exc), request.url.path, **problem_extensions(exc))

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemException)
        return factory.response(exc.slug, exc.detail, request.url.path, headers=exc.headers,
                                **exc.extensions)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.exception("unhandled error in %s %s", request.method, request.url.path)
        return factory.response("internal-error", "the node failed to handle the request; "
                                "it has been logged", request.url.path)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ProblemException, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(LedgerError, on_ledger)
    app.add_exception_handler(Exception, on_unexpected)
