"""API schemas: the JSON shapes of requests and responses, apart from the domain dataclasses.

Request models validate form (hex lengths, sizes, types) before any domain code runs, so
malformed input becomes a 422 problem naming the field; the domain types
(:class:`~ledger_node.log.leaf.Leaf`, :class:`~ledger_node.protocol.bundle.ProofBundle`) are built
from them in the routes. Response models are built from the domain types by their ``of``
constructors, which the routes return; where a domain type has its own JSON form
(``to_json``), the model is made from it, so the type keeps one wire format. Every model
carries an example for the OpenAPI page at ``/docs``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from ledger_node.chain.adapter import DisclosureRequest
from ledger_node.log.leaf import MAX_ESCROW_BYTES, Leaf, LeafSummary
from ledger_node.log.merkle import ConsistencyProof
from ledger_node.platform.chain_watch import ChainStatus
from ledger_node.platform.node import LeafStatus
from ledger_node.platform.sealer import SealerCounters
from ledger_node.platform.store import StoredCheckpoint, StoredDisclosureResponse
from ledger_node.protocol.bundle import Verdict
from ledger_node.protocol.disclosure import MAX_RESPONSE_SIZE

MAX_BATCH: Final = 10_000

_EXAMPLE_DIGEST: Final = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
_EXAMPLE_ADDRESS: Final = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
_EXAMPLE_SIGNATURE: Final = (
    "3045022100c1d1a6f0e5b8e2d4a3f6c7b8a9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192"
    "02203a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829"
)

Digest = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$",
                              description="32 bytes as 64 hex digits",
                              examples=[_EXAMPLE_DIGEST])]
HexBytes = Annotated[str, Field(pattern=r"^(?:[0-9a-fA-F]{2})*$",
                                description="bytes as hex digit pairs")]
Address = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$",
                               description="a 20-byte chain address, 0x-prefixed",
                               examples=[_EXAMPLE_ADDRESS])]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LeafIn(_Strict):
    """One leaf as submitted: public data only (a commitment, never a record)."""

    commitment: Digest = Field(description="record commitment C (SM3)")
    escrow: HexBytes = Field(default="", max_length=2 * MAX_ESCROW_BYTES,
                             description="regulator escrow (v1: 293 bytes; empty without one)")
    match_tag: Digest | None = Field(default=None, description="cross-platform match tag")
    amount_tag: Digest | None = Field(default=None, description="amount tag (with match_tag)")

    def to_leaf(self) -> Leaf:
        """The domain leaf; raises InvalidLeaf if the tags are not given together."""
        return Leaf(
            bytes.fromhex(self.commitment),
            bytes.fromhex(self.escrow),
            None if self.match_tag is None else bytes.fromhex(self.match_tag),
            None if self.amount_tag is None else bytes.fromhex(self.amount_tag),
        )


class SubmissionCreate(_Strict):
    """A batch of 1..10,000 leaves signed by the submitting platform."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "leaves": [{"commitment": _EXAMPLE_DIGEST, "escrow": "", "match_tag": None,
                        "amount_tag": None}],
            "signer": _EXAMPLE_ADDRESS,
            "signature": _EXAMPLE_SIGNATURE,
        }]},
    )

    leaves: list[LeafIn] = Field(min_length=1, max_length=MAX_BATCH)
    signer: Address = Field(description="chain address of the platform member signing")
    signature: HexBytes = Field(min_length=2, max_length=512,
                                description="DER SM2 signature over batch_digest(log_id, leaves)")


class ReceiptPublic(BaseModel):
    """Where one submitted leaf sits in the log."""

    index: int = Field(examples=[41])
    leaf_hash: Digest
    duplicate: bool = Field(description="true if the leaf was already in the log")


class SubmissionReceipts(BaseModel):
    """The receipts of a durably committed batch, in submission order."""

    receipts: list[ReceiptPublic]


