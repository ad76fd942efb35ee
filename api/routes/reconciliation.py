"""``POST /v1/reconciliation``: the platform's own node matches its expected tags against a
counterparty platform's log, verified against the chain (docs/reconciliation.md).

The node holds no plaintext records and derives no pairwise key: the platform's process
computes, for each of its cross-platform records, the tags the counterparty's half must carry
(:mod:`ledger_node.protocol.reconciliation`) and sends only those, with the leaf index and payment
time. The node reads the counterparty's leaf summaries from the counterparty's node, rebuilds
the tree and compares it with the root anchored on chain (refusing a mismatch with 502
``counterparty-log-refused``), matches, and answers the report with both sides' proof
bundles. The verified counterparty log is cached per counterparty node, so later requests
read only what was anchored since.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.deps import LimitedMemberDep, NodeDep
from api.routes.common import problem_responses
from api.schemas import Digest
from ledger_node.chain.adapter import Role
from ledger_node.client.sdk import NodeClient
from ledger_node.errors import Forbidden, InvalidReconciliationInput, LogVerificationFailed
from ledger_node.log.checkpoint import log_id_for
from ledger_node.platform.log_view import NodeLogView
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.auth import AuthenticatedMember
from ledger_node.protocol.keys_in_force import platform_member
from ledger_node.protocol.reconciliation import (
    DEFAULT_GRACE,
    MAX_GRACE,
    Expectation,
    TagPair,
    Window,
)
from ledger_node.reconcile.reconciler import (
    SummarySource,
    VerifiedLog,
    reconcile_expectations,
)
from ledger_node.tls import NO_CLIENT_TLS, ClientTls

router = APIRouter(prefix="/v1/reconciliation", tags=["reconciliation"])

MAX_EXPECTATIONS: Final = 10_000
MAX_KEYS: Final = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TagPairIn(_Strict):
    """The tags the counterparty's half carries under one pairwise key in force."""

    match_tag: Digest
    amount_tag: Digest


class ExpectationIn(_Strict):
    """One own cross-platform record: its leaf, its payment time, the expected tags."""

    index: int = Field(ge=0, le=2**63 - 1, description="the own record's leaf index")
    time: AwareDatetime = Field(description="payment time (in the window)")
    tags: list[TagPairIn] = Field(min_length=1, max_length=MAX_KEYS,
                                  description="one pair per pairwise key in force")


class WindowIn(_Strict):
    """Payment times ``[start, end)``."""

    start: AwareDatetime
    end: AwareDatetime


class ReconciliationCreate(_Strict):
    """A reconciliation of the platform's expected tags against one counterparty."""

    counterparty: str = Field(min_length=1, max_length=32, examples=["wechatpay"])
    counterparty_url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
                                  max_length=300, examples=["http://127.0.0.1:8701"],
                                  description="the counterparty's node (public reads only)")
    counterparty_shard: int = Field(default=0, ge=0, le=2**16 - 1)
    window: WindowIn
    grace_s: float = Field(default=DEFAULT_GRACE.total_seconds(), ge=0,
                           le=MAX_GRACE.total_seconds())
    as_of: AwareDatetime | None = Field(default=None, description="default: now")
    matched_bundles: bool = Field(default=False, description="bundles for matched items too")
    expectations: list[ExpectationIn] = Field(max_length=MAX_EXPECTATIONS)


SourceFactory = Callable[[str], SummarySource]


def summary_source_factory(request: Request) -> SourceFactory:
    """How the node reaches a counterparty node, with the node's client TLS (tests swap in
    an in-process transport)."""
    factory: SourceFactory | None = getattr(request.app.state, "summary_sources", None)
    tls: ClientTls = getattr(request.app.state, "client_tls", NO_CLIENT_TLS)
    return factory if factory is not None else (lambda url: NodeClient(url, retries=2,
                                                                       tls=tls))


