"""``create_app``: the FastAPI application serving one platform node under ``/v1``.

The app does not start or stop the node: whoever builds the node owns its lifecycle
(:mod:`api.server` for ``jointledger serve``, fixtures in tests).
"""

from __future__ import annotations

from fastapi import FastAPI

from api.middleware import (
    BodyLimitMiddleware,
    HttpMetrics,
    MetricsMiddleware,
    RequestTimeoutMiddleware,
)
from api.problems import ProblemFactory, install_problem_handlers
from api.ratelimit import install_member_limits
from api.routes import (
    checkpoints,
    disclosures,
    health,
    leaves,
    logs,
    metrics,
    reconciliation,
    risk,
    verify,
)
from ledger_node.chain.adapter import Member
from ledger_node.http_settings import Settings
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.auth import RequestAuthenticator
from ledger_node.tls import NO_CLIENT_TLS, ClientTls

API_VERSION = "1.0.0"

DESCRIPTION = """
A JointLedger platform node: the platform's append-only Merkle log of record commitments,
anchored on the consortium chain in SM2-signed checkpoints (PROTOCOL §5).

* **Intake** — a platform submits batches of leaves signed with its own SM2 key.
* **Proofs** — anyone fetches a leaf's self-contained proof bundle and verifies it against
  the root read from the chain (`POST /v1/verify` does so against this node's chain).
* **Regulator access** — a regulator (signed request) reads whole leaves with their
  escrows (`GET /v1/logs/{log_id}/leaves`) and collects the platform's sealed answers to
  its on-chain disclosure requests (`/v1/disclosures`).
* **Reconciliation** — anyone reads leaf summaries in bulk (`GET /v1/logs/{log_id}/summaries`);
  the platform has its node match its expected match tags against another platform's log,
  verified against the chain (`POST /v1/reconciliation`).
* **Errors** are RFC 9457 `application/problem+json` documents.
* **Member-only reads** use SM2-signed requests (`X-JL-Member`, `X-JL-Timestamp`,
  `X-JL-Nonce`, `X-JL-Signature`); the server holds no member secret.
"""


def create_app(
    node: PlatformNode,
    settings: Settings | None = None,
    *,
    authenticator: RequestAuthenticator | None = None,
    client_tls: ClientTls = NO_CLIENT_TLS,
) -> FastAPI:
    """Build the app serving ``node``.

    ``authenticator`` defaults to one reading membership through ``node.member`` (the
    node's cache of the chain's records, served stale while the chain does not answer),
    with the skew, nonce capacity and cache TTL of ``settings``. ``client_tls`` is what the
    node trusts and presents when it reads a counterparty's node (reconciliation).
    """
    settings = settings if settings is not None else Settings()
    problems = ProblemFactory(settings.problem_base_uri)

    def member_on_chain(address: str) -> Member:
        # the node's one cache, with the HTTP layer's TTL: it keeps serving known members
        # while the chain does not answer
        return node.member(address, ttl=settings.membership_ttl_s)

    if authenticator is None:
        authenticator = RequestAuthenticator(
            member_on_chain,
            audience=node.log_id,
            skew_ms=settings.clock_skew_ms,
            nonce_capacity=settings.nonce_capacity,
        )
    app = FastAPI(
        title=f"JointLedger platform node ({node.platform})",
        version=API_VERSION,
        description=DESCRIPTION,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.node = node
    app.state.settings = settings
    app.state.authenticator = authenticator
    app.state.problems = problems
    app.state.http_metrics = HttpMetrics()
    app.state.client_tls = client_tls
    install_member_limits(app, settings)

    for module in (logs, leaves, checkpoints, disclosures, reconciliation, risk, verify, health,
                   metrics):
        app.include_router(module.router)

    install_problem_handlers(app, problems)

    # Added last = outermost: metrics see every response, including 413s, 408s and 503s;
    # the handler deadline starts once the body is read.
    app.add_middleware(RequestTimeoutMiddleware, timeout_s=settings.request_timeout_s,
                       problems=problems)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, problems=problems,
                       timeout_s=settings.body_timeout_s,
                       max_head_bytes=settings.max_header_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.http_metrics)
    return app