class LeafSummaryPublic(BaseModel):
    """The public parts a leaf's hash is made of."""

    commitment: Digest
    escrow_digest: Digest
    match_tag: Digest | None = None
    amount_tag: Digest | None = None

    @classmethod
    def of(cls, summary: LeafSummary) -> LeafSummaryPublic:
        """The API form of ``summary``: its own :meth:`~LeafSummary.to_json`."""
        return cls.model_validate(summary.to_json())


class LeafPublic(BaseModel):
    """A whole leaf as stored, escrow included (regulator-only data)."""

    commitment: Digest
    escrow: HexBytes = Field(description="regulator escrow ciphertext, empty if none")
    match_tag: Digest | None = None
    amount_tag: Digest | None = None


_EXAMPLE_ESCROW: Final = "01" + "ab" * 260


class LeafRangePublic(BaseModel):
    """The leaves ``[start, end)`` of a log with their escrows, for a regulator."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "log_id": _EXAMPLE_DIGEST, "platform": "unionpay", "hash": "sm3", "start": 0,
        "end": 1, "size": 1200,
        "leaves": [{"commitment": _EXAMPLE_DIGEST, "escrow": _EXAMPLE_ESCROW,
                    "match_tag": None, "amount_tag": None}],
    }]})

    log_id: Digest
    platform: str = Field(examples=["unionpay"])
    hash: str = Field(examples=["sm3"])
    start: int = Field(description="index of the first leaf returned")
    end: int = Field(description="one past the index of the last leaf returned")
    size: int = Field(description="the log's size when the range was read")
    leaves: list[LeafPublic]


_EXAMPLE_RESPONSE: Final = "01" + "5e" * 16 + "c3" * 112 + "9a" * 12 + "77" * 40 + "10" * 16


class DisclosureRequestPublic(BaseModel):
    """A regulator's disclosure request addressed to this platform, as the chain holds it,
    and whether this node holds the answer."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 3, "regulator": _EXAMPLE_ADDRESS, "platform": _EXAMPLE_ADDRESS,
        "commitment": _EXAMPLE_DIGEST, "case_id": _EXAMPLE_DIGEST, "requested_block": 41,
        "fulfilled": True, "response_digest": _EXAMPLE_DIGEST, "answered": True,
    }]})

    id: int = Field(description="request id on chain")
    regulator: Address
    platform: Address
    commitment: Digest = Field(description="the commitment the regulator asks to open")
    case_id: Digest
    requested_block: int
    fulfilled: bool = Field(description="the platform logged its answer's digest on chain")
    response_digest: Digest | None = Field(description="SM3 of the answer, once fulfilled")
    answered: bool = Field(description="this node stores the answer")

    @classmethod
    def of(cls, request: DisclosureRequest, stored: StoredDisclosureResponse | None
           ) -> DisclosureRequestPublic:
        """``request`` as read on chain, with ``stored``, this node's answer if any."""
        return cls(
            id=request.id,
            regulator=request.regulator,
            platform=request.platform,
            commitment=request.commitment.hex(),
            case_id=request.case_id.hex(),
            requested_block=request.requested_block,
            fulfilled=request.fulfilled,
            response_digest=request.response_digest.hex() if request.fulfilled else None,
            answered=stored is not None and stored.fulfilled,
        )


class DisclosureResponseCreate(_Strict):
    """A sealed disclosure response (``ledger_node.protocol.disclosure``) for the node to store and
    log on chain."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "response": _EXAMPLE_RESPONSE, "index": 41,
    }]})

    response: HexBytes = Field(min_length=2, max_length=2 * MAX_RESPONSE_SIZE,
                               description="the sealed response, hex")
    index: int | None = Field(default=None, ge=0, le=2**63 - 1,
                              description="where the requested leaf is, if known (a hint)")


class DisclosureFulfilment(BaseModel):
    """Where the answer's digest was logged on chain."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "request_id": 3, "response_digest": _EXAMPLE_DIGEST, "tx_hash": "0x" + _EXAMPLE_DIGEST,
        "block": 42,
    }]})

    request_id: int
    response_digest: Digest
    tx_hash: str = Field(description="the fulfilDisclosure transaction, 0x-prefixed")
    block: int

    @classmethod
    def of(cls, stored: StoredDisclosureResponse) -> DisclosureFulfilment:
        """Where ``stored`` (an answer already logged on chain) was logged."""
        assert stored.tx_hash is not None and stored.block_number is not None
        return cls(request_id=stored.request_id, response_digest=stored.digest.hex(),
                   tx_hash="0x" + stored.tx_hash.hex(), block=stored.block_number)


