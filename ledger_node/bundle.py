"""Proof bundles (PROTOCOL §5, P-inclusion): one leaf's self-contained proof, and its verifier.

A bundle carries everything needed to check, without trusting the node that served it, that a
leaf is in a platform's log and that the log's head was anchored on chain: the leaf's public
parts, its index, the RFC 9162 inclusion path, the platform's SM2-signed checkpoint and where
that checkpoint was anchored (chain id, contract, anchoring transaction and block).

:func:`verify_bundle` checks a bundle against the chain (the root it trusts is the one read
from the contract, never the bundle's), or, with only the platform's public key, up to the
signed checkpoint, saying plainly that the anchoring was not checked. It never raises for a
bad bundle: every problem is a failed :class:`Check` with a reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from eth_utils.address import is_checksum_address

from ledger_node.chain import Deployment
from ledger_node.checkpoint import Checkpoint, SignedCheckpoint
from ledger_node.errors import InvalidBundle, InvalidCheckpoint
from ledger_node.hashes import DIGEST_SIZE
from ledger_node.leaf import Leaf, LeafSummary
from ledger_node.merkle import MerkleLog

BUNDLE_FORMAT: Final = "jointledger/proof-bundle/v1"
"""The ``format`` value of the JSON documents this module writes and reads."""

HASH_NAMES: Final = ("sm3", "sha256")
MAX_PATH_LENGTH: Final = 64  # a tree of at most 2**64 - 1 leaves has paths of at most 64 hashes
MAX_SIGNATURE_BYTES: Final = 128  # a DER SM2 signature is at most 72 bytes
_MAX_UINT64: Final = 2**64 - 1
_MAX_CHAIN_ID: Final = 2**256 - 1
_PLATFORM_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})*")
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
_TX_HASH: Final = re.compile(r"0x[0-9a-fA-F]{64}")

_BUNDLE_KEYS: Final = ("format", "hash", "leaf", "index", "tree_size", "path", "checkpoint",
                       "anchor")
_LEAF_KEYS: Final = ("commitment", "escrow_digest", "match_tag", "amount_tag")
_CHECKPOINT_KEYS: Final = ("platform", "log_id", "tree_size", "root", "timestamp", "hash",
                           "signature")
_ANCHOR_KEYS: Final = ("chain_id", "contract", "deploy_block", "abi_sha256", "tx_hash",
                       "block_number")


# --------------------------------------------------------------------------------------
# The bundle
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainAnchor:
    """Where a checkpoint was anchored: the deployment and the anchoring transaction."""

    chain_id: int
    contract: str  # checksummed address of the JointLedger contract
    deploy_block: int
    abi_sha256: str
    tx_hash: bytes  # the anchorCheckpoint transaction
    block_number: int  # the block it was mined in

    @classmethod
    def of(cls, deployment: Deployment, tx_hash: bytes, block_number: int) -> ChainAnchor:
        """The anchor of a checkpoint anchored by ``tx_hash`` in ``block_number`` there."""
        return cls(deployment.chain_id, deployment.address, deployment.deploy_block,
                   deployment.abi_sha256, bytes(tx_hash), block_number)

    @property
    def deployment(self) -> Deployment:
        """The contract deployment this anchor names (what a verifier attaches to)."""
        return Deployment(self.chain_id, self.contract, self.deploy_block, self.abi_sha256)

    def to_json(self) -> dict[str, Any]:
        """The JSON form: Ethereum values as Ethereum tools print them (``0x`` tx hash)."""
        return {
            "chain_id": self.chain_id,
            "contract": self.contract,
            "deploy_block": self.deploy_block,
            "abi_sha256": self.abi_sha256,
            "tx_hash": "0x" + self.tx_hash.hex(),
            "block_number": self.block_number,
        }

    @classmethod
    def from_json(cls, data: object, *, where: str = "anchor") -> ChainAnchor:
        """Parse :meth:`to_json`'s form; raise :class:`InvalidBundle` naming the field."""
        obj = _object(where, data, _ANCHOR_KEYS)
        contract = obj["contract"]
        if not isinstance(contract, str) or not is_checksum_address(contract):
            raise InvalidBundle(f"{where}.contract", "must be a checksummed (EIP-55) address")
        abi = obj["abi_sha256"]
        if not isinstance(abi, str) or not _SHA256_HEX.fullmatch(abi):
            raise InvalidBundle(f"{where}.abi_sha256", "must be 64 lowercase hex digits")
        tx_hash = obj["tx_hash"]
        if not isinstance(tx_hash, str) or not _TX_HASH.fullmatch(tx_hash):
            raise InvalidBundle(f"{where}.tx_hash", "must be 0x and 64 hex digits")
        return cls(
            chain_id=_integer(f"{where}.chain_id", obj["chain_id"], 1, _MAX_CHAIN_ID),
            contract=contract,
            deploy_block=_integer(f"{where}.deploy_block", obj["deploy_block"], 0, _MAX_UINT64),
            abi_sha256=abi,
            tx_hash=bytes.fromhex(tx_hash[2:]),
            block_number=_integer(f"{where}.block_number", obj["block_number"], 0, _MAX_UINT64),
        )


