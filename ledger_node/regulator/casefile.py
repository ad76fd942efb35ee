"""Regulator case files (``jointledger/case-file/v1``): strict parsing and verification.

A case file is what :meth:`ledger_node.regulator.node.RegulatorNode.case_file` writes: the AML
alerts of a case, every record they rest on (leaf, escrow, the decrypted payment and a proof
bundle) and the disclosures collected for the case (the sealed answer and the opening).
:func:`verify_case_file` checks all of it against the chain alone, with no node running:

* every record's proof bundle verifies against the root read from the chain, and the bundle
  is about exactly the record's leaf (commitment, tags, SM3 of the escrow) and position;
* with the regulator's private key, every escrow decrypts to exactly the payment stated;
  without it, that check is reported as *not checked*, never as passed;
* re-running :func:`ledger_node.protocol.aml.detect` with the file's AML settings over the file's
  payments reproduces every alert exactly, and every alert's evidence is in the file;
* every disclosure request is on chain as stated (regulator, platform, commitment, case),
  fulfilled with the digest of the response in the file; the opening opens the record's
  commitment and agrees with the record's escrow; with the key, the sealed response
  decrypts to that opening.

:func:`parse_case_file` raises :class:`~ledger_node.errors.InvalidCaseFile` naming the JSON
path of the first malformed field; :func:`verify_case_file` never raises for a bad file
(every problem is a failed check with a reason) and raises
:class:`~ledger_node.errors.ChainError` only when the chain itself cannot be read.
"""

from __future__ import annotations

import functools
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from eth_utils.address import is_checksum_address
from web3 import Web3

from ledger_node.chain.adapter import Deployment, LedgerChain, Role
from ledger_node.crypto.gmcrypto import SM2PrivateKey
from ledger_node.crypto.hashes import DIGEST_SIZE, sm3
from ledger_node.errors import (
    ChainError,
    EscrowError,
    InvalidAmlConfig,
    InvalidBundle,
    InvalidCaseFile,
    InvalidEscrowPayload,
    InvalidLeaf,
    InvalidOpening,
    InvalidRecord,
)
from ledger_node.jsonfields import JsonFields, show
from ledger_node.log.leaf import Leaf
from ledger_node.log.merkle import hasher_for
from ledger_node.protocol.aml import Alert, AmlConfig, Direction, PartyKind, Rule, detect
from ledger_node.protocol.bundle import ProofBundle, Verdict, verify_bundle
from ledger_node.protocol.checks import (
    Check,
    CheckFailed,
    CheckRunner,
    CheckStatus,
    check_line,
)
from ledger_node.protocol.commitment import RecordOpening, verify_opening
from ledger_node.protocol.disclosure import (
    CASE_KEY_SIZE,
    MAX_RESPONSE_SIZE,
    case_reference,
    open_disclosure_response,
    response_digest,
)
from ledger_node.protocol.escrow import (
    EscrowOpener,
    EscrowPayload,
    identity_key,
    payload_mismatches,
)
from ledger_node.protocol.record import PaymentRecord
from ledger_node.regulator.store import evidence_ref

__all__ = [
    "CASE_FILE_FORMAT",
    "CaseAlert",
    "CaseDisclosure",
    "CaseFile",
    "CaseRecord",
    "CaseReport",
    "ItemReport",
    "is_case_file",
    "parse_case_file",
    "render_case_report",
    "verify_case_file",
]

CASE_FILE_FORMAT: Final = "jointledger/case-file/v1"
"""The ``format`` of a case file document."""

_MAX_U64: Final = 2**64 - 1
_MAX_CHAIN_ID: Final = 2**256 - 1
_PLATFORM_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")

_CASE_KEYS: Final = ("format", "case_id", "case_key", "created_at", "regulator", "chain",
                        "identities",
                     "aml_config", "alerts", "records", "disclosures")
_REGULATOR_KEYS: Final = ("name", "account")
_CHAIN_KEYS: Final = ("chain_id", "contract", "deploy_block", "abi_sha256")
_RECORD_KEYS: Final = ("ref", "platform", "log_id", "index", "leaf_hash", "leaf", "payment",
                       "bundle")
_LEAF_KEYS: Final = ("commitment", "escrow", "match_tag", "amount_tag")
_PAYMENT_KEYS: Final = ("payer_key", "payee_key", "payer_kind", "payee_kind", "amount_fen",
                        "currency", "time", "channel", "cross_border", "cash", "clearing_key")
_ALERT_KEYS: Final = ("rule", "identity", "direction", "total_fen", "window_start",
                      "window_end", "platforms", "refs", "detail")
_DISCLOSURE_KEYS: Final = ("request_id", "platform", "commitment", "case_id", "case_ref",
                           "request_tx", "response", "opening")


# --------------------------------------------------------------------------------------
# The parsed case file
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseRecord:
    """One evidence record: where it is, its leaf (with the escrow), the payment the
    regulator decrypted from it (``None``: unreadable) and its proof bundle."""

    where: str  # "records[3]"
    ref: str
    platform: str
    log_id: bytes
    index: int
    leaf_hash: bytes
    leaf: Leaf
    payment: EscrowPayload | None
    bundle: ProofBundle


@dataclass(frozen=True)
class CaseAlert:
    """One AML alert as the file states it."""

    where: str  # "alerts[0]"
    alert: Alert


@dataclass(frozen=True)
class CaseDisclosure:
    """One collected disclosure: the request, the sealed answer and the opening."""

    where: str  # "disclosures[0]"
    request_id: int
    platform: str
    commitment: bytes
    case_id: bytes
    case_ref: bytes  # the case id the request carries on chain (see case_reference)
    request_tx: bytes
    response: bytes | None
    opening: RecordOpening | None