class DisclosureResponsePublic(BaseModel):
    """The stored, fulfilled answer to a disclosure request, for the regulator to open."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "request_id": 3, "response": _EXAMPLE_RESPONSE, "response_digest": _EXAMPLE_DIGEST,
        "tx_hash": "0x" + _EXAMPLE_DIGEST,
    }]})

    request_id: int
    response: HexBytes
    response_digest: Digest
    tx_hash: str

    @classmethod
    def of(cls, stored: StoredDisclosureResponse) -> DisclosureResponsePublic:
        """``stored`` (an answer already logged on chain) with its sealed bytes."""
        assert stored.tx_hash is not None
        return cls(request_id=stored.request_id, response=stored.response.hex(),
                   response_digest=stored.digest.hex(), tx_hash="0x" + stored.tx_hash.hex())


class LeafStatusPublic(BaseModel):
    """A leaf's place in the log and whether a checkpoint covering it is anchored."""

    index: int
    leaf_hash: Digest
    anchored: bool
    checkpoint_size: int | None = Field(
        description="size of the first anchored checkpoint covering the leaf, if any")
    leaf: LeafSummaryPublic
    bundle: str = Field(description="path of the leaf's proof bundle",
                        examples=["/v1/leaves/41/bundle"])

    @classmethod
    def of(cls, status: LeafStatus, summary: LeafSummary) -> LeafStatusPublic:
        """The status of the leaf ``summary`` summarises, with its bundle's path."""
        return cls(index=status.index, leaf_hash=status.leaf_hash.hex(),
                   anchored=status.anchored, checkpoint_size=status.checkpoint_size,
                   leaf=LeafSummaryPublic.of(summary),
                   bundle=f"/v1/leaves/{status.index}/bundle")


class CheckpointPublic(BaseModel):
    """A checkpoint of this log signed by the platform and anchored on chain."""

    platform: str = Field(examples=["unionpay"])
    log_id: Digest
    tree_size: int
    root: Digest
    timestamp: int = Field(description="Unix seconds when the sealer made it")
    hash: str = Field(examples=["sm3"])
    signature: HexBytes = Field(description="platform's DER SM2 signature")
    tx_hash: str | None = Field(description="anchoring transaction, 0x-prefixed")
    block_number: int | None
    final: bool | None = Field(default=None, description="whether its anchoring has the "
                               "configured number of confirmations")

    @classmethod
    def of(cls, stored: StoredCheckpoint, final_size: int | None = None) -> CheckpointPublic:
        """``stored`` as served: its signed JSON (:meth:`SignedCheckpoint.to_json`) and its
        anchoring (``0x`` transaction hash); given ``final_size`` (the node's largest final
        size), whether it is final, else ``final`` is left unset."""
        document = stored.signed().to_json() | {
            "tx_hash": None if stored.tx_hash is None else "0x" + stored.tx_hash.hex(),
            "block_number": stored.block_number,
        }
        if final_size is not None:
            document["final"] = stored.anchored and stored.tree_size <= final_size
        return cls.model_validate(document)


class CheckpointList(BaseModel):
    """Anchored checkpoints, oldest first."""

    log_id: Digest
    checkpoints: list[CheckpointPublic]