@dataclass(frozen=True)
class ProofBundle:
    """Proof that one leaf is in a platform's log at an anchored checkpoint.

    The constructor does not check consistency (a bundle may be built wrong on purpose, to
    be rejected by :func:`verify_bundle`); :meth:`from_json` checks the form of every field.
    """

    hash_name: str  # "sm3" | "sha256": the log's hash, also named (and signed) in checkpoint
    leaf: LeafSummary
    index: int
    tree_size: int
    path: tuple[bytes, ...]  # RFC 9162 inclusion path, bottom-up
    checkpoint: SignedCheckpoint
    anchor: ChainAnchor

    @property
    def log_id(self) -> bytes:
        """The id of the log this bundle is about (the checkpoint's)."""
        return self.checkpoint.checkpoint.log_id

    def to_json(self) -> dict[str, Any]:
        """The self-contained JSON document: ``{"format": BUNDLE_FORMAT, ...}``, hex bytes."""
        cp = self.checkpoint.checkpoint
        return {
            "format": BUNDLE_FORMAT,
            "hash": self.hash_name,
            "leaf": {
                "commitment": self.leaf.commitment.hex(),
                "escrow_digest": self.leaf.escrow_digest.hex(),
                "match_tag": None if self.leaf.match_tag is None else self.leaf.match_tag.hex(),
                "amount_tag": None if self.leaf.amount_tag is None else self.leaf.amount_tag.hex(),
            },
            "index": self.index,
            "tree_size": self.tree_size,
            "path": [p.hex() for p in self.path],
            "checkpoint": cp.to_json() | {"signature": self.checkpoint.signature.hex()},
            "anchor": self.anchor.to_json(),
        }

    @classmethod
    def from_json(cls, data: object) -> ProofBundle:
        """Parse a bundle document strictly.

        Every field must be present, of its type and size, and nothing else may be there;
        ``format`` must be :data:`BUNDLE_FORMAT` and hash names ``sm3`` or ``sha256``.
        Consistency between fields (sizes, index, path length) is left to
        :func:`verify_bundle`, which reports it as a failed check. Raises
        :class:`InvalidBundle` whose ``field`` names the offending part.
        """
        if not isinstance(data, Mapping):
            raise InvalidBundle("bundle", "must be a JSON object")
        if "format" not in data:
            raise InvalidBundle("format", "is missing")
        if data["format"] != BUNDLE_FORMAT:
            raise InvalidBundle("format", f"unsupported format {_show(data['format'])}, "
                                          f"expected {BUNDLE_FORMAT!r}")
        obj = _object("bundle", data, _BUNDLE_KEYS, prefix="")
        hash_name = _hash_name("hash", obj["hash"])
        leaf = _leaf_summary(obj["leaf"])
        index = _integer("index", obj["index"], 0, _MAX_UINT64 - 1)
        tree_size = _integer("tree_size", obj["tree_size"], 1, _MAX_UINT64)
        raw_path = obj["path"]
        if not isinstance(raw_path, list):
            raise InvalidBundle("path", "must be a list of hex digests")
        if len(raw_path) > MAX_PATH_LENGTH:
            raise InvalidBundle("path", f"holds {len(raw_path)} hashes, at most "
                                        f"{MAX_PATH_LENGTH} are possible")
        path = tuple(_digest(f"path[{i}]", p) for i, p in enumerate(raw_path))
        checkpoint = _signed_checkpoint(obj["checkpoint"])
        anchor = ChainAnchor.from_json(obj["anchor"])
        return cls(hash_name, leaf, index, tree_size, path, checkpoint, anchor)


