"""``/v1/risk-devices``: the shared risk-device list, checked against this node's synced copy.

The node holds its platform's SM2 key, so it opens the list-key ring the regulator delivered
to its platform and keeps a :class:`~ledger_node.protocol.risklist.RiskList` synced from the chain
(at most ``risk_list_max_age_s`` seconds old, default 1; every answer names the block it is
current to). Checks are for members that hold the list key themselves (platforms and
regulators, SM2-signed requests); adding and removing entries is for this node's own
platform, from its chain account. docs/risklist.md describes the list.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import MemberDep, NodeDep
from api.routes.common import problem_responses
from ledger_node.chain.adapter import Role
from ledger_node.errors import Forbidden
from ledger_node.protocol.auth import AuthenticatedMember
from ledger_node.protocol.riskdevice import MAX_FINGERPRINT_CHARS, RiskReason
from ledger_node.protocol.risklist import KEY_HOLDER_ROLES, RiskHit, RiskList

router = APIRouter(prefix="/v1/risk-devices", tags=["risk devices"])

MAX_CHECK_BATCH: Final = 10_000
DEFAULT_MAX_AGE_S: Final = 1.0
_EXAMPLE_FINGERPRINT: Final = "imei:490154203237518"
_REASONS: Final = ", ".join(f"{r.value} {r.label}" for r in RiskReason)

# Bounded as text here (so a huge string never reaches the domain); the domain rules of
# ledger_node.protocol.riskdevice then answer 422 invalid-fingerprint naming what is wrong.
Fingerprint = Annotated[str, Field(max_length=4 * MAX_FINGERPRINT_CHARS,
                                   description="KIND:VALUE, KIND one of imei, meid, "
                                   "android_id, idfv, oaid, device_id (docs/risklist.md)",
                                   examples=[_EXAMPLE_FINGERPRINT])]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RiskCheck(_Strict):
    """One fingerprint to check."""

    fingerprint: Fingerprint


class RiskBatchCheck(_Strict):
    """Up to 10,000 fingerprints to check in one request (all valid, or a 422 naming the
    first bad one by index)."""

    fingerprints: list[Fingerprint] = Field(min_length=1, max_length=MAX_CHECK_BATCH)


class RiskDeviceCreate(_Strict):
    """A device to list, with its reason: a code or a name."""

    fingerprint: Fingerprint
    reason: Annotated[int, Field(ge=0, le=255)] | str = Field(
        description=f"reason code or name: {_REASONS}", examples=["money_mule"])


class RiskDeviceRemove(_Strict):
    """A device to remove (an entry this node's platform listed)."""

    fingerprint: Fingerprint


class RiskResult(BaseModel):
    """Whether one fingerprint is listed and, if so, the listing."""

    fingerprint: str = Field(description="the normal form that was checked")
    listed: bool
    entry: str | None = Field(default=None, description="the entry on chain (hex)")
    reason: str | None = Field(default=None, examples=["money_mule"])
    reason_code: int | None = Field(default=None, examples=[3])
    adder: str | None = Field(default=None, description="chain address of the member that "
                              "listed it")
    adder_name: str | None = Field(default=None, examples=["wechatpay"])
    epoch: int | None = Field(default=None, description="list-key epoch of the entry")
    block: int | None = Field(default=None, description="block the entry was listed in")


class RiskCheckAnswer(RiskResult):
    """A single check's answer and the block the node's copy was current to."""

    as_of_block: int


class RiskBatchAnswer(BaseModel):
    """Results in request order, how many are listed, the block the copy was current to."""

    results: list[RiskResult]
    listed: int
    as_of_block: int


class RiskWriteAnswer(RiskResult):
    """An entry added or removed, and the transaction that did it."""

    tx_hash: str = Field(description="0x-prefixed transaction hash")


class RiskListStatus(BaseModel):
    """The node's copy of the list: its member, epochs, size and freshness."""

    member: str
    epoch: int = Field(description="the current list-key epoch on chain")
    epoch_open: bool = Field(description="whether the current epoch takes new entries")
    key_epoch: int = Field(description="the newest epoch whose key this node holds")
    entries: int
    as_of_block: int


def node_risk_list(request: Request, node: NodeDep) -> RiskList:
    """The node's own copy of the risk list (the node holds the key that opens it), synced
    when older than ``app.state.risk_list_max_age_s`` seconds."""
    state = request.app.state
    risk_list = node.risk_list()
    risk_list.sync_if_older(float(getattr(state, "risk_list_max_age_s", DEFAULT_MAX_AGE_S)))
    return risk_list


RiskListDep = Annotated[RiskList, Depends(node_risk_list)]


def key_holder(member: MemberDep) -> AuthenticatedMember:
    """The signer, if it is a platform or regulator (members that hold the list key)."""
    if member.role not in KEY_HOLDER_ROLES:
        raise Forbidden(f"{member.address} ({member.role.name.lower()} {member.name}) may not "
                        "check the risk-device list: only platforms and regulators hold its key")
    return member


def own_platform(member: MemberDep, node: NodeDep) -> AuthenticatedMember:
    """The signer, if it is this node's own platform (writes go out from its account)."""
    if member.role is Role.PLATFORM and member.address.lower() == \
            node.platform_address.lower():
        return member
    raise Forbidden(f"{member.address} ({member.role.name.lower()} {member.name}) may not "
                    f"change the risk-device list through {node.platform}'s node: only "
                    f"{node.platform} may (others use their own chain account)")


KeyHolderDep = Annotated[AuthenticatedMember, Depends(key_holder)]
OwnPlatformDep = Annotated[AuthenticatedMember, Depends(own_platform)]


def _result(request: Request, fingerprint: str, hit: RiskHit | None,
            names: dict[str, str]) -> dict[str, Any]:
    if hit is None:
        return {"fingerprint": fingerprint, "listed": False}
    if hit.adder not in names:
        names[hit.adder] = request.app.state.authenticator.member(hit.adder).name
    return {"fingerprint": hit.fingerprint, "listed": True, "entry": hit.entry.hex(),
            "reason": hit.reason.label, "reason_code": int(hit.reason), "adder": hit.adder,
            "adder_name": names[hit.adder], "epoch": hit.epoch, "block": hit.block_number}


@router.post("/check", response_model=RiskCheckAnswer, response_model_exclude_none=True,
             responses=problem_responses(401, 403, 422, 503),
             summary="Is this device listed? (platforms and regulators, signed)")
def check(body: RiskCheck, request: Request, member: KeyHolderDep,
          risk_list: RiskListDep) -> dict[str, Any]:
    """Check one fingerprint against the node's synced copy. A fingerprint is sent in the
    body, never in the URL, so it does not end up in access logs. 422
    ``invalid-fingerprint`` for a malformed one; 503 ``list-key-unavailable`` while the
    node lacks the key of an epoch that has entries."""
    [(fingerprint, hit)] = risk_list.lookup_many([body.fingerprint])
    return _result(request, fingerprint, hit, {}) | {"as_of_block": risk_list.synced_block}


@router.post("/check-batch", response_model=RiskBatchAnswer, response_model_exclude_none=True,
             responses=problem_responses(401, 403, 413, 422, 503),
             summary="Check up to 10,000 devices (platforms and regulators, signed)")
def check_batch(body: RiskBatchCheck, request: Request, member: KeyHolderDep,
                risk_list: RiskListDep) -> dict[str, Any]:
    """Check many fingerprints against one state of the copy; results in request order.
    One malformed fingerprint makes the whole request 422 ``invalid-fingerprint``, its
    index in the detail."""
    found = risk_list.lookup_many(body.fingerprints)
    names: dict[str, str] = {}
    results = [_result(request, fingerprint, hit, names) for fingerprint, hit in found]
    return {"results": results, "listed": sum(1 for _, hit in found if hit is not None),
            "as_of_block": risk_list.synced_block}


@router.post("", status_code=201, response_model=RiskWriteAnswer,
             response_model_exclude_none=True,
             responses=problem_responses(401, 403, 409, 422, 503),
             summary="List a device from this platform's account (own platform, signed)")
def add(body: RiskDeviceCreate, request: Request, member: OwnPlatformDep,
        risk_list: RiskListDep) -> dict[str, Any]:
    """List a device under the current epoch's key, sent from this node's platform account.
    422 ``invalid-fingerprint`` or ``unknown-risk-reason``; 409 ``risk-device-listed`` if
    it is listed already (by anyone, under any epoch), 409 ``chain-rejected`` for what the
    contract refuses (e.g. ``RiskList_EpochClosed`` until the regulator opens the next
    epoch); 503 ``list-key-unavailable`` before the node holds the current key."""
    hit, outcome = risk_list.add(body.fingerprint, body.reason)
    return _result(request, hit.fingerprint, hit, {}) | {"tx_hash": "0x" + outcome.tx_hash.hex()}


@router.post("/remove", response_model=RiskWriteAnswer, response_model_exclude_none=True,
             responses=problem_responses(401, 403, 404, 409, 422, 503),
             summary="Remove a device this platform listed (own platform, signed)")
def remove(body: RiskDeviceRemove, request: Request, member: OwnPlatformDep,
           risk_list: RiskListDep) -> dict[str, Any]:
    """Remove an entry this node's platform added. 404 ``risk-device-not-listed``; 409
    ``chain-rejected`` (``RiskList_NotAdder``) for another member's entry, which only
    governance removes."""
    hit, outcome = risk_list.remove(body.fingerprint)
    return _result(request, hit.fingerprint, hit, {}) | {"tx_hash": "0x" + outcome.tx_hash.hex()}


@router.get("/status", response_model=RiskListStatus,
            responses=problem_responses(401, 403, 503),
            summary="The node's copy of the list (platforms and regulators, signed)")
def status(member: KeyHolderDep, risk_list: RiskListDep) -> dict[str, Any]:
    """Which epoch the chain is at, which key the node holds, how many entries are listed."""
    return {"member": risk_list.member, "epoch": risk_list.epoch,
            "epoch_open": risk_list.epoch_open, "key_epoch": risk_list.key_epoch,
            "entries": len(risk_list), "as_of_block": risk_list.synced_block}