@dataclass(frozen=True)
class CaseFile:
    """A parsed case file (see :func:`parse_case_file`)."""

    case_id: bytes
    case_key: bytes  # the case's secret key: the chain's case ids are derived from it
    created_at: datetime
    regulator_name: str
    regulator_account: str  # checksummed
    chain_id: int
    contract: str  # checksummed
    deploy_block: int
    abi_sha256: str
    identities: tuple[bytes, ...]  # the identities whose alerts the file must list in full
    aml_config: AmlConfig
    alerts: tuple[CaseAlert, ...]
    records: tuple[CaseRecord, ...]
    disclosures: tuple[CaseDisclosure, ...]

    def record(self, ref: str) -> CaseRecord | None:
        """The record with evidence reference ``ref``, or ``None``."""
        return next((r for r in self.records if r.ref == ref), None)


def is_case_file(document: object) -> bool:
    """Whether ``document`` (parsed JSON) declares itself a case file by its ``format``."""
    return isinstance(document, Mapping) and document.get("format") == CASE_FILE_FORMAT


# --------------------------------------------------------------------------------------
# Parsing: each helper raises InvalidCaseFile naming the JSON path
# --------------------------------------------------------------------------------------


_fields: Final = JsonFields(InvalidCaseFile)
_list = _fields.array
_integer = _fields.integer
_string = _fields.string
_boolean = _fields.boolean
_hex = _fields.hex
_time = _fields.time


def _object(where: str, data: object, keys: Sequence[str]) -> Mapping[str, Any]:
    """``data`` as a mapping with exactly ``keys`` (top-level fields are named bare)."""
    return _fields.mapping(where, data, keys, prefix="" if where == "document" else None)


def _platform(where: str, value: object) -> str:
    if not isinstance(value, str) or not _PLATFORM_NAME.fullmatch(value):
        raise InvalidCaseFile(where, "must be a platform name ([a-z][a-z0-9_-]{0,31})")
    return value


def _address(where: str, value: object) -> str:
    if not isinstance(value, str) or not is_checksum_address(value):
        raise InvalidCaseFile(where, "must be a checksummed (EIP-55) address")
    return value


def _payment(where: str, data: object) -> EscrowPayload | None:
    if data is None:
        return None
    obj = _object(where, data, _PAYMENT_KEYS)
    kinds = []
    for name in ("payer_kind", "payee_kind"):
        try:
            kinds.append(PartyKind(obj[name]))
        except ValueError:
            raise InvalidCaseFile(f"{where}.{name}", f"must be one of "
                                  f"{[k.value for k in PartyKind]}") from None
    try:
        return EscrowPayload(
            payer_key=_hex(f"{where}.payer_key", obj["payer_key"], DIGEST_SIZE),
            payee_key=_hex(f"{where}.payee_key", obj["payee_key"], DIGEST_SIZE),
            payer_kind=kinds[0], payee_kind=kinds[1],
            amount_fen=_integer(f"{where}.amount_fen", obj["amount_fen"], 1, _MAX_U64),
            currency=_string(f"{where}.currency", obj["currency"]),
            time=_time(f"{where}.time", obj["time"]),
            channel=_string(f"{where}.channel", obj["channel"]),  # type: ignore[arg-type]
            cross_border=_boolean(f"{where}.cross_border", obj["cross_border"]),
            cash=_boolean(f"{where}.cash", obj["cash"]),
            clearing_key=_hex(f"{where}.clearing_key", obj["clearing_key"], DIGEST_SIZE),
        )
    except InvalidEscrowPayload as exc:
        raise InvalidCaseFile(f"{where}.{exc.field}", exc.reason) from None


def _leaf(where: str, data: object) -> Leaf:
    obj = _object(where, data, _LEAF_KEYS)
    escrow = _hex(f"{where}.escrow", obj["escrow"])  # named here, before Leaf's own checks
    try:
        return Leaf.from_json(dict(obj) | {"escrow": escrow.hex()})
    except InvalidLeaf as exc:
        raise InvalidCaseFile(f"{where}.{exc.field}", exc.reason) from None


def _bundle(where: str, data: object) -> ProofBundle:
    try:
        return ProofBundle.from_json(data)
    except InvalidBundle as exc:
        path = where if exc.field == "bundle" else f"{where}.{exc.field}"
        raise InvalidCaseFile(path, exc.reason) from None


def _record(where: str, data: object) -> CaseRecord:
    obj = _object(where, data, _RECORD_KEYS)
    ref = _string(f"{where}.ref", obj["ref"])
    platform = _platform(f"{where}.platform", obj["platform"])
    log_id = _hex(f"{where}.log_id", obj["log_id"], DIGEST_SIZE)
    index = _integer(f"{where}.index", obj["index"], 0, _MAX_U64 - 1)
    return CaseRecord(
        where=where, ref=ref, platform=platform, log_id=log_id, index=index,
        leaf_hash=_hex(f"{where}.leaf_hash", obj["leaf_hash"], DIGEST_SIZE),
        leaf=_leaf(f"{where}.leaf", obj["leaf"]),
        payment=_payment(f"{where}.payment", obj["payment"]),
        bundle=_bundle(f"{where}.bundle", obj["bundle"]),
    )


def _alert(where: str, data: object) -> CaseAlert:
    obj = _object(where, data, _ALERT_KEYS)
    rule = _string(f"{where}.rule", obj["rule"])
    if rule not in {r.value for r in Rule}:
        raise InvalidCaseFile(f"{where}.rule", f"{show(rule)} is not an AML rule")
    direction = _string(f"{where}.direction", obj["direction"])
    if direction not in {d.value for d in Direction}:
        raise InvalidCaseFile(f"{where}.direction", "must be 'payer' or 'payee'")
    platforms = _list(f"{where}.platforms", obj["platforms"])
    refs = _list(f"{where}.refs", obj["refs"])
    if not refs:
        raise InvalidCaseFile(f"{where}.refs", "an alert rests on at least one record")
    return CaseAlert(where, Alert(
        rule=rule,
        identity=_hex(f"{where}.identity", obj["identity"], DIGEST_SIZE),
        direction=direction,
        total_fen=_integer(f"{where}.total_fen", obj["total_fen"], 1, 2**128),
        window_start=_time(f"{where}.window_start", obj["window_start"]),
        window_end=_time(f"{where}.window_end", obj["window_end"]),
        platforms=tuple(_platform(f"{where}.platforms[{i}]", p) for i, p in enumerate(platforms)),
        refs=tuple(_string(f"{where}.refs[{i}]", r) for i, r in enumerate(refs)),
        detail=_string(f"{where}.detail", obj["detail"]),
    ))


