"""Response schemas of the regulator node's API (``/v1`` of :mod:`api.regulator_app`).

As in :mod:`api.schemas`, each model is built from the domain type's own JSON form
(``to_json``) by its ``of`` constructor, so a type keeps one wire format and the OpenAPI
document describes every answer. Field order is the ``to_json`` order: a route answers
exactly the bytes it answered when it returned the dict (tests/test_regulator_wire.py).
Times are the strings the domain writes (ISO 8601, ``+00:00``), not ``datetime`` fields,
which pydantic would write with a ``Z``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, Field

from api.schemas import Address, CryptoPublic, Digest, HexBytes, LeafPublic, ProofBundlePublic
from ledger_node.regulator.node import (
    CollectedDisclosure,
    LogProgress,
    NumberedAlert,
    TracedRecord,
)
from ledger_node.regulator.store import Fault, StoredDisclosure

_EXAMPLE_DIGEST: Final = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
_EXAMPLE_REF: Final = f"unionpay/{_EXAMPLE_DIGEST}/41"
_EXAMPLE_TIME: Final = "2026-11-27T01:00:00+00:00"
IsoTime = Annotated[str, Field(description="ISO 8601 in UTC", examples=[_EXAMPLE_TIME])]


# --------------------------------------------------------------------------------------
# Health and ingest
# --------------------------------------------------------------------------------------


class RegulatorHealth(BaseModel):
    """Counts only (no authentication): how many logs are followed, how far behind, how many
    faults; ``degraded`` while the last follow round failed."""

    status: Literal["ok", "degraded"]
    role: Literal["regulator"]
    name: str = Field(examples=["pboc"])
    logs: int = Field(description="platform logs followed")
    behind: int = Field(description="anchored leaves not verified yet, over every log")
    faults: int
    last_error: str | None = Field(description="why the last follow round failed, if it did")
    crypto: CryptoPublic

    @classmethod
    def of(cls, name: str, progress: list[LogProgress], faults: int,
           last_error: str | None, crypto: CryptoPublic) -> RegulatorHealth:
        """The health of the regulator node ``name`` from its logs' ``progress``, its fault
        count, its follow loop's ``last_error`` and the backends of its ``crypto``."""
        return cls(status="ok" if last_error is None else "degraded", role="regulator",
                   name=name, logs=len(progress),
                   behind=sum(p.anchored_size - p.verified_size for p in progress),
                   faults=faults, last_error=last_error, crypto=crypto)


class LogProgressPublic(BaseModel):
    """One followed log: verified size against the newest anchored size."""

    platform: str = Field(examples=["unionpay"])
    log_id: Digest
    verified_size: int
    anchored_size: int
    behind: int = Field(description="anchored_size - verified_size")
    hash: str = Field(examples=["sm3"])

    @classmethod
    def of(cls, progress: LogProgress) -> LogProgressPublic:
        """:meth:`LogProgress.to_json`."""
        return cls.model_validate(progress.to_json())


class IngestStatus(BaseModel):
    """Ingest progress per log, records indexed, and SM2 decryptions so far."""

    logs: list[LogProgressPublic]
    records: int = Field(description="records indexed")
    sm2_decryptions: int = Field(description="one per sealed batch, not per record")


class IngestRound(BaseModel):
    """What one follow-and-ingest round added, and where each log stands after it."""

    added: int = Field(description="leaves verified and indexed by this round")
    logs: list[LogProgressPublic]


class FaultPublic(BaseModel):
    """Data a platform node served that the regulator refused, or an unreadable escrow."""

    id: int
    platform: str = Field(examples=["unionpay"])
    log_id: Digest
    start: int = Field(description="first leaf of the refused range")
    end: int = Field(description="one past its last leaf")
    kind: str = Field(examples=["root-mismatch", "unreadable-escrow"])
    detail: str
    found_at: IsoTime
    last_seen: IsoTime

    @classmethod
    def of(cls, fault: Fault) -> FaultPublic:
        """:meth:`Fault.to_json`."""
        return cls.model_validate(fault.to_json())


class FaultList(BaseModel):
    """Every fault recorded against a platform's log."""

    faults: list[FaultPublic]


# --------------------------------------------------------------------------------------
# Records and traces
# --------------------------------------------------------------------------------------


class PaymentPublic(BaseModel):
    """A decrypted escrow: what the regulator learns of one payment
    (:meth:`~ledger_node.protocol.escrow.EscrowPayload.to_json`)."""

    payer_key: Digest = Field(description="SM3 identity key of the payer")
    payee_key: Digest = Field(description="SM3 identity key of the payee")
    payer_kind: Literal["person", "institution"]
    payee_kind: Literal["person", "institution"]
    amount_fen: int
    currency: str = Field(examples=["CNY"])
    time: IsoTime
    channel: str = Field(examples=["app"])
    cross_border: bool
    cash: bool
    clearing_key: Digest = Field(description="SM3 of the clearing reference, which both "
                                 "halves of a cross-platform payment share; zeros without one")