def build_bundle(
    leaf: Leaf | LeafSummary,
    index: int,
    checkpoint: SignedCheckpoint,
    anchor: ChainAnchor,
    *,
    log: MerkleLog | None = None,
    path: Sequence[bytes] | None = None,
) -> ProofBundle:
    """Assemble the bundle of leaf ``index`` at ``checkpoint`` (anchored at ``anchor``).

    Give either ``log`` (the platform's Merkle log, holding at least the checkpoint's
    leaves: the path is taken from it in O(log n)) or a ready ``path``. The hash name is
    the checkpoint's. Raises :class:`InvalidBundle` if both or neither are given, if the
    index is not below the checkpoint's size, or if ``log`` holds another leaf at ``index``
    or another hash; the result is not otherwise verified (use :func:`verify_bundle`).
    """
    summary = LeafSummary.of(leaf) if isinstance(leaf, Leaf) else leaf
    size = checkpoint.checkpoint.tree_size
    if not 0 <= index < size:
        raise InvalidBundle("index", f"leaf {index} is not in a tree of size {size}")
    if log is None:
        if path is None:
            raise InvalidBundle("path", "give exactly one of log and path")
        proof = tuple(bytes(p) for p in path)
    else:
        if path is not None:
            raise InvalidBundle("path", "give exactly one of log and path")
        if log.hasher.name != checkpoint.checkpoint.hash_name:
            raise InvalidBundle("hash", f"log hashes with {log.hasher.name}, checkpoint says "
                                        f"{checkpoint.checkpoint.hash_name}")
        if log.size < size:
            raise InvalidBundle("tree_size", f"log has {log.size} leaves, checkpoint {size}")
        if log.leaf_hash(index) != log.hasher.hash_leaf(summary.leaf_data()):
            raise InvalidBundle("leaf", f"log holds another leaf at index {index}")
        proof = log.inclusion_proof(index, size).path
    return ProofBundle(checkpoint.checkpoint.hash_name, summary, index, size, proof,
                       checkpoint, anchor)


# --------------------------------------------------------------------------------------
# JSON parsing helpers: each raises InvalidBundle naming the field
# --------------------------------------------------------------------------------------


def _object(
    where: str, data: object, keys: Sequence[str], *, prefix: str | None = None
) -> Mapping[str, Any]:
    """``data`` as a mapping with exactly ``keys``; fields are named ``prefix + key``."""
    lead = f"{where}." if prefix is None else prefix
    if not isinstance(data, Mapping):
        raise InvalidBundle(where, "must be a JSON object")
    for key in data:
        if key not in keys:
            raise InvalidBundle(f"{lead}{key}", "is not a field of this object")
    for key in keys:
        if key not in data:
            raise InvalidBundle(f"{lead}{key}", "is missing")
    return data


