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

import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from eth_utils.address import is_checksum_address
from web3 import Web3

from ledger_node.chain.adapter import AnchoredCheckpoint, Deployment, LedgerChain
from ledger_node.crypto.gmcrypto import SM2PublicKey
from ledger_node.crypto.hashes import DIGEST_SIZE
from ledger_node.errors import (
    ChainError,
    ContractRevert,
    InvalidBundle,
    InvalidCheckpoint,
    InvalidLeaf,
    InvalidSignature,
)
from ledger_node.jsonfields import JsonFields, show
from ledger_node.log.checkpoint import Checkpoint, SignedCheckpoint, verify_checkpoint_signature
from ledger_node.log.leaf import Leaf, LeafSummary
from ledger_node.log.merkle import (
    MerkleLog,
    hasher_for,
    inclusion_proof_length,
    root_from_inclusion_proof,
)
from ledger_node.protocol.checks import Check, CheckFailed, CheckRunner, CheckStatus
from ledger_node.protocol.commitment import (
    FieldDisclosure,
    RecordOpening,
    verify_field_disclosure,
    verify_opening,
)

BUNDLE_FORMAT: Final = "jointledger/proof-bundle/v1"
"""The ``format`` value of the JSON documents this module writes and reads."""

HASH_NAMES: Final = ("sm3", "sha256")
MAX_PATH_LENGTH: Final = 64  # a tree of at most 2**64 - 1 leaves has paths of at most 64 hashes
MAX_SIGNATURE_BYTES: Final = 128  # a DER SM2 signature is at most 72 bytes
_MAX_UINT64: Final = 2**64 - 1
_MAX_CHAIN_ID: Final = 2**256 - 1
_PLATFORM_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
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
        return {
            "format": BUNDLE_FORMAT,
            "hash": self.hash_name,
            "leaf": self.leaf.to_json(),
            "index": self.index,
            "tree_size": self.tree_size,
            "path": [p.hex() for p in self.path],
            "checkpoint": self.checkpoint.to_json(),
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
            raise InvalidBundle("format", f"unsupported format {show(data['format'])}, "
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


_fields: Final = JsonFields(InvalidBundle)
_object = _fields.mapping
_integer = _fields.integer


def _hex(field: str, value: object) -> bytes:
    return _fields.hex(field, value)


def _digest(field: str, value: object) -> bytes:
    return _fields.hex(field, value, DIGEST_SIZE)


def _hash_name(field: str, value: object) -> str:
    if not isinstance(value, str) or value not in HASH_NAMES:
        raise InvalidBundle(field, f"must be one of {HASH_NAMES}, got {show(value)}")
    return value


def _leaf_summary(data: object) -> LeafSummary:
    obj = _object("leaf", data, _LEAF_KEYS)  # a bundle names every field, null tags too
    try:
        return LeafSummary.from_json(obj)
    except InvalidLeaf as exc:
        raise InvalidBundle(f"leaf.{exc.field}", exc.reason) from None


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


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`verify_bundle`.

    ``valid`` is true when no check failed and none was left unrun, i.e. every performed
    check passed; checks marked ``NOT_CHECKED`` do not count against it. In key-only mode
    the anchoring checks are ``NOT_CHECKED`` and ``anchoring_checked`` is false: a valid
    verdict then proves inclusion up to a checkpoint signed by the given key, no more.
    ``root`` is the root the leaf was proved against (in chain mode, the chain's), set only
    when the verdict is valid. ``deployment_pinned`` says whether the contract checked was
    the one the verifier trusts (true) or merely the one the bundle names (false).
    """

    valid: bool
    anchoring_checked: bool
    checks: tuple[Check, ...]
    mode: str = "chain"  # "chain" | "key-only" | "untrusted"
    root: bytes | None = None
    deployment_pinned: bool = False  # the contract was the verifier's choice, not the bundle's

    @property
    def reasons(self) -> list[str]:
        """The details of the checks that failed, in order (empty when valid)."""
        return [f"{c.name}: {c.detail}" for c in self.checks if c.status is CheckStatus.FAILED]

    @property
    def summary(self) -> str:
        """One line for people: VALID / VALID (key-only, anchoring NOT checked) / INVALID."""
        if not self.valid:
            reasons = self.reasons
            return "INVALID: " + (reasons[0] if reasons else "a check did not run")
        if not self.anchoring_checked:
            return ("VALID up to the signed checkpoint (key-only mode): the anchoring on chain "
                    "was NOT checked")
        text = "VALID: the leaf is in the log at a checkpoint whose root was read from the chain"
        if not self.deployment_pinned:
            text += " (from the contract the bundle names: not pinned by the verifier)"
        return text

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
            "summary": self.summary,
            "anchoring_checked": self.anchoring_checked,
            "mode": self.mode,
            "deployment_pinned": self.deployment_pinned,
            "root": None if self.root is None else self.root.hex(),
            "checks": [c.to_json() for c in self.checks],
            "reasons": self.reasons,
        }


# --------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------

CHECK_STRUCTURE: Final = "structure"
CHECK_INCLUSION: Final = "inclusion"
CHECK_DEPLOYMENT: Final = "deployment"
CHECK_CHECKPOINT_ON_CHAIN: Final = "checkpoint_on_chain"
CHECK_LOG_OWNER: Final = "log_owner"
CHECK_SIGNATURE: Final = "signature"
CHECK_ANCHORING: Final = "anchoring"
CHECK_OPENING: Final = "opening"
CHECK_DISCLOSURE: Final = "disclosure"

CHECK_NAMES: Final = (CHECK_STRUCTURE, CHECK_INCLUSION, CHECK_DEPLOYMENT,
                      CHECK_CHECKPOINT_ON_CHAIN, CHECK_LOG_OWNER, CHECK_SIGNATURE,
                      CHECK_ANCHORING)
"""The checks every verdict lists, in order; ``opening``/``disclosure`` follow when asked."""

MODE_CHAIN: Final = "chain"
MODE_KEY_ONLY: Final = "key-only"
MODE_UNTRUSTED: Final = "untrusted"


def verify_bundle(
    bundle: ProofBundle,
    *,
    chain: LedgerChain | None = None,
    checkpoint_key: SM2PublicKey | None = None,
    opening: RecordOpening | None = None,
    disclosure: FieldDisclosure | None = None,
    deployment: Deployment | None = None,
) -> Verdict:
    """Verify ``bundle`` and return a :class:`Verdict` listing every check and its reason.

    With ``chain`` (a :class:`LedgerChain` on the bundle's chain, any provider) the
    verifier attaches to the bundle's deployment itself. The contract is *pinned* when the
    verifier says which deployment it trusts, by ``deployment`` or by passing a ``chain``
    already bound to one: the bundle must then name exactly that contract. Unpinned, the
    contract is the one the bundle names (``Verdict.deployment_pinned`` is false, and the
    ``deployment`` check says so): anyone can deploy a JointLedger of their own, so pin it
    wherever the consortium's deployment is known. Then, in order, the checks are:
    ``structure`` (sizes, index, hash names, path length, field sizes), ``inclusion`` (the
    leaf hash and path compute the checkpoint's root), ``deployment`` (chain id, contract
    code, ABI), ``checkpoint_on_chain`` (the contract holds the same root and timestamp for
    this log and size: the root trusted is the chain's), ``log_owner`` (the log's owner on
    chain is the member named in the checkpoint; its SM2 key in force at the anchoring
    block is read from the chain), ``signature`` (the checkpoint's SM2 signature under that
    key) and ``anchoring`` (the stated transaction, in the stated block, emitted
    ``CheckpointAnchored`` for this log, size, root and timestamp).

    With only ``checkpoint_key`` (key-only mode) the signature is checked with that key and
    the four chain checks are ``NOT_CHECKED``: ``anchoring_checked`` is false and the
    ``anchoring`` check says that the anchoring was not checked. If both are given, the
    chain's key is used and the given key must equal it. With neither, the verdict is not
    valid: nothing anchors trust in the checkpoint. ``opening`` / ``disclosure``, if given,
    must open the leaf's commitment (checks ``opening`` / ``disclosure``).

    A check whose prerequisite failed is ``NOT_RUN``. Never raises for a bad bundle; raises
    :class:`ChainError` only when the chain itself cannot be read (unreachable node).
    """
    runner = CheckRunner()
    ctx = _ChainContext(bundle)
    mode = MODE_CHAIN if chain is not None else (
        MODE_KEY_ONLY if checkpoint_key is not None else MODE_UNTRUSTED)

    runner.run(CHECK_STRUCTURE, lambda: _check_structure(bundle))
    runner.run(CHECK_INCLUSION, lambda: _check_inclusion(bundle), depends_on=(CHECK_STRUCTURE,))

    root: bytes | None = None
    if chain is not None:
        trusted = deployment if deployment is not None else _bound_deployment(chain)
        runner.run(CHECK_DEPLOYMENT, lambda: ctx.attach(chain, trusted),
                   depends_on=(CHECK_STRUCTURE,), reads_chain=True)
        runner.run(CHECK_CHECKPOINT_ON_CHAIN, ctx.checkpoint_on_chain,
                   depends_on=(CHECK_DEPLOYMENT,), reads_chain=True)
        runner.run(CHECK_LOG_OWNER, ctx.log_owner, depends_on=(CHECK_CHECKPOINT_ON_CHAIN,),
                   reads_chain=True)
        runner.run(CHECK_SIGNATURE, lambda: ctx.signature(checkpoint_key),
                   depends_on=(CHECK_LOG_OWNER,))
        runner.run(CHECK_ANCHORING, ctx.anchoring, depends_on=(CHECK_CHECKPOINT_ON_CHAIN,),
                   reads_chain=True)
        if {CHECK_INCLUSION, CHECK_CHECKPOINT_ON_CHAIN} <= runner.passed:
            root = ctx.chain_root
    else:
        why = ("NOT CHECKED: no chain was given (key-only mode)" if checkpoint_key is not None
               else "NOT CHECKED: no chain was given")
        anchor = getattr(bundle, "anchor", None)
        named = (f"the contract {show(getattr(anchor, 'contract', None))} on chain "
                 f"{show(getattr(anchor, 'chain_id', None))}")
        runner.not_checked(CHECK_DEPLOYMENT, f"{why}; {named} was not read")
        runner.not_checked(CHECK_CHECKPOINT_ON_CHAIN, f"{why}; the root is the bundle's own, not "
                                                      "one read from the chain")
        runner.not_checked(CHECK_LOG_OWNER, f"{why}; the signing key is not matched with the "
                                            "chain's membership")
        if checkpoint_key is not None:
            runner.run(CHECK_SIGNATURE,
                       lambda: _check_signature(bundle.checkpoint, checkpoint_key, "the given key"),
                       depends_on=(CHECK_STRUCTURE,))
        else:
            runner.run(CHECK_SIGNATURE, _no_trust, depends_on=(CHECK_STRUCTURE,))
        scope = ("a valid verdict proves inclusion up to a checkpoint signed by the given key, "
                 "no more" if checkpoint_key is not None else "nothing anchors trust")
        runner.not_checked(CHECK_ANCHORING, f"{why}: the anchoring of this checkpoint on chain "
                                            f"was NOT checked; {scope}")
        if checkpoint_key is not None and {CHECK_INCLUSION, CHECK_SIGNATURE} <= runner.passed:
            root = bundle.checkpoint.checkpoint.root

    if opening is not None:
        runner.run(CHECK_OPENING, lambda: _check_opening(bundle, opening),
                   depends_on=(CHECK_STRUCTURE,))
    if disclosure is not None:
        runner.run(CHECK_DISCLOSURE, lambda: _check_disclosure(bundle, disclosure),
                   depends_on=(CHECK_STRUCTURE,))

    checks = runner.checks
    valid = mode != MODE_UNTRUSTED and all(
        c.status in (CheckStatus.PASSED, CheckStatus.NOT_CHECKED) for c in checks)
    pinned = chain is not None and ctx.pinned
    return Verdict(valid=valid, anchoring_checked=chain is not None, checks=checks, mode=mode,
                   root=root if valid else None, deployment_pinned=pinned)


def _bound_deployment(chain: LedgerChain) -> Deployment | None:
    """The deployment ``chain`` is bound to, or ``None`` if it is not bound to any."""
    try:
        return chain.deployment
    except ChainError:
        return None


def _no_trust() -> str:
    raise CheckFailed("no chain and no checkpoint key were given: nothing anchors trust in this "
                      "checkpoint, whose root and signature are only the bundle's own claim")


def _is_bytes(value: object, size: int | None = None) -> bool:
    return isinstance(value, bytes) and (size is None or len(value) == size)


def _check_structure(bundle: ProofBundle) -> str:
    """The bundle's fields are of the right kind and agree with each other."""
    problems: list[str] = []
    cp = bundle.checkpoint.checkpoint
    if bundle.hash_name not in HASH_NAMES:
        problems.append(f"hash {show(bundle.hash_name)} is not one of {HASH_NAMES}")
    elif cp.hash_name != bundle.hash_name:
        problems.append(f"the bundle's hash is {bundle.hash_name}, its checkpoint's "
                        f"{cp.hash_name}")
    sizes_ok = (isinstance(bundle.index, int) and isinstance(bundle.tree_size, int)
                and not isinstance(bundle.index, bool) and not isinstance(bundle.tree_size, bool))
    if not sizes_ok:
        problems.append("index and tree_size must be integers")
    elif bundle.tree_size != cp.tree_size:
        problems.append(f"tree_size {bundle.tree_size} differs from the checkpoint's "
                        f"{cp.tree_size}")
    elif not 0 <= bundle.index < bundle.tree_size:
        problems.append(f"index {bundle.index} is not in a tree of size {bundle.tree_size}")
    else:
        want = inclusion_proof_length(bundle.index, bundle.tree_size)
        if not isinstance(bundle.path, tuple | list) or len(bundle.path) != want:
            got = len(bundle.path) if isinstance(bundle.path, tuple | list) else "no"
            problems.append(f"path holds {got} hashes, leaf {bundle.index} of "
                            f"{bundle.tree_size} needs exactly {want}")
        elif not all(_is_bytes(p, DIGEST_SIZE) for p in bundle.path):
            problems.append(f"every path element must be {DIGEST_SIZE} bytes")
    leaf = bundle.leaf
    if not (_is_bytes(leaf.commitment, DIGEST_SIZE) and _is_bytes(leaf.escrow_digest,
                                                                  DIGEST_SIZE)):
        problems.append(f"leaf commitment and escrow digest must be {DIGEST_SIZE} bytes")
    tags = (leaf.match_tag, leaf.amount_tag)
    if (tags[0] is None) != (tags[1] is None) or not all(
            t is None or _is_bytes(t, DIGEST_SIZE) for t in tags):
        problems.append(f"leaf match_tag and amount_tag must both be absent or both "
                        f"{DIGEST_SIZE} bytes")
    if not _is_bytes(bundle.checkpoint.signature) or not bundle.checkpoint.signature:
        problems.append("the checkpoint signature must be non-empty bytes")
    anchor = bundle.anchor
    if not (isinstance(anchor.contract, str) and is_checksum_address(anchor.contract)):
        problems.append(f"anchor contract {show(anchor.contract)} is not a checksummed address")
    if not _is_bytes(anchor.tx_hash, 32):
        problems.append("anchor tx_hash must be 32 bytes")
    numbers = (anchor.chain_id, anchor.deploy_block, anchor.block_number)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        problems.append("anchor chain_id, deploy_block and block_number must be integers >= 0")
    elif anchor.block_number < anchor.deploy_block:
        problems.append(f"anchoring block {anchor.block_number} precedes the deployment block "
                        f"{anchor.deploy_block}")
    if problems:
        raise CheckFailed("; ".join(problems))
    return (f"leaf {bundle.index} of {bundle.tree_size}, {bundle.hash_name}, path of "
            f"{len(bundle.path)} hashes")


def _check_inclusion(bundle: ProofBundle) -> str:
    """The leaf hash and path compute the checkpoint's root."""
    hasher = hasher_for(bundle.hash_name)
    leaf_hash = hasher.hash_leaf(bundle.leaf.leaf_data())
    root = root_from_inclusion_proof(hasher, bundle.index, bundle.tree_size, leaf_hash,
                                     bundle.path)
    expected = bundle.checkpoint.checkpoint.root
    if not hmac.compare_digest(root, expected):
        raise CheckFailed(f"the leaf hash and path compute root {root.hex()}, the checkpoint says "
                          f"{expected.hex()}")
    return f"leaf hash {leaf_hash.hex()} and path compute root {root.hex()}"


def _check_signature(signed: SignedCheckpoint, key: SM2PublicKey, whose: str) -> str:
    """The checkpoint's SM2 signature verifies under ``key``."""
    try:
        verify_checkpoint_signature(key, signed)
    except InvalidSignature as exc:
        raise CheckFailed(f"{exc} (key: {whose})") from None
    return f"SM2 signature of {signed.checkpoint.platform} verifies with {whose}"


def _check_opening(bundle: ProofBundle, opening: RecordOpening) -> str:
    """The record and salt open the leaf's commitment, and the record is the log's platform's."""
    verify_opening(bundle.leaf.commitment, opening)
    platform = bundle.checkpoint.checkpoint.platform
    if opening.record.platform != platform:
        raise CheckFailed(f"the record is {opening.record.platform}'s, the log is {platform}'s")
    return "the record and salt open the leaf's commitment"


def _check_disclosure(bundle: ProofBundle, disclosure: FieldDisclosure) -> str:
    """The disclosed field's value, salt and the other field hashes open the commitment."""
    verify_field_disclosure(bundle.leaf.commitment, disclosure)
    return f"field {disclosure.name!r} = {disclosure.value!r} is committed to by the leaf"


class _ChainContext:
    """The chain-mode checks of one bundle, sharing what they read from the chain."""

    def __init__(self, bundle: ProofBundle) -> None:
        self.bundle = bundle
        self.chain: LedgerChain | None = None
        self.anchored: AnchoredCheckpoint | None = None
        self.key: SM2PublicKey | None = None
        self.owner: str = ""
        self.pinned = False

    @property
    def chain_root(self) -> bytes:
        """The root the contract holds for the bundle's log and size."""
        if self.anchored is None:
            raise CheckFailed("checkpoint_on_chain has not passed")
        return self.anchored.root

    def _attached(self) -> LedgerChain:
        if self.chain is None:
            raise CheckFailed("deployment has not passed")
        return self.chain

    def attach(self, chain: LedgerChain, trusted: Deployment | None) -> str:
        anchor = self.bundle.anchor
        connected = chain.chain_id
        if connected != anchor.chain_id:
            raise CheckFailed(f"the bundle is for chain {anchor.chain_id}, the chain given is "
                              f"{connected}")
        if trusted is not None:
            if trusted.chain_id != anchor.chain_id:
                raise CheckFailed(f"the bundle is for chain {anchor.chain_id}, the verifier trusts "
                                  f"the deployment on chain {trusted.chain_id}")
            if Web3.to_checksum_address(trusted.address) != anchor.contract:
                raise CheckFailed(f"the bundle names contract {anchor.contract}, the verifier "
                                  f"trusts {Web3.to_checksum_address(trusted.address)}")
            if trusted.abi_sha256 != anchor.abi_sha256:
                raise CheckFailed(f"the bundle names ABI {anchor.abi_sha256[:16]}…, the trusted "
                                  f"deployment has {trusted.abi_sha256[:16]}…")
        self.chain = chain.attach(anchor.deployment)
        self.pinned = trusted is not None
        whose = ("the deployment the verifier trusts" if trusted is not None
                 else "named by the bundle, NOT pinned by the verifier")
        return (f"JointLedger {anchor.contract} on chain {anchor.chain_id} "
                f"(ABI {anchor.abi_sha256[:16]}…): {whose}")

    def checkpoint_on_chain(self) -> str:
        cp = self.bundle.checkpoint.checkpoint
        try:
            anchored = self._attached().checkpoint_at(cp.log_id, cp.tree_size)
        except ContractRevert as exc:
            raise CheckFailed(f"the contract holds no checkpoint of log {cp.log_id.hex()} at "
                              f"size {cp.tree_size} ({exc.name}): that size was never anchored "
                              "here") from None
        if not hmac.compare_digest(anchored.root, cp.root):
            raise CheckFailed(f"the chain's root for size {cp.tree_size} is {anchored.root.hex()}, "
                              f"the bundle's {cp.root.hex()}")
        if anchored.timestamp != cp.timestamp:
            raise CheckFailed(f"the chain's timestamp for size {cp.tree_size} is "
                              f"{anchored.timestamp}, the bundle's {cp.timestamp}")
        self.anchored = anchored
        return (f"the contract holds root {anchored.root.hex()} for size {cp.tree_size}, "
                f"anchored in block {anchored.block_number}")

    def log_owner(self) -> str:
        chain = self._attached()
        cp = self.bundle.checkpoint.checkpoint
        owner = chain.log_owner(cp.log_id)
        if owner is None:
            raise CheckFailed(f"log {cp.log_id.hex()} has no owner on chain")
        member = chain.member(owner)
        if member.name != cp.platform:
            raise CheckFailed(f"log {cp.log_id.hex()[:16]}… belongs to {owner}, registered as "
                              f"{member.name!r}; the checkpoint names {cp.platform!r}")
        anchored_in = self.anchored.block_number if self.anchored is not None else 0
        # The key in force when the checkpoint was anchored: the old key of the first
        # rotation after that block, or the key registered now if there was none since.
        later = anchored_in + 1
        rotations = (chain.events("KeyRotated", from_block=later, account=owner)
                     if later <= chain.block_number() else [])
        raw = bytes(rotations[0].args["oldKey"]) if rotations else member.public_key
        self.key = SM2PublicKey.from_raw(raw)
        self.owner = owner
        rotated = f", key rotated {len(rotations)}× since" if rotations else ""
        removed = "" if member.active else ", since removed"
        return (f"log owner {owner} is member {member.name!r} ({member.role.name.lower()}"
                f"{removed}{rotated}); its SM2 key in force at block {anchored_in} is read "
                "from the chain")

    def signature(self, given: SM2PublicKey | None) -> str:
        if self.key is None:
            raise CheckFailed("log_owner has not passed")
        if given is not None and given.raw != self.key.raw:
            raise CheckFailed(f"the given checkpoint key is not the key registered on chain for "
                              f"{self.owner}")
        return _check_signature(self.bundle.checkpoint, self.key,
                                f"the key registered on chain for {self.owner}")

    def anchoring(self) -> str:
        chain = self._attached()
        anchor = self.bundle.anchor
        cp = self.bundle.checkpoint.checkpoint
        if self.anchored is None:
            raise CheckFailed("checkpoint_on_chain has not passed")
        block = self.anchored.block_number
        tx = "0x" + anchor.tx_hash.hex()
        if anchor.block_number != block:
            raise CheckFailed(f"the contract records size {cp.tree_size} as anchored in block "
                              f"{block}, the bundle says block {anchor.block_number}")
        events = chain.events("CheckpointAnchored", from_block=block, to_block=block,
                              logId=cp.log_id)
        found = [e for e in events if e.tx_hash == anchor.tx_hash]
        if not found:
            raise CheckFailed(f"transaction {tx} emitted no CheckpointAnchored for log "
                              f"{cp.log_id.hex()[:16]}… in block {block}")
        event = found[0]
        stated = (int(event.args["treeSize"]), bytes(event.args["root"]),
                  int(event.args["timestamp"]))
        if stated != (cp.tree_size, cp.root, cp.timestamp):
            raise CheckFailed(f"transaction {tx} anchored size {stated[0]} root {stated[1].hex()} "
                              f"at {stated[2]}, not this checkpoint")
        return (f"transaction {tx} in block {block} emitted CheckpointAnchored(log "
                f"{cp.log_id.hex()[:16]}…, size {cp.tree_size}, root {cp.root.hex()[:16]}…)")