def _opening(where: str, data: object) -> RecordOpening | None:
    if data is None:
        return None
    try:
        return RecordOpening.from_json(data)
    except InvalidRecord as exc:
        raise InvalidCaseFile(f"{where}.record.{exc.field}", exc.reason) from None
    except InvalidOpening as exc:
        raise InvalidCaseFile(where, str(exc)) from None


def _disclosure(where: str, data: object) -> CaseDisclosure:
    obj = _object(where, data, _DISCLOSURE_KEYS)
    tx = obj["request_tx"]
    if isinstance(tx, str) and tx[:2] in ("0x", "0X"):  # accept the Ethereum spelling too
        tx = tx[2:]
    response = None
    if obj["response"] is not None:
        response = _hex(f"{where}.response", obj["response"])
        if not 0 < len(response) <= MAX_RESPONSE_SIZE:
            raise InvalidCaseFile(f"{where}.response",
                                  f"must be 1..{MAX_RESPONSE_SIZE} bytes, got {len(response)}")
    return CaseDisclosure(
        where=where,
        request_id=_integer(f"{where}.request_id", obj["request_id"], 1, _MAX_U64),
        platform=_platform(f"{where}.platform", obj["platform"]),
        commitment=_hex(f"{where}.commitment", obj["commitment"], DIGEST_SIZE),
        case_id=_hex(f"{where}.case_id", obj["case_id"], DIGEST_SIZE),
        case_ref=_hex(f"{where}.case_ref", obj["case_ref"], DIGEST_SIZE),
        request_tx=_hex(f"{where}.request_tx", tx, 32),
        response=response,
        opening=_opening(f"{where}.opening", obj["opening"]),
    )


def parse_case_file(document: object) -> CaseFile:
    """Parse a case file document (parsed JSON) strictly.

    Every field must be present, of its type and size, and nothing else may be there;
    ``format`` must be :data:`CASE_FILE_FORMAT`; two records may not share a reference and
    two disclosures may not share a request id. Consistency between the parts (a bundle
    about another leaf, an alert that does not add up) is left to :func:`verify_case_file`,
    which reports it as a failed check. Raises :class:`InvalidCaseFile` whose ``where`` is
    the JSON path of the offending field (``"records[3].bundle.path[1]"``).
    """
    if not isinstance(document, Mapping):
        raise InvalidCaseFile("document", "must be a JSON object")
    if "format" not in document:
        raise InvalidCaseFile("format", "is missing")
    if document["format"] != CASE_FILE_FORMAT:
        raise InvalidCaseFile("format", f"unsupported format {show(document['format'])}, "
                                        f"expected {CASE_FILE_FORMAT!r}")
    obj = _object("document", document, _CASE_KEYS)
    regulator = _object("regulator", obj["regulator"], _REGULATOR_KEYS)
    chain = _object("chain", obj["chain"], _CHAIN_KEYS)
    try:
        aml_config = AmlConfig.from_json(obj["aml_config"])
    except InvalidAmlConfig as exc:
        where = "aml_config" if exc.field == "aml_config" else f"aml_config.{exc.field}"
        raise InvalidCaseFile(where, exc.reason) from None
    except TypeError as exc:  # a setting of the wrong kind that the constructor trips over
        raise InvalidCaseFile("aml_config", str(exc)) from None
    records = tuple(_record(f"records[{i}]", r)
                    for i, r in enumerate(_list("records", obj["records"])))
    seen: dict[str, str] = {}
    for record in records:
        if record.ref in seen:
            raise InvalidCaseFile(f"{record.where}.ref",
                                  f"{record.ref!r} is already {seen[record.ref]}")
        seen[record.ref] = record.where
    disclosures = tuple(_disclosure(f"disclosures[{i}]", d)
                        for i, d in enumerate(_list("disclosures", obj["disclosures"])))
    ids: dict[int, str] = {}
    for d in disclosures:
        if d.request_id in ids:
            raise InvalidCaseFile(f"{d.where}.request_id",
                                  f"request {d.request_id} is already {ids[d.request_id]}")
        ids[d.request_id] = d.where
    name = _string("regulator.name", regulator["name"])
    if not name:
        raise InvalidCaseFile("regulator.name", "must not be empty")
    return CaseFile(
        case_id=_hex("case_id", obj["case_id"], DIGEST_SIZE),
        case_key=_hex("case_key", obj["case_key"], CASE_KEY_SIZE),
        created_at=_time("created_at", obj["created_at"]),
        regulator_name=name,
        regulator_account=_address("regulator.account", regulator["account"]),
        chain_id=_integer("chain.chain_id", chain["chain_id"], 1, _MAX_CHAIN_ID),
        contract=_address("chain.contract", chain["contract"]),
        deploy_block=_integer("chain.deploy_block", chain["deploy_block"], 0, _MAX_U64),
        abi_sha256=_hex("chain.abi_sha256", chain["abi_sha256"], 32).hex(),
        identities=tuple(_hex(f"identities[{i}]", v, DIGEST_SIZE)
                         for i, v in enumerate(_list("identities", obj["identities"]))),
        aml_config=aml_config,
        alerts=tuple(_alert(f"alerts[{i}]", a)
                     for i, a in enumerate(_list("alerts", obj["alerts"]))),
        records=records,
        disclosures=disclosures,
    )


# --------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------