def _show(value: object) -> str:
    """A short repr of a rejected value for messages (documents may be hostile and large)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _integer(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidBundle(field, "must be an integer")
    if not low <= value <= high:
        raise InvalidBundle(field, f"must be in {low}..{high}, got {value}")
    return value


def _hex(field: str, value: object) -> bytes:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise InvalidBundle(field, "must be a string of hex byte pairs (no 0x)")
    return bytes.fromhex(value)


def _digest(field: str, value: object) -> bytes:
    raw = _hex(field, value)
    if len(raw) != DIGEST_SIZE:
        raise InvalidBundle(field, f"must be {DIGEST_SIZE} bytes, got {len(raw)}")
    return raw


def _hash_name(field: str, value: object) -> str:
    if not isinstance(value, str) or value not in HASH_NAMES:
        raise InvalidBundle(field, f"must be one of {HASH_NAMES}, got {_show(value)}")
    return value


def _leaf_summary(data: object) -> LeafSummary:
    obj = _object("leaf", data, _LEAF_KEYS)
    match_tag = None if obj["match_tag"] is None else _digest("leaf.match_tag", obj["match_tag"])
    amount_tag = (
        None if obj["amount_tag"] is None else _digest("leaf.amount_tag", obj["amount_tag"])
    )
    if (match_tag is None) != (amount_tag is None):
        raise InvalidBundle("leaf.amount_tag", "match_tag and amount_tag come together or not "
                                               "at all")
    return LeafSummary(
        commitment=_digest("leaf.commitment", obj["commitment"]),
        escrow_digest=_digest("leaf.escrow_digest", obj["escrow_digest"]),
        match_tag=match_tag,
        amount_tag=amount_tag,
    )


def _signed_checkpoint(data: object) -> SignedCheckpoint:
    obj = _object("checkpoint", data, _CHECKPOINT_KEYS)
    platform = obj["platform"]
    if not isinstance(platform, str) or not _PLATFORM_NAME.fullmatch(platform):
        raise InvalidBundle("checkpoint.platform", "must match [a-z][a-z0-9_-]{0,31}")
    signature = _hex("checkpoint.signature", obj["signature"])
    if not 0 < len(signature) <= MAX_SIGNATURE_BYTES:
        raise InvalidBundle("checkpoint.signature",
                            f"must be 1..{MAX_SIGNATURE_BYTES} bytes, got {len(signature)}")
    try:
        checkpoint = Checkpoint(
            platform=platform,
            log_id=_digest("checkpoint.log_id", obj["log_id"]),
            tree_size=_integer("checkpoint.tree_size", obj["tree_size"], 1, _MAX_UINT64),
            root=_digest("checkpoint.root", obj["root"]),
            timestamp=_integer("checkpoint.timestamp", obj["timestamp"], 0, _MAX_UINT64),
            hash_name=_hash_name("checkpoint.hash", obj["hash"]),
        )
    except InvalidCheckpoint as exc:  # every field was checked above; kept as a backstop
        raise InvalidBundle("checkpoint", str(exc)) from None
    return SignedCheckpoint(checkpoint, signature)


# --------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------


class CheckStatus(StrEnum):
    """What became of one check."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not_run"  # a check it depends on failed, so it could not be run
    NOT_CHECKED = "not_checked"  # this mode cannot perform it (no chain at hand)


@dataclass(frozen=True)
class Check:
    """One verification step: its name, whether it passed, and why (always human-readable).

    ``status`` tells a failure from a check that was not performed: ``NOT_RUN`` (skipped
    because a check it depends on failed) and ``NOT_CHECKED`` (this mode cannot perform
    it) both have ``passed=False``. Left out, ``status`` follows ``passed``.
    """

    name: str
    passed: bool
    detail: str
    status: CheckStatus = CheckStatus.PASSED

    def __post_init__(self) -> None:
        if not self.passed and self.status is CheckStatus.PASSED:
            object.__setattr__(self, "status", CheckStatus.FAILED)
        if self.passed and self.status is not CheckStatus.PASSED:
            raise ValueError(f"check {self.name!r} cannot both pass and be {self.status}")

    @property
    def performed(self) -> bool:
        """Whether the check was carried out (it passed or it failed)."""
        return self.status in (CheckStatus.PASSED, CheckStatus.FAILED)

    def to_json(self) -> dict[str, Any]:
        """``{"name", "status", "passed", "detail"}``."""
        return {"name": self.name, "status": self.status.value, "passed": self.passed,
                "detail": self.detail}


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`verify_bundle`.

    ``valid`` is true when no check failed and none was left unrun, i.e. every performed
    check passed; checks marked ``NOT_CHECKED`` do not count against it. In key-only mode
    the anchoring checks are ``NOT_CHECKED`` and ``anchoring_checked`` is false: a valid
    verdict then proves inclusion up to a checkpoint signed by the given key, no more.
    ``root`` is the root the leaf was proved against (in chain mode, the chain's).
    """

    valid: bool
    anchoring_checked: bool
    checks: tuple[Check, ...]
    mode: str = "chain"  # "chain" | "key-only" | "untrusted"
    root: bytes | None = None

    @property
    def reasons(self) -> list[str]:
        """The details of the checks that failed, in order (empty when valid)."""
        return [f"{c.name}: {c.detail}" for c in self.checks if c.status is CheckStatus.FAILED]

    def check(self, name: str) -> Check:
        """The check called ``name``; raise ``KeyError`` if the verdict has none."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """The JSON form: validity, mode, the root used, every check and the reasons."""
        return {
            "valid": self.valid,
            "anchoring_checked": self.anchoring_checked,
            "mode": self.mode,
            "root": None if self.root is None else self.root.hex(),
            "checks": [c.to_json() for c in self.checks],
            "reasons": self.reasons,
        }