class ConsistencyPublic(BaseModel):
    """RFC 9162 consistency proof between two anchored sizes of this log."""

    log_id: Digest
    hash: str
    from_size: int = Field(alias="from")
    to_size: int = Field(alias="to")
    root_from: Digest
    root_to: Digest
    path: list[Digest]

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    @classmethod
    def of(cls, log_id: bytes, hash_name: str, proof: ConsistencyProof, root_from: bytes,
           root_to: bytes) -> ConsistencyPublic:
        """``proof`` between the anchored roots ``root_from`` and ``root_to`` of ``log_id``."""
        return cls.model_validate({
            "log_id": log_id.hex(), "hash": hash_name, "from": proof.size1,
            "to": proof.size2, "root_from": root_from.hex(), "root_to": root_to.hex(),
            "path": [p.hex() for p in proof.path],
        })


class CheckpointInBundle(BaseModel):
    """The signed checkpoint inside a bundle."""

    platform: str
    log_id: Digest
    tree_size: int
    root: Digest
    timestamp: int
    hash: str
    signature: HexBytes


class AnchorPublic(BaseModel):
    """Where a checkpoint was anchored."""

    chain_id: int
    contract: Address
    deploy_block: int
    abi_sha256: str
    tx_hash: str
    block_number: int


_EXAMPLE_BUNDLE: Final[dict[str, Any]] = {
    "format": "jointledger/proof-bundle/v1",
    "hash": "sm3",
    "leaf": {"commitment": _EXAMPLE_DIGEST, "escrow_digest": _EXAMPLE_DIGEST,
             "match_tag": None, "amount_tag": None},
    "index": 0,
    "tree_size": 2,
    "path": [_EXAMPLE_DIGEST],
    "checkpoint": {"platform": "unionpay", "log_id": _EXAMPLE_DIGEST, "tree_size": 2,
                   "root": _EXAMPLE_DIGEST, "timestamp": 1795770000, "hash": "sm3",
                   "signature": _EXAMPLE_SIGNATURE},
    "anchor": {"chain_id": 131277322940537, "contract": _EXAMPLE_ADDRESS,
               "deploy_block": 1, "abi_sha256": _EXAMPLE_DIGEST,
               "tx_hash": "0x" + _EXAMPLE_DIGEST, "block_number": 7},
}


class ProofBundlePublic(BaseModel):
    """A self-contained proof that a leaf is in the log at an anchored checkpoint."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_BUNDLE]})

    format: str
    hash: str
    leaf: LeafSummaryPublic
    index: int
    tree_size: int
    path: list[Digest]
    checkpoint: CheckpointInBundle
    anchor: AnchorPublic


class PendingProof(BaseModel):
    """202 body while a leaf waits for its checkpoint to be anchored (problem-like)."""

    type: str
    title: str
    status: Literal[202]
    detail: str
    instance: str
    index: int
    retry_after: int


class VerifyRequest(_Strict):
    """A bundle to verify against the chain, optionally with an opening or a disclosure."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "bundle": _EXAMPLE_BUNDLE,
    }]})

    bundle: dict[str, Any] = Field(description="a proof bundle document (see ProofBundlePublic)")
    opening: dict[str, Any] | None = Field(
        default=None, description='whole-record opening {"record": {...}, "salt": hex}')
    disclosure: dict[str, Any] | None = Field(
        default=None, description="single-field disclosure of the committed record")


class CheckPublic(BaseModel):
    """One verification step."""

    name: str
    status: str = Field(examples=["passed"])
    passed: bool
    detail: str


class VerdictPublic(BaseModel):
    """The verifier's verdict: valid only if every performed check passed."""

    valid: bool
    anchoring_checked: bool
    mode: str
    root: Digest | None
    checks: list[CheckPublic]
    reasons: list[str]

    @classmethod
    def of(cls, verdict: Verdict) -> VerdictPublic:
        """The API form of ``verdict``: its own :meth:`~Verdict.to_json`, less the fields
        this model does not publish (``summary``, ``deployment_pinned``)."""
        return cls.model_validate(verdict.to_json())