CHECK_STRUCTURE: Final = "structure"
CHECK_CHAIN: Final = "chain"
CHECK_REGULATOR: Final = "regulator"
# per record
CHECK_REF: Final = "ref"
CHECK_ANCHOR: Final = "anchor"
CHECK_LEAF: Final = "leaf"
CHECK_POSITION: Final = "position"
CHECK_BUNDLE: Final = "bundle"
CHECK_PAYMENT: Final = "payment"
# per alert
CHECK_EVIDENCE: Final = "evidence"
CHECK_REPRODUCED: Final = "reproduced"
CHECK_COMPLETE: Final = "complete"
# per disclosure
CHECK_CASE: Final = "case"
CHECK_REQUEST: Final = "request"
CHECK_RESPONSE: Final = "response"
CHECK_RECORD: Final = "record"
CHECK_OPENING: Final = "opening"
CHECK_ESCROW_AGREES: Final = "escrow_agrees"
CHECK_SEALED_RESPONSE: Final = "sealed_response"


def _acceptable(check: Check) -> bool:
    return check.status in (CheckStatus.PASSED, CheckStatus.NOT_CHECKED)


@dataclass(frozen=True)
class ItemReport:
    """The checks of one record, alert or disclosure of the file."""

    where: str  # "records[3]"
    label: str  # the record's ref, the alert's rule and identity, the request id
    checks: tuple[Check, ...]
    bundle: Verdict | None = None  # a record's proof-bundle verdict

    @property
    def valid(self) -> bool:
        """Whether every performed check passed and none was left unrun."""
        return all(_acceptable(c) for c in self.checks)

    def check(self, name: str) -> Check:
        """The check called ``name``; raise ``KeyError`` if there is none."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def reasons(self) -> list[str]:
        """``"where (label): check: detail"`` for every failed check."""
        return [f"{self.where} ({self.label}): {c.name}: {c.detail}" for c in self.checks
                if c.status is CheckStatus.FAILED]

    def to_json(self) -> dict[str, Any]:
        """``{"where", "label", "valid", "checks", ["bundle"]}``."""
        out: dict[str, Any] = {"where": self.where, "label": self.label, "valid": self.valid,
                               "checks": [c.to_json() for c in self.checks]}
        if self.bundle is not None:
            out["bundle"] = self.bundle.to_json()
        return out


@dataclass(frozen=True)
class CaseReport:
    """The outcome of :func:`verify_case_file`: case-level checks and one report per item.

    ``valid`` is true when every performed check passed and none was left unrun; checks
    marked ``NOT_CHECKED`` (the escrow and sealed-response checks without the regulator's
    key) do not count against it, and ``regulator_key`` says whether they were performed.
    """

    case_id: bytes
    chain_id: int
    contract: str
    regulator: str
    checks: tuple[Check, ...]
    records: tuple[ItemReport, ...]
    alerts: tuple[ItemReport, ...]
    disclosures: tuple[ItemReport, ...]
    regulator_key: bool
    deployment_pinned: bool
    unlisted_alerts: int = 0  # alerts the file's payments raise that the file does not list
    items: tuple[ItemReport, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", self.records + self.alerts + self.disclosures)

    @property
    def all_checks(self) -> list[Check]:
        """Every check of the report: case-level, then each item's."""
        return [*self.checks, *(c for item in self.items for c in item.checks)]

    @property
    def valid(self) -> bool:
        """Whether every performed check passed and none was left unrun."""
        return all(_acceptable(c) for c in self.all_checks)

    @property
    def reasons(self) -> list[str]:
        """Every failed check with where it is, in order."""
        own = [f"{c.name}: {c.detail}" for c in self.checks if c.status is CheckStatus.FAILED]
        return own + [r for item in self.items for r in item.reasons]

    def counts(self) -> dict[str, int]:
        """How many checks passed, failed, were not run and were not checkable; items."""
        checks = self.all_checks
        out = {status.value: sum(1 for c in checks if c.status is status)
               for status in CheckStatus}
        out |= {"records": len(self.records), "alerts": len(self.alerts),
                "disclosures": len(self.disclosures),
                "items_failed": sum(1 for i in self.items if not i.valid)}
        return out

    @property
    def summary(self) -> str:
        """One line for people: VALID (with what was not checked) or INVALID: first reason."""
        if not self.valid:
            reasons = self.reasons
            more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
            return "INVALID: " + (reasons[0] + more if reasons else "a check did not run")
        text = (f"VALID: {len(self.records)} records, {len(self.alerts)} alerts and "
                f"{len(self.disclosures)} disclosures check against the chain")
        if not self.regulator_key:
            text += ("; escrows and sealed responses were NOT decrypted (no regulator key): "
                     "the payments are the regulator's statement")
        if not self.deployment_pinned:
            text += "; the contract is the one the file names, NOT pinned by the verifier"
        return text

    def item(self, where: str) -> ItemReport:
        """The report of the item at ``where`` (``"records[3]"``); ``KeyError`` if none."""
        for item in self.items:
            if item.where == where:
                return item
        raise KeyError(where)

    def check(self, name: str) -> Check:
        """The case-level check called ``name``; ``KeyError`` if there is none."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """The full report as JSON."""
        return {
            "valid": self.valid,
            "summary": self.summary,
            "case_id": self.case_id.hex(),
            "chain": {"chain_id": self.chain_id, "contract": self.contract},
            "regulator": self.regulator,
            "deployment_pinned": self.deployment_pinned,
            "regulator_key": self.regulator_key,
            "counts": self.counts(),
            "unlisted_alerts": self.unlisted_alerts,
            "checks": [c.to_json() for c in self.checks],
            "records": [r.to_json() for r in self.records],
            "alerts": [a.to_json() for a in self.alerts],
            "disclosures": [d.to_json() for d in self.disclosures],
            "reasons": self.reasons,
        }


# --------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------


def _short(data: bytes) -> str:
    return data.hex()[:16] + "…"


class _Verifier:
    """One verification of one case file; holds what the checks share."""

    def __init__(self, case: CaseFile, chain: LedgerChain, deployment: Deployment | None,
                 keys: Sequence[SM2PrivateKey]) -> None:
        self.case = case
        self.chain = chain
        self.trusted = deployment
        self.keys = tuple(keys)
        self.opener = EscrowOpener.from_keys(*keys) if keys else None
        self.attached: LedgerChain | None = None
        self.pinned = False
        self.by_ref = {r.ref: r for r in case.records}
        self.requests: dict[int, tuple[bool, bytes]] = {}  # id -> (fulfilled, digest)

    # ------------------------------------------------------------------ case level

    def structure(self) -> str:
        case = self.case
        return (f"{CASE_FILE_FORMAT}: case {case.case_id.hex()}, {len(case.records)} records, "
                f"{len(case.alerts)} alerts, {len(case.disclosures)} disclosures, by regulator "
                f"{case.regulator_name!r}, made {case.created_at.isoformat()} (not checked)")

    def _deployment(self) -> Deployment:
        """The deployment to attach to: the pinned one, else the one the file names."""
        case = self.case
        if self.trusted is not None:
            return self.trusted
        return Deployment(case.chain_id, case.contract, case.deploy_block, case.abi_sha256)

    def attach(self) -> str:
        case = self.case
        connected = self.chain.chain_id
        if connected != case.chain_id:
            raise CheckFailed(f"the file is about chain {case.chain_id}, the chain given is "
                              f"{connected}")
        trusted = self.trusted
        if trusted is not None:
            if trusted.chain_id != case.chain_id:
                raise CheckFailed(f"the file is about chain {case.chain_id}, the verifier trusts "
                                  f"the deployment on chain {trusted.chain_id}")
            address = Web3.to_checksum_address(trusted.address)
            if address != case.contract:
                raise CheckFailed(f"the file names contract {case.contract}, the verifier trusts "
                                  f"{address}")
        self.attached = self.chain.attach(self._deployment())
        self.pinned = trusted is not None
        whose = ("the deployment the verifier trusts" if self.pinned
                 else "named by the file, NOT pinned by the verifier (give --deployment)")
        return f"JointLedger {case.contract} on chain {case.chain_id}: {whose}"

    def _on_chain(self) -> LedgerChain:
        if self.attached is None:
            raise CheckFailed("chain has not passed")
        return self.attached

    def regulator(self) -> str:
        case = self.case
        member = self._on_chain().member(case.regulator_account)
        if member.role is not Role.REGULATOR:
            raise CheckFailed(f"{case.regulator_account} is {member.role.name.lower()} on chain, "
                              "not a regulator")
        if member.name != case.regulator_name:
            raise CheckFailed(f"{case.regulator_account} is registered as {member.name!r}, the "
                              f"file says {case.regulator_name!r}")
        removed = "" if member.active else " (since removed)"
        return f"{case.regulator_account} is regulator {member.name!r} on chain{removed}"

    # ------------------------------------------------------------------ records

    def verify_record(self, record: CaseRecord) -> ItemReport:
        runner = CheckRunner()
        runner.run(CHECK_REF, lambda: self._ref(record))
        runner.run(CHECK_ANCHOR, lambda: self._anchor(record))
        runner.run(CHECK_LEAF, lambda: self._leaf(record))
        runner.run(CHECK_POSITION, lambda: self._position(record))
        verdict = verify_bundle(record.bundle, chain=self.chain, deployment=self.trusted)
        runner.run(CHECK_BUNDLE, lambda: self._bundle(record, verdict))
        if self.opener is not None:
            runner.run(CHECK_PAYMENT, lambda: self._payment(record))
        else:
            stated = ("states the payment" if record.payment is not None
                      else "states the escrow is unreadable")
            runner.not_checked(CHECK_PAYMENT, f"no regulator key: the escrow was NOT decrypted; "
                               f"the file {stated}, but only the escrow's digest is bound to "
                               "the anchored leaf")
        return ItemReport(record.where, record.ref, runner.checks, verdict)

    def _ref(self, record: CaseRecord) -> str:
        expected = evidence_ref(record.platform, record.log_id, record.index)
        if record.ref != expected:
            raise CheckFailed(f"the ref is {record.ref!r}, the record's platform, log and index "
                              f"make {expected!r}")
        return f"{record.ref} names the record's platform, log and index"

    def _anchor(self, record: CaseRecord) -> str:
        anchor = record.bundle.anchor
        if (anchor.chain_id, anchor.contract) != (self.case.chain_id, self.case.contract):
            raise CheckFailed(f"the bundle is anchored in {anchor.contract} on chain "
                              f"{anchor.chain_id}, the file is about {self.case.contract} on chain "
                              f"{self.case.chain_id}")
        return f"the bundle is anchored in the file's contract, block {anchor.block_number}"

    def _leaf(self, record: CaseRecord) -> str:
        summary, leaf = record.bundle.leaf, record.leaf
        problems = []
        if not hmac.compare_digest(summary.commitment, leaf.commitment):
            problems.append(f"commitment {leaf.commitment.hex()} differs from the bundle's "
                            f"{summary.commitment.hex()}")
        digest = sm3(leaf.escrow)
        if not hmac.compare_digest(summary.escrow_digest, digest):
            problems.append(f"SM3 of the escrow is {digest.hex()}, the bundle's leaf has "
                            f"{summary.escrow_digest.hex()}")
        if (summary.match_tag, summary.amount_tag) != (leaf.match_tag, leaf.amount_tag):
            problems.append("match/amount tags differ from the bundle's")
        if record.bundle.hash_name in ("sm3", "sha256"):
            leaf_hash = hasher_for(record.bundle.hash_name).hash_leaf(leaf.leaf_data())
            if not hmac.compare_digest(leaf_hash, record.leaf_hash):
                problems.append(f"leaf_hash is {record.leaf_hash.hex()}, the leaf hashes to "
                                f"{leaf_hash.hex()}")
        if problems:
            raise CheckFailed("; ".join(problems))
        return (f"the bundle proves this leaf: commitment {_short(leaf.commitment)}, "
                f"escrow of {len(leaf.escrow)} bytes with SM3 {_short(digest)}")

    def _position(self, record: CaseRecord) -> str:
        bundle = record.bundle
        cp = bundle.checkpoint.checkpoint
        problems = []
        if bundle.index != record.index:
            problems.append(f"the bundle is for leaf {bundle.index}, the record is leaf "
                            f"{record.index}")
        if bundle.log_id != record.log_id:
            problems.append(f"the bundle is for log {_short(bundle.log_id)}, the record is in "
                            f"{_short(record.log_id)}")
        if cp.platform != record.platform:
            problems.append(f"the bundle's log is {cp.platform}'s, the record says "
                            f"{record.platform}")
        if problems:
            raise CheckFailed("; ".join(problems))
        return f"leaf {record.index} of {record.platform}'s log {_short(record.log_id)}"

    def _bundle(self, record: CaseRecord, verdict: Verdict) -> str:
        if not verdict.valid:
            raise CheckFailed("the proof bundle does not verify: " + "; ".join(verdict.reasons))
        return (f"the proof bundle verifies: leaf {record.bundle.index} of "
                f"{record.bundle.tree_size} under the root read from the chain")

    def _payment(self, record: CaseRecord) -> str:
        assert self.opener is not None
        try:
            opened = self.opener.open(record.leaf.escrow, record.leaf.commitment)
        except EscrowError as exc:
            if record.payment is None:
                return f"the escrow does not open, as the file states ({exc})"
            raise CheckFailed(f"the escrow does not open with the given key(s): "
                              f"{type(exc).__name__}: {exc}") from None
        if record.payment is None:
            raise CheckFailed(f"the file states the escrow is unreadable, but it opens to a "
                              f"payment of {opened.amount_fen} {opened.currency}")
        if opened != record.payment:
            diffs = [f"{name} (escrow: {_value(getattr(opened, name))}, file: "
                     f"{_value(getattr(record.payment, name))})"
                     for name in _PAYMENT_KEYS
                     if getattr(opened, name) != getattr(record.payment, name)]
            raise CheckFailed("the escrow decrypts to another payment than the file states: "
                              + ", ".join(diffs))
        return (f"the escrow decrypts to exactly the payment stated ({opened.amount_fen} "
                f"{opened.currency} at {opened.time.isoformat()})")

    # ------------------------------------------------------------------ alerts

    def verify_alerts(self, records: Mapping[str, ItemReport]
                      ) -> tuple[tuple[ItemReport, ...], int]:
        payments = [r.payment.traced(r.ref, r.platform) for r in self.case.records
                    if r.payment is not None]
        raised = detect(payments, self.case.aml_config)
        items = []
        for stated in self.case.alerts:
            runner = CheckRunner()
            runner.run(CHECK_EVIDENCE, functools.partial(self._evidence, stated, records))
            runner.run(CHECK_REPRODUCED, functools.partial(self._reproduced, stated, raised))
            alert = stated.alert
            label = f"{alert.rule} {alert.direction} {_short(alert.identity)}"
            items.append(ItemReport(stated.where, label, runner.checks))
        listed = [s.alert for s in self.case.alerts]
        named = set(self.case.identities)
        missing = [a for a in raised if a not in listed and a.identity in named]
        for number, alert in enumerate(missing):
            detail = (f"the file's payments raise {alert.rule} on identity "
                      f"{_short(alert.identity)} as {alert.direction} ({alert.total_fen} fen, "
                      f"{len(alert.refs)} payments), an identity the file is about, but the "
                      "file does not list it")
            items.append(ItemReport(f"identities[{number}]", f"unlisted {alert.rule}",
                                    (Check(CHECK_COMPLETE, False, detail),)))
        return tuple(items), sum(1 for a in raised if a not in listed and a.identity not in named)

    def _evidence(self, stated: CaseAlert, records: Mapping[str, ItemReport]) -> str:
        problems = []
        for ref in stated.alert.refs:
            record = self.by_ref.get(ref)
            if record is None:
                problems.append(f"{ref} is not a record in this file")
            elif record.payment is None:
                problems.append(f"{ref} ({record.where}) states no payment")
            elif not records[ref].valid:
                failed = [c.name for c in records[ref].checks if not _acceptable(c)]
                problems.append(f"{ref} ({record.where}) failed {', '.join(failed)}")
        if problems:
            raise CheckFailed("; ".join(problems))
        decrypted = ("decrypted and compared" if self.opener is not None
                     else "NOT decrypted (no regulator key)")
        return (f"all {len(stated.alert.refs)} records it rests on are in the file and verify; "
                f"their escrows were {decrypted}")

    def _reproduced(self, stated: CaseAlert, raised: Sequence[Alert]) -> str:
        alert = stated.alert
        if alert in raised:
            return (f"aml.detect with the file's settings over the file's "
                    f"{len(self.by_ref)} records raises exactly this alert "
                    f"({alert.total_fen} fen, {len(alert.refs)} payments)")
        same = [a for a in raised if (a.rule, a.identity, a.direction)
                == (alert.rule, alert.identity, alert.direction)]
        if not same:
            raise CheckFailed(f"the file's payments raise no {alert.rule} alert on identity "
                              f"{_short(alert.identity)} as {alert.direction} under the file's AML "
                              "settings")
        closest = max(same, key=lambda a: (len(set(a.refs) & set(alert.refs)),
                                           -abs(a.total_fen - alert.total_fen)))
        diffs = [_alert_diff(name, getattr(alert, name), getattr(closest, name))
                 for name in ("total_fen", "window_start", "window_end", "platforms", "refs")
                 if getattr(alert, name) != getattr(closest, name)]
        if not diffs:  # the prose alone differs (it follows from the fields otherwise)
            diffs.append(_alert_diff("detail", alert.detail, closest.detail))
        raise CheckFailed("not reproduced: the nearest alert the file's payments raise differs in "
                          + "; ".join(diffs))

    # ------------------------------------------------------------------ disclosures

    def verify_disclosure(self, entry: CaseDisclosure, chain_passed: bool) -> ItemReport:
        runner = CheckRunner()
        runner.run(CHECK_CASE, lambda: self._case(entry))
        if chain_passed:
            runner.run(CHECK_REQUEST, lambda: self._request(entry), reads_chain=True)
            runner.run(CHECK_RESPONSE, lambda: self._response(entry),
                       depends_on=(CHECK_REQUEST,))
        else:
            for name in (CHECK_REQUEST, CHECK_RESPONSE):
                runner.not_run(name, CHECK_CHAIN)
        runner.run(CHECK_RECORD, lambda: self._disclosed_record(entry))
        runner.run(CHECK_OPENING, lambda: self._opening(entry))
        runner.run(CHECK_ESCROW_AGREES, lambda: self._escrow_agrees(entry),
                   depends_on=(CHECK_RECORD, CHECK_OPENING))
        if self.keys:
            runner.run(CHECK_SEALED_RESPONSE, lambda: self._sealed(entry),
                       depends_on=(CHECK_OPENING,))
        else:
            runner.not_checked(CHECK_SEALED_RESPONSE, "no regulator key: the sealed response "
                               "was NOT decrypted; that the platform sent this opening rests on "
                               "the digest alone, that it opens the commitment is checked above")
        return ItemReport(entry.where, f"request {entry.request_id} to {entry.platform}",
                          runner.checks)

    def _case(self, entry: CaseDisclosure) -> str:
        problems = []
        if entry.case_id != self.case.case_id:
            problems.append(f"the entry is for case {entry.case_id.hex()}, the file is case "
                            f"{self.case.case_id.hex()}")
        expected = case_reference(self.case.case_key, entry.commitment)
        if entry.case_ref != expected:
            problems.append(f"the entry's case_ref is {entry.case_ref.hex()}, the file's case "
                            f"key and the commitment give {expected.hex()}")
        if problems:
            raise CheckFailed("; ".join(problems))
        return "the entry is for the file's case, its reference derived from the case key"

    def _request(self, entry: CaseDisclosure) -> str:
        chain = self._on_chain()
        request = chain.disclosure_request(entry.request_id)
        problems = []
        if request.regulator != self.case.regulator_account:
            problems.append(f"the request was made by {request.regulator}, not the file's "
                            f"regulator {self.case.regulator_account}")
        member = chain.member(request.platform)
        if member.name != entry.platform or member.role is not Role.PLATFORM:
            problems.append(f"the request is addressed to {request.platform}, registered as "
                            f"{member.role.name.lower()} {member.name!r}, not platform "
                            f"{entry.platform!r}")
        if request.commitment != entry.commitment:
            problems.append(f"the request names commitment {request.commitment.hex()}, the "
                            f"entry {entry.commitment.hex()}")
        reference = case_reference(self.case.case_key, entry.commitment)
        if request.case_id != reference:
            problems.append(f"the request carries case reference {request.case_id.hex()}, "
                            f"not the file's case key's reference {reference.hex()} for this "
                            "commitment")
        events = chain.events("DisclosureRequested", request.requested_block,
                              to_block=request.requested_block, requestId=entry.request_id)
        if not any(e.tx_hash == entry.request_tx for e in events):
            problems.append(f"transaction 0x{entry.request_tx.hex()} did not log request "
                            f"{entry.request_id} (block {request.requested_block})")
        if problems:
            raise CheckFailed("; ".join(problems))
        self.requests[entry.request_id] = request.fulfilled, request.response_digest
        return (f"request {entry.request_id} is on chain as stated: {self.case.regulator_name} "
                f"asked {entry.platform} to open {_short(entry.commitment)} for this case "
                f"(block {request.requested_block})")

    def _response(self, entry: CaseDisclosure) -> str:
        fulfilled, digest = self.requests[entry.request_id]
        if not fulfilled:
            raise CheckFailed("the request is not fulfilled on chain: the platform has logged no "
                              "answer")
        if entry.response is None:
            raise CheckFailed("the file holds no response to the request")
        got = response_digest(entry.response)
        if not hmac.compare_digest(got, digest):
            raise CheckFailed(f"SM3 of the response in the file is {got.hex()}, the platform "
                              f"logged {digest.hex()} on chain")
        return f"SM3 of the response is the digest {_short(digest)} the platform logged on chain"

    def _record_of(self, entry: CaseDisclosure) -> CaseRecord:
        for record in self.case.records:
            if record.platform == entry.platform and record.leaf.commitment == entry.commitment:
                return record
        raise CheckFailed(f"commitment {entry.commitment.hex()} is not the commitment of a "
                          f"record of {entry.platform} in this file")

    def _disclosed_record(self, entry: CaseDisclosure) -> str:
        record = self._record_of(entry)
        return f"the commitment is {record.where} ({record.ref})"

    def _opening(self, entry: CaseDisclosure) -> str:
        if entry.opening is None:
            raise CheckFailed("the file holds no opening for this request")
        verify_opening(entry.commitment, entry.opening)
        if entry.opening.record.platform != entry.platform:
            raise CheckFailed(f"the opened record is {entry.opening.record.platform!r}'s, the "
                              f"request went to {entry.platform!r}")
        return "the record and salt open the commitment"

    def _escrow_agrees(self, entry: CaseDisclosure) -> str:
        record = self._record_of(entry)
        assert entry.opening is not None
        opened = entry.opening.record
        if record.payment is None:
            raise CheckFailed(f"{record.where} states no payment (its escrow was unreadable): the "
                              "opening cannot be compared with it")
        mismatches = payload_mismatches(record.payment, opened)
        if mismatches:
            shown = ", ".join(
                f"{name} (escrow: {_value(getattr(record.payment, name))}, opening: "
                f"{_value(_opened_value(opened, name))})" for name in mismatches)
            raise CheckFailed(f"the platform escrowed something else than it committed: {shown} "
                              f"of {record.where} disagree with the opened record")
        source = ("the escrow as decrypted" if self.opener is not None
                  else "the payment the file states (escrow NOT decrypted)")
        return f"the opened record agrees with {source} in every escrowed field"

    def _sealed(self, entry: CaseDisclosure) -> str:
        if entry.response is None:
            raise CheckFailed("the file holds no response to decrypt")
        opening = open_disclosure_response(
            self.keys, entry.response, entry.request_id, entry.commitment,
            chain_id=self.case.chain_id, contract=self.case.contract)
        if opening != entry.opening:
            raise CheckFailed("the sealed response decrypts to another opening than the file holds")
        return "the sealed response decrypts to exactly the opening in the file"


def _opened_value(record: PaymentRecord, name: str) -> object:
    """The opened record's value of escrow payload field ``name`` (identities as keys)."""
    if name == "payer_key":
        return identity_key(record.payer_identity)
    if name == "payee_key":
        return identity_key(record.payee_identity)
    return getattr(record, name)