class TracedRecordPublic(BaseModel):
    """One verified record: where it is, the leaf with its escrow, the decrypted payment and
    a proof bundle built from the checkpoint read on chain."""

    ref: str = Field(description="platform/log id/index", examples=[_EXAMPLE_REF])
    platform: str = Field(examples=["unionpay"])
    log_id: Digest
    index: int
    leaf_hash: Digest
    leaf: LeafPublic
    payment: PaymentPublic | None = Field(description="null if the escrow cannot be read")
    bundle: ProofBundlePublic

    @classmethod
    def of(cls, traced: TracedRecord) -> TracedRecordPublic:
        """:meth:`TracedRecord.to_json`."""
        return cls.model_validate(traced.to_json())


class IdentityTrace(BaseModel):
    """Every record of one identity key, on every platform, in time order."""

    identity_key: Digest
    count: int
    platforms: list[str] = Field(description="platforms with records, sorted")
    records: list[TracedRecordPublic]

    @classmethod
    def of(cls, key: bytes, records: list[TracedRecord]) -> IdentityTrace:
        """The trace of identity ``key``: ``records``, and the platforms they are on."""
        return cls(identity_key=key.hex(), count=len(records),
                   platforms=sorted({r.record.platform for r in records}),
                   records=[TracedRecordPublic.of(r) for r in records])


class CommitmentTrace(BaseModel):
    """The record(s) with one commitment: their payments name the identities behind it."""

    commitment: Digest
    count: int
    records: list[TracedRecordPublic]

    @classmethod
    def of(cls, commitment: bytes, records: list[TracedRecord]) -> CommitmentTrace:
        """The ``records`` with ``commitment``."""
        return cls(commitment=commitment.hex(), count=len(records),
                   records=[TracedRecordPublic.of(r) for r in records])


# --------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------


class AlertPublic(BaseModel):
    """An AML finding: the rule, the identity and side, the total, the window, the records
    (:meth:`~ledger_node.protocol.aml.Alert.to_json`)."""

    rule: str = Field(examples=["structuring.person_domestic"],
                      description="<family>.<category> (large_value.* or structuring.*)")
    identity: Digest = Field(description="the identity key alerted on")
    direction: Literal["payer", "payee"]
    total_fen: int
    window_start: IsoTime
    window_end: IsoTime
    platforms: list[str]
    refs: list[str] = Field(description="evidence records (platform/log id/index), by time",
                            examples=[[_EXAMPLE_REF]])
    detail: str


class _AlertNumber(BaseModel):
    """An alert's number, the first field of a numbered alert."""

    id: int = Field(ge=1, description="the alert's lasting number on this node (from 1)")


# pydantic lays out the fields of a class with several bases from the last base to the
# first: ``id`` comes first, as in NumberedAlert.to_json.


class NumberedAlertPublic(AlertPublic, _AlertNumber):
    """An AML alert with its lasting number on this node."""

    @classmethod
    def of(cls, numbered: NumberedAlert) -> NumberedAlertPublic:
        """:meth:`NumberedAlert.to_json`."""
        return cls.model_validate(numbered.to_json())


class AlertList(BaseModel):
    """Alerts in a stable order, each with its number."""

    count: int
    alerts: list[NumberedAlertPublic]

    @classmethod
    def of(cls, alerts: list[NumberedAlert]) -> AlertList:
        """``alerts`` and how many there are."""
        return cls(count=len(alerts), alerts=[NumberedAlertPublic.of(n) for n in alerts])


class AlertWithEvidence(AlertPublic, _AlertNumber):
    """One alert with its number and each record it rests on, with its proof bundle."""

    evidence: list[TracedRecordPublic]

    @classmethod
    def of(cls, numbered: NumberedAlert, evidence: list[TracedRecord]) -> AlertWithEvidence:
        """``numbered`` with the records of its ``refs``."""
        return cls.model_validate(numbered.to_json()
                                  | {"evidence": [TracedRecordPublic.of(r) for r in evidence]})


# --------------------------------------------------------------------------------------
# Disclosures
# --------------------------------------------------------------------------------------


class RegulatorDisclosurePublic(BaseModel):
    """A disclosure request this regulator logged on chain."""

    request_id: int
    platform: str = Field(examples=["unionpay"])
    commitment: Digest
    case_id: Digest = Field(description="the regulator's own case number (the chain holds "
                            "a per-request reference derived from it, not this)")
    tx_hash: str = Field(description="the requesting transaction, 0x-prefixed")

    @classmethod
    def of(cls, stored: StoredDisclosure) -> RegulatorDisclosurePublic:
        """:meth:`StoredDisclosure.to_json`."""
        return cls.model_validate(stored.to_json())