SourceFactoryDep = Annotated[SourceFactory, Depends(summary_source_factory)]


class _CounterpartyLogs:
    """Verified counterparty logs, one per (log, node URL), each with its own lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[tuple[bytes, str], tuple[threading.Lock, VerifiedLog]] = {}

    def get(self, key: tuple[bytes, str], make: Callable[[], VerifiedLog]
            ) -> tuple[threading.Lock, VerifiedLog]:
        with self._lock:
            entry = self._logs.get(key)
            if entry is None:
                entry = self._logs[key] = (threading.Lock(), make())
            return entry

    def drop(self, key: tuple[bytes, str]) -> None:
        with self._lock:
            self._logs.pop(key, None)


_CACHE_LOCK: Final = threading.Lock()


def _cache(request: Request) -> _CounterpartyLogs:
    """The app's cache of verified counterparty logs (made on first use)."""
    state = request.app.state
    with _CACHE_LOCK:
        cache: _CounterpartyLogs | None = getattr(state, "counterparty_logs", None)
        if cache is None:
            cache = state.counterparty_logs = _CounterpartyLogs()
    return cache


def _require_own_platform(member: AuthenticatedMember, node: PlatformNode) -> None:
    if member.role is Role.PLATFORM and member.address.lower() == node.platform_address.lower():
        return
    raise Forbidden(f"{member.address} ({member.role.name.lower()} {member.name}) may not "
                    f"reconcile {node.platform}'s records: only {node.platform} may")


@router.post(
    "",
    responses=problem_responses(400, 401, 403, 404, 413, 422, 429) | {
        502: {"description": "the counterparty's node served a log that does not match the "
                             "chain (or none)"}},
    summary="Match the platform's expected tags against a counterparty's verified log",
)
def reconcile(body: ReconciliationCreate, request: Request, node: NodeDep,
              member: LimitedMemberDep,
              sources: SourceFactoryDep) -> dict[str, Any]:
    """Report, for each expectation, ``matched``, ``amount_mismatch``, ``missing`` (not on
    the counterparty's side after the grace period) or ``pending`` (not yet, within it),
    with both sides' leaves and proof bundles (for matched items only with
    ``matched_bundles``). Own leaves not anchored yet are counted in ``skipped``.

    Needs an SM2-signed request from this node's own platform. The counterparty's log is
    read from ``counterparty_url`` and verified against the chain; a log that does not
    reproduce the anchored root is refused (502 ``counterparty-log-refused``). Each
    expectation's time must lie in the window (422 ``invalid-reconciliation``). Rate-limited
    per member (429 ``rate-limited``).
    """
    _require_own_platform(member, node)
    window = Window(body.window.start, body.window.end)
    expectations = []
    for i, item in enumerate(body.expectations):
        if not window.contains(item.time):
            raise InvalidReconciliationInput(f"expectations[{i}].time",
                                             f"{item.time.isoformat()} is outside the window")
        expectations.append(Expectation(item.index, item.time, tuple(
            TagPair(bytes.fromhex(t.match_tag), bytes.fromhex(t.amount_tag))
            for t in item.tags)))
    counterparty = platform_member(node.chain, body.counterparty,
                                   not_address=node.platform_address)
    log_id = log_id_for(counterparty.name, body.counterparty_shard)
    key = (log_id, body.counterparty_url)
    cache = _cache(request)
    lock, log = cache.get(key, lambda: VerifiedLog(
        node.chain, counterparty, log_id, sources(body.counterparty_url)))
    with lock:
        try:
            report = reconcile_expectations(
                NodeLogView(node), log, expectations, window=window,
                grace=timedelta(seconds=body.grace_s), as_of=body.as_of,
                matched_bundles=body.matched_bundles)
        except LogVerificationFailed:
            cache.drop(key)  # start afresh next time (another node, a repaired one)
            raise
    return report.to_json(matched_bundles=body.matched_bundles)