def _value(value: object) -> str:
    if isinstance(value, bytes):
        return _short(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(getattr(value, "value", value))


def _alert_diff(name: str, stated: object, raised: object) -> str:
    if name == "refs":
        assert isinstance(stated, tuple) and isinstance(raised, tuple)
        extra = [r for r in stated if r not in raised]
        missing = [r for r in raised if r not in stated]
        parts = []
        if extra:
            parts.append(f"the file adds {', '.join(extra)}")
        if missing:
            parts.append(f"the file lacks {', '.join(missing)}")
        if not parts:
            parts.append("the order differs")
        return "refs: " + "; ".join(parts)
    return f"{name}: the file says {_value(stated)}, the payments give {_value(raised)}"


def verify_case_file(
    case: CaseFile,
    *,
    chain: LedgerChain,
    deployment: Deployment | None = None,
    regulator_keys: Sequence[SM2PrivateKey] = (),
) -> CaseReport:
    """Verify ``case`` against ``chain`` and return a :class:`CaseReport` of every check.

    ``deployment`` (or a ``chain`` already bound to one) pins the contract: the file must
    name exactly it (else ``chain`` fails and the disclosure checks reading the chain are
    not run); without it the contract is the one the file names and the report says it is
    not pinned. ``regulator_keys`` (current and
    retired) decrypt every escrow and sealed response and compare them with what the file
    states; without them those checks are ``NOT_CHECKED``.

    Case-level checks: ``structure``, ``chain`` (chain id, contract code and ABI),
    ``regulator`` (the file's account is a regulator of that name on chain). Per record:
    ``ref``, ``anchor``, ``leaf``, ``position``, ``bundle`` (:func:`verify_bundle` against
    the chain), ``payment``. Per alert: ``evidence``, ``reproduced``. Per disclosure:
    ``case``, ``request``, ``response``, ``record``, ``opening``, ``escrow_agrees``,
    ``sealed_response``. Never raises for a bad file; raises :class:`ChainError` only when
    the chain cannot be read.
    """
    if deployment is None:
        try:  # a chain already bound to a deployment pins it, as for proof bundles
            deployment = chain.deployment
        except ChainError:
            deployment = None
    verifier = _Verifier(case, chain, deployment, regulator_keys)
    runner = CheckRunner()
    runner.run(CHECK_STRUCTURE, verifier.structure)
    runner.run(CHECK_CHAIN, verifier.attach, reads_chain=True)
    runner.run(CHECK_REGULATOR, verifier.regulator, depends_on=(CHECK_CHAIN,), reads_chain=True)
    records = tuple(verifier.verify_record(r) for r in case.records)
    alerts, unlisted = verifier.verify_alerts({r.label: r for r in records})
    chain_passed = CHECK_CHAIN in runner.passed
    disclosures = tuple(verifier.verify_disclosure(d, chain_passed) for d in case.disclosures)
    return CaseReport(
        case_id=case.case_id, chain_id=case.chain_id, contract=case.contract,
        regulator=case.regulator_name, checks=runner.checks, records=records,
        alerts=alerts, disclosures=disclosures, regulator_key=bool(regulator_keys),
        deployment_pinned=verifier.pinned, unlisted_alerts=unlisted,
    )


def render_case_report(report: CaseReport) -> str:
    """Return a case report as lines for people:
    the case-level checks, one line per record, alert and disclosure (with each check that
    did not pass under it), then the counts and the summary."""
    lines = [
        f"case file: case {report.case_id.hex()}, regulator {report.regulator}, chain "
        f"{report.chain_id}, contract {report.contract}",
        "contract: " + ("pinned by --deployment" if report.deployment_pinned
                        else "named by the file, NOT pinned (give --deployment)"),
        "regulator key: " + ("given: escrows and sealed responses decrypted and compared"
                             if report.regulator_key else
                             "not given: escrows and sealed responses NOT decrypted"),
    ]
    width = max(len(c.name) for c in report.checks)
    lines += [check_line(c, width) for c in report.checks]
    for title, items in (("records", report.records), ("alerts", report.alerts),
                         ("disclosures", report.disclosures)):
        lines.append(f"{title} ({len(items)}):")
        where = max((len(i.where) for i in items), default=0)
        for item in items:
            mark = "PASS" if item.valid else "FAIL"
            unchecked = [c.name for c in item.checks if c.status is CheckStatus.NOT_CHECKED]
            note = f"  (not checked: {', '.join(unchecked)})" if unchecked else ""
            lines.append(f"  {mark}  {item.where.ljust(where)}  {item.label}{note}")
            lines += ["      " + check_line(c, 0).strip() for c in item.checks
                      if c.status in (CheckStatus.FAILED, CheckStatus.NOT_RUN)]
    counts = report.counts()
    lines.append(f"checks: {counts['passed']} passed, {counts['failed']} failed, "
                 f"{counts['not_run']} not run, {counts['not_checked']} not checked")
    if report.unlisted_alerts:
        lines.append(f"note: the file's payments raise {report.unlisted_alerts} more alert(s) "
                     "that the file does not list")
    lines.append(report.summary)
    return "\n".join(lines)
