"""Typed ``Annotated`` dependencies of the routes: the node, settings, authentication.

Tests swap any of them with ``app.dependency_overrides`` (e.g. a fixed clock authenticator).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from api.problems import ProblemFactory
from api.ratelimit import limit_member
from ledger_node.chain.adapter import Role
from ledger_node.errors import Forbidden
from ledger_node.http_settings import Settings
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.auth import AuthenticatedMember, RequestAuthenticator


def get_node(request: Request) -> PlatformNode:
    """The platform node this app serves."""
    node: PlatformNode = request.app.state.node
    return node


def get_settings(request: Request) -> Settings:
    """The HTTP layer's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_authenticator(request: Request) -> RequestAuthenticator:
    """The request authenticator (membership from the chain, nonce cache)."""
    authenticator: RequestAuthenticator = request.app.state.authenticator
    return authenticator


def get_problems(request: Request) -> ProblemFactory:
    """The problem document factory (type URIs under the configured base)."""
    problems: ProblemFactory = request.app.state.problems
    return problems


NodeDep = Annotated[PlatformNode, Depends(get_node)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
AuthenticatorDep = Annotated[RequestAuthenticator, Depends(get_authenticator)]
ProblemsDep = Annotated[ProblemFactory, Depends(get_problems)]


def request_target(request: Request) -> str:
    """The request's path and query exactly as sent (what the member signed)."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else request.url.path
    query = request.scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


async def authenticated_member(
    request: Request, authenticator: AuthenticatorDep
) -> AuthenticatedMember:
    """The consortium member who signed this request (``X-JL-*`` headers).

    Raises :class:`~ledger_node.errors.Unauthenticated` (401) or
    :class:`~ledger_node.errors.Forbidden` (403); see
    :meth:`~ledger_node.protocol.auth.RequestAuthenticator.authenticate`.
    """
    body = await request.body()
    return await run_in_threadpool(
        authenticator.authenticate, request.method, request_target(request), request.headers, body
    )


MemberDep = Annotated[AuthenticatedMember, Depends(authenticated_member)]


def limited_member(request: Request, member: MemberDep) -> AuthenticatedMember:
    """The signer of an expensive request, within its rate (429 ``rate-limited`` beyond it:
    :mod:`api.ratelimit`)."""
    return limit_member(request, member)


LimitedMemberDep = Annotated[AuthenticatedMember, Depends(limited_member)]


def owner_or_regulator(member: MemberDep, node: NodeDep) -> AuthenticatedMember:
    """The signer, if it is this log's own platform or a regulator; else :class:`Forbidden`."""
    if member.role is Role.REGULATOR:
        return member
    if member.role is Role.PLATFORM and member.address.lower() == node.platform_address.lower():
        return member
    raise Forbidden(
        f"{member.address} ({member.role.name.lower()} {member.name}) may not read "
        f"{node.platform}'s batch evidence: only {node.platform} and regulators may"
    )


OwnerOrRegulatorDep = Annotated[AuthenticatedMember, Depends(owner_or_regulator)]