class ChainHealth(BaseModel):
    """The chain as this node's background probe last saw it."""

    reachable: bool
    chain_id: int | None = None
    block_number: int | None = None
    contract: str | None = None
    latest_anchored_size: int | None = None
    error: str | None = None
    checked_at: float | None = Field(
        default=None, description="Unix seconds when the latest chain probe finished")
    age_s: float | None = Field(
        default=None, description="seconds since then; past the node's chain_status_max_age "
        "(15 s) the chain counts as unreachable")
    last_answered_at: float | None = Field(
        default=None, description="Unix seconds when a probe last got the chain's answer")

    @classmethod
    def of(cls, status: ChainStatus, contract: str) -> ChainHealth:
        """What the probe read (chain id, head, the node's ``contract``, latest anchored
        size) when it answered, else why the chain counts as unreachable; and when it ran.
        Fields that do not apply are left unset (so ``exclude_unset`` leaves them out)."""
        fields: dict[str, Any] = {"reachable": status.reachable}
        if status.probe is not None:
            fields |= {"chain_id": status.probe.chain_id,
                       "block_number": status.probe.block_number,
                       "contract": contract,
                       "latest_anchored_size": status.probe.latest_anchored_size}
        else:
            fields["error"] = status.error
        fields |= {"checked_at": status.checked_at,
                   "age_s": None if status.age_s is None else round(status.age_s, 3),
                   "last_answered_at": status.last_answered_at}
        return cls.model_validate(fields)


class AnchoringHealth(BaseModel):
    """The sealer as this node sees it: finality, and its latest failure (kept after it
    recovered; ``failing`` says whether anchoring is stalled now)."""

    failing: bool
    failures: int
    last_error: str | None = Field(description="e.g. 'ContractRevert: contract reverted: "
                                   "Membership_NotPlatform(...)'")
    confirmations: int
    final_size: int
    checked_head: int | None = Field(description="chain head at the latest finality check")
    lost_anchorings: int = Field(description="anchorings the chain lost, sent again")

    @classmethod
    def of(cls, sealer: SealerCounters) -> AnchoringHealth:
        """The sealer's counters as health reports them."""
        return cls(failing=sealer.failing, failures=sealer.anchoring_failures,
                   last_error=sealer.last_error, confirmations=sealer.confirmations,
                   final_size=sealer.final_size, checked_head=sealer.checked_head,
                   lost_anchorings=sealer.lost_anchorings)


class CryptoPublic(BaseModel):
    """What runs the node's cryptography (``jointledger --version`` shows the same)."""

    sm2: str = Field(description="the SM2 backend: `openssl <version>` (OpenSSL 3 through "
                     "ctypes, the default) or `gmssl (pure Python, not constant-time)`",
                     examples=["openssl 3.0.19"])


class Health(BaseModel):
    """Liveness and the log's state; ``degraded`` when the chain does not answer or
    anchoring is failing."""

    status: Literal["ok", "degraded"]
    platform: str
    log_id: Digest
    hash: str
    store_size: int
    chain: ChainHealth
    last_anchored: CheckpointPublic | None
    final_size: int = Field(default=0, description="the largest final anchored size")
    anchoring: AnchoringHealth | None = None
    crypto: CryptoPublic
    intake_halted: str | None = Field(
        default=None, description="why the node acknowledges nothing (its store is behind the "
        "chain or damaged); health then answers 503 with the problem")


class ProblemPublic(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": "https://jointledger.example/problems/invalid-leaf",
        "title": "Invalid leaf",
        "status": 422,
        "detail": "invalid leaf 'amount_tag': match_tag and amount_tag come together or not "
                  "at all",
        "instance": "/v1/logs/9f86…/leaves",
    }]})

    type: str
    title: str
    status: int
    detail: str
    instance: str