class ListedDisclosure(RegulatorDisclosurePublic):
    """A disclosure request and whether its verified opening has been collected."""

    collected: bool

    @classmethod
    def of(cls, stored: StoredDisclosure) -> ListedDisclosure:
        """:meth:`StoredDisclosure.to_json` with ``collected``."""
        return cls.model_validate(stored.to_json() | {"collected": stored.opening is not None})


class DisclosureList(BaseModel):
    """Every disclosure request this regulator made."""

    disclosures: list[ListedDisclosure]


class PaymentRecordPublic(BaseModel):
    """A whole payment record as a platform committed to it
    (:meth:`~ledger_node.protocol.record.PaymentRecord.to_json`)."""

    platform: str = Field(examples=["unionpay"])
    local_tx_id: str
    payer_identity: str
    payer_account: str
    payee_identity: str
    payee_account: str
    amount_fen: int
    currency: str = Field(examples=["CNY"])
    time: str = Field(description="RFC 3339 UTC with microseconds",
                      examples=["2026-11-27T01:00:00.000000Z"])
    channel: str = Field(examples=["app"])
    cross_border: bool
    clearing_ref: str


class RecordOpeningPublic(BaseModel):
    """A whole-record opening: the record and the salt that recompute its commitment."""

    record: PaymentRecordPublic
    salt: HexBytes


class CollectedDisclosurePublic(BaseModel):
    """A platform's answer, verified: it matches the digest logged on chain and opens the
    commitment; ``escrow_mismatches`` names the escrow fields it contradicts."""

    request_id: int
    ref: str = Field(description="the record opened", examples=[_EXAMPLE_REF])
    opening: RecordOpeningPublic
    escrow_mismatches: list[str]

    @classmethod
    def of(cls, collected: CollectedDisclosure) -> CollectedDisclosurePublic:
        """:meth:`CollectedDisclosure.to_json`."""
        return cls.model_validate(collected.to_json())


# --------------------------------------------------------------------------------------
# Case files
# --------------------------------------------------------------------------------------


class CaseRegulator(BaseModel):
    """The regulator node that wrote the case file."""

    name: str = Field(examples=["pboc"])
    account: Address


class CaseChain(BaseModel):
    """The deployment the case file's proofs are checked against."""

    chain_id: int
    contract: Address
    deploy_block: int
    abi_sha256: Digest


class AmlConfigPublic(BaseModel):
    """The AML settings the alerts were raised under
    (:meth:`~ledger_node.protocol.aml.AmlConfig.to_json`)."""

    cash_threshold_fen: int
    person_domestic_threshold_fen: int
    person_cross_border_threshold_fen: int
    institution_threshold_fen: int
    day_utc_offset_s: float
    cumulate_across_platforms: bool
    structuring_window_s: float
    structuring_min_payments: int
    structuring_min_platforms: int
    fen_per_unit: dict[str, str] = Field(description='currency -> CNY fen per minor unit, '
                                         'as "num/den"')


class CaseDisclosurePublic(BaseModel):
    """A collected disclosure in a case file: the request, the sealed answer, the opening."""

    request_id: int
    platform: str
    commitment: Digest
    case_id: Digest
    case_ref: Digest = Field(description="the case reference the request carries on chain")
    request_tx: str = Field(description="the requesting transaction, 0x-prefixed")
    response: HexBytes | None = Field(description="the sealed answer as the platform served it")
    opening: dict[str, Any] | None = Field(
        description='the opening {"record": {...}, "salt": hex} as the node stored it '
        '(keys sorted); see RecordOpeningPublic')


class CaseFilePublic(BaseModel):
    """A self-contained case file (``jointledger/case-file/v1``), as
    :meth:`~ledger_node.regulator.node.RegulatorNode.case_file` writes it;
    ``jointledger verify CASEFILE`` checks it against the chain with no node running."""

    format: Literal["jointledger/case-file/v1"]
    case_id: Digest
    case_key: HexBytes = Field(description="the case's secret key: the chain's case "
                               "references are derived from it")
    created_at: IsoTime
    regulator: CaseRegulator
    chain: CaseChain
    identities: list[Digest] = Field(description="the identities whose alerts are all listed")
    aml_config: AmlConfigPublic
    alerts: list[AlertPublic]
    records: list[TracedRecordPublic]
    disclosures: list[CaseDisclosurePublic]

    @classmethod
    def of(cls, document: dict[str, Any]) -> CaseFilePublic:
        """The case file ``document`` the node wrote."""
        return cls.model_validate(document)


class ConsoleLogin(BaseModel):
    """A one-time console login: the path on this node that hands the token to the page."""

    login_path: str = Field(examples=["/console/#login=1Xh0…"])
    expires_in_s: int = Field(description="seconds the token stays valid")
