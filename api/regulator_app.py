"""``create_regulator_app``: the FastAPI application of a regulator node under ``/v1``.

Every route but ``/v1/health`` needs an SM2-signed request (the ``X-JL-*`` headers, with
this node's :func:`~ledger_node.regulator.node.node_audience`) from a **regulator** member:
traces and alerts name identities and amounts, so nobody else may read them. Errors are
RFC 9457 problem documents, as on the platform node. The app does not start or stop the
regulator node.
"""

from __future__ import annotations

from fastapi import FastAPI

from api.console_session import ConsoleSessions
from api.middleware import BodyLimitMiddleware, RequestTimeoutMiddleware
from api.problems import ProblemFactory, install_problem_handlers
from api.ratelimit import install_member_limits
from api.routes.console import install_console
from api.routes.regulator import router as regulator_router
from ledger_node.chain.adapter import Member
from ledger_node.chain.member_cache import StaleWhileRevalidateMembers
from ledger_node.http_settings import Settings
from ledger_node.protocol.auth import RequestAuthenticator
from ledger_node.regulator.node import RegulatorNode, node_audience

API_VERSION = "1.0.0"
DESCRIPTION = """
A JointLedger **regulator node** (PROTOCOL §6): it follows every platform's checkpoints on
the chain, fetches their leaves and escrows, refuses data that does not reproduce the
anchored roots, decrypts the escrows and indexes them by identity.

* **Trace** an identity across every platform, or a commitment to its identities; each
  record comes with a proof bundle built from the chain's checkpoint.
* **Alerts**: AML large-value and cross-platform structuring rules, with evidence.
* **Disclosures**: requests logged on chain; answers verified against the commitment.
* **Case files** that `jointledger verify CASEFILE --rpc-url URL` checks offline.
* **Web console** at `/console/`: an auditor view of public data for anyone, the regulator
  view after `jointledger console-login` (docs/console.md).

All `/v1` routes except `/v1/health` need an SM2-signed request from a regulator member.
"""


def create_regulator_app(
    regulator: RegulatorNode,
    settings: Settings | None = None,
    *,
    authenticator: RequestAuthenticator | None = None,
    console_sessions: ConsoleSessions | None = None,
) -> FastAPI:
    """Build the app serving ``regulator``; ``authenticator`` defaults to chain membership,
    ``console_sessions`` (the web console's logins) to the regulator's store, shared by
    every API process of that store."""
    settings = settings if settings is not None else Settings()
    problems = ProblemFactory(settings.problem_base_uri)
    def member_on_chain(address: str) -> Member:
        return regulator.chain.member(address)

    if authenticator is None:
        ttl = settings.membership_ttl_s  # a plain TTL: no stale record past it
        members = StaleWhileRevalidateMembers(member_on_chain, ttl=ttl, stale_limit=ttl,
                                              refresh_wait=0.0)
        authenticator = RequestAuthenticator(
            members.get,
            audience=node_audience(regulator.config.name),
            skew_ms=settings.clock_skew_ms,
            nonce_capacity=settings.nonce_capacity,
        )
    app = FastAPI(
        title=f"JointLedger regulator node ({regulator.config.name})",
        version=API_VERSION,
        description=DESCRIPTION,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.regulator = regulator
    app.state.settings = settings
    app.state.authenticator = authenticator
    app.state.problems = problems
    install_member_limits(app, settings)
    app.include_router(regulator_router)
    install_problem_handlers(app, problems)

    app.add_middleware(RequestTimeoutMiddleware, timeout_s=settings.request_timeout_s,
                       problems=problems)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, problems=problems,
                       timeout_s=settings.body_timeout_s,
                       max_head_bytes=settings.max_header_bytes)
    install_console(app, console_sessions if console_sessions is not None
                    else ConsoleSessions(regulator.console_table))
    return app
