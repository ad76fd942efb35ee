"""The exception hierarchy: one root, :class:`LedgerError`, and a few domain subclasses.

Callers catch the specific type; the HTTP layer maps each to an RFC 9457 problem response.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error this project raises on purpose."""


class InvalidRecord(LedgerError, ValueError):
    """A payment record (or one of its fields) is not acceptable.

    ``field`` names the offending field, ``reason`` says why.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid record field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class InvalidOpening(LedgerError, ValueError):
    """An opening or single-field disclosure does not match its commitment."""


class InvalidProof(LedgerError, ValueError):
    """A Merkle inclusion or consistency proof is malformed or does not verify."""


class RootMismatchError(InvalidProof):
    """A proof is well formed but computes a root other than the expected one."""

    def __init__(self, expected: bytes, calculated: bytes) -> None:
        super().__init__(
            f"root mismatch: expected {expected.hex()}, calculated {calculated.hex()}"
        )
        self.expected = expected
        self.calculated = calculated


class CryptoError(LedgerError):
    """Root of cryptographic failures."""


class InvalidKey(CryptoError, ValueError):
    """A key (PEM, DER, raw point or scalar) is malformed or not on the SM2 curve."""


class InvalidSignature(CryptoError):
    """An SM2 signature is malformed or does not verify."""


class DecryptionFailed(CryptoError):
    """A ciphertext could not be decrypted or failed authentication."""


class CryptoBackendUnavailable(CryptoError):
    """The requested cryptographic backend (OpenSSL 3's SM2 through ctypes) cannot be used."""


class CompilerError(LedgerError):
    """The Solidity compiler could not be found or failed to compile the contracts."""


class ArtifactError(LedgerError):
    """Compiled contract artifacts are missing, malformed or stale."""


class ChainError(LedgerError):
    """Talking to the chain failed (connection, transaction, unexpected state)."""


class ContractRevert(ChainError):
    """A contract call reverted with a custom error; ``name`` is its Solidity name."""

    def __init__(self, name: str, args: tuple[object, ...] = ()) -> None:
        detail = f"{name}{args!r}" if args else name
        super().__init__(f"contract reverted: {detail}")
        self.name = name
        self.error_args = args


class DeploymentError(ChainError):
    """A deployment file is missing, malformed or points at a chain without the contract."""


class InvalidCheckpoint(LedgerError, ValueError):
    """A checkpoint (or its JSON form) is malformed: bad sizes, names or values."""


class InvalidLeaf(LedgerError, ValueError):
    """A submitted leaf (or batch) is malformed; ``field`` names the part, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid leaf {field!r}: {reason}")
        self.field = field
        self.reason = reason


class UnknownLeaf(LedgerError, LookupError):
    """No leaf with this index (or leaf hash) is in the log."""


class InvalidBatch(LedgerError, ValueError):
    """A submitted batch is not acceptable (size, digest, signature); nothing was stored."""


class StoreCorrupted(LedgerError):
    """The node's store file is damaged, truncated or not a store of this schema."""


class LeafDamaged(StoreCorrupted):
    """A stored leaf row failed its check on the way out: its leaf hash, recomputed from its
    commitment, escrow and tags, is not the stored one, or the stored one is not what the
    Merkle tree holds at its index. The row is not served.

    ``index`` is the leaf's log index, ``log`` names the store (a path, or a platform's log
    in a regulator's store), ``reason`` what did not match.
    """

    def __init__(self, log: str, index: int, reason: str) -> None:
        super().__init__(f"store {log}: leaf {index} is damaged ({reason}); it is not "
                         "served: run jointledger fsck")
        self.log = log
        self.index = index
        self.reason = reason


class TreeMismatch(StoreCorrupted):
    """The store's Merkle tree does not give a root the log signed or the chain anchored.

    ``tree_size`` is the size whose root differs, ``first_bad`` the first leaf index found
    bad by descending the stored levels (``None`` when none could be named), ``detail``
    what was found there.
    """

    def __init__(self, message: str, *, tree_size: int, first_bad: int | None,
                 detail: str) -> None:
        super().__init__(message)
        self.tree_size = tree_size
        self.first_bad = first_bad
        self.detail = detail


class StoreBehindChain(LedgerError):
    """The store is shorter than the chain's latest anchored checkpoint of its log, or
    disagrees with it: leaves the chain anchored are missing (an old copy restored, a lost
    WAL). The node acknowledges nothing until the operator restores them
    (``jointledger fsck STORE --repair-from REGULATOR_URL``).

    ``chain_size`` is the chain's latest anchored size, ``store_size`` the store's leaf
    count, ``disagrees`` whether the store holds that size with another root.
    """

    def __init__(self, message: str, *, chain_size: int, store_size: int,
                 disagrees: bool = False) -> None:
        super().__init__(message)
        self.chain_size = chain_size
        self.store_size = store_size
        self.disagrees = disagrees


class StoreUnavailable(LedgerError):
    """The store's database server cannot be reached or refuses the login (a PostgreSQL
    store): nothing was read or written. The message never carries the URL's password."""


class StoreLocked(LedgerError):
    """Another opener (a running node, an fsck) holds the store: one writer per store."""


class IngestOff(LedgerError):
    """A follow-and-ingest round was asked of a regulator process that follows nothing: an
    API replica (``--ingest off``). (A supervisor's round follows the chain; its workers
    ingest on their own.)"""


class StoreRepairRefused(LedgerError):
    """``jointledger fsck --repair-from`` cannot restore a row: no good copy of it exists
    (the regulator has not verified it, or what it serves does not give the anchored root)."""


class BatchEvidenceLost(UnknownLeaf):
    """The leaf is in the log (restored from the regulator's verified copy) but the signed
    batch it arrived in was lost with the store's tail: no evidence to serve."""


class StoreMismatch(LedgerError, ValueError):
    """The store was made for another log, platform or hash and must not be reused here."""


class UnknownCheckpoint(LedgerError, LookupError):
    """No anchored checkpoint of this log has the requested tree size."""


class NodeStopped(LedgerError):
    """The node is not running (not started yet, or stopping): it accepts no submissions."""


class InvalidBundle(LedgerError, ValueError):
    """A proof bundle (or its JSON form) is malformed.

    ``field`` names the offending part as a path (``"checkpoint.root"``, ``"path[3]"``),
    ``reason`` says why.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid proof bundle field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class AuthError(LedgerError):
    """Root of authentication and authorisation failures."""


class Unauthenticated(AuthError):
    """The caller could not be authenticated (HTTP 401)."""


class Forbidden(AuthError):
    """The caller is known but may not do this (HTTP 403)."""


class AnchorConflict(ChainError):
    """The chain's checkpoint history of this log disagrees with the node's own store."""


class ApiError(LedgerError):
    """A node's HTTP API answered with an RFC 9457 problem (raised by the SDK).

    ``status`` is the HTTP status, ``problem_type`` the problem's type URI, ``detail`` what
    went wrong; ``document`` is the whole problem document as received.
    """

    def __init__(self, status: int, problem_type: str, title: str, detail: str,
                 document: dict[str, object] | None = None) -> None:
        super().__init__(f"HTTP {status} {title}: {detail}")
        self.status = status
        self.problem_type = problem_type
        self.title = title
        self.detail = detail
        self.document = document if document is not None else {}


class ProofPending(LedgerError, TimeoutError):
    """A leaf's proof bundle was still pending (not anchored) when the wait ran out."""


class InvalidConfig(LedgerError, ValueError):
    """A node's configuration file is missing, malformed or names unusable files or values."""


class InvalidAmlConfig(LedgerError, ValueError):
    """An AML configuration value is unusable; ``field`` names it, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid AML config {field!r}: {reason}")
        self.field = field
        self.reason = reason


class EscrowError(LedgerError):
    """Root of regulator-escrow failures (sealing, opening, payload and identity encoding)."""


class EscrowFormatError(EscrowError, ValueError):
    """An escrow's bytes are malformed: truncated, wrong lengths or trailing bytes."""


class EscrowVersionError(EscrowFormatError):
    """An escrow (or escrow payload) carries a format version this code does not know.

    ``version`` is the version byte found.
    """

    def __init__(self, what: str, version: int) -> None:
        super().__init__(f"unsupported {what} version {version}")
        self.version = version


class UnknownEscrowKey(EscrowError, LookupError):
    """An escrow was sealed for a regulator key whose fingerprint the opener does not hold.

    ``fingerprint`` is the key fingerprint named by the escrow.
    """

    def __init__(self, fingerprint: bytes) -> None:
        super().__init__(f"no regulator private key with fingerprint {fingerprint.hex()}")
        self.fingerprint = fingerprint


class EscrowKeyUnwrapFailed(EscrowError):
    """The batch key wrapped inside an escrow does not SM2-decrypt (tampered or wrong key)."""


class EscrowAuthenticationFailed(EscrowError):
    """An escrow's SM4-GCM ciphertext does not authenticate under the given commitment.

    Either a byte of nonce, ciphertext or tag was altered, or the escrow belongs to another
    leaf (its commitment, the associated data, differs): the two are indistinguishable.
    """


class InvalidEscrowPayload(EscrowError, ValueError):
    """An escrow payload (or the values to build one) is malformed; ``field`` names the part."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid escrow payload {field!r}: {reason}")
        self.field = field
        self.reason = reason


class InvalidIdentity(EscrowError, ValueError):
    """A real-name identity is empty or cannot be classified as a person or an institution."""


class ChainStoreCorrupt(ChainError):
    """The embedded chain's store file is not an intact store: it is not served.

    ``path`` is the file, ``reason`` what was found (truncated, malformed, wrong format,
    canonical head or state root missing or not matching its hash).
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"chain store {path} is corrupt: {reason}")
        self.path = path
        self.reason = reason


class UnknownPlatform(LedgerError, LookupError):
    """No platform of that name (or address or log) is known to the regulator node."""


class DisclosureRejected(LedgerError):
    """A platform's disclosure answer failed the regulator's checks (``reason`` says which)."""

    def __init__(self, request_id: int, reason: str) -> None:
        super().__init__(f"disclosure request {request_id}: {reason}")
        self.request_id = request_id
        self.reason = reason


class InvalidCaseFile(LedgerError, ValueError):
    """A case file is malformed (``where`` names the place, ``reason`` what is wrong)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"case file {where}: {reason}")
        self.where = where
        self.reason = reason


class InvalidLeafRange(LedgerError, ValueError):
    """A requested range of leaves is empty, reversed, negative or longer than allowed."""


class LeafRangeUnavailable(UnknownLeaf):
    """A requested range of leaves reaches past the end of the log.

    ``start`` and ``end`` are the half-open range asked for, ``size`` the log's size now.
    """

    def __init__(self, start: int, end: int, size: int) -> None:
        super().__init__(
            f"leaves [{start}, {end}) are not all in the log: its size is {size}"
        )
        self.start = start
        self.end = end
        self.size = size


class DisclosureError(LedgerError):
    """Root of disclosure failures: sealed responses, requests and their answers."""


class InvalidDisclosureResponse(DisclosureError, ValueError):
    """A sealed disclosure response is malformed or does not open; ``reason`` says why.

    Wrong version, truncated bytes, a wrapped key that does not decrypt, an SM4-GCM tag that
    does not authenticate (altered bytes, or another request, commitment, chain or contract)
    and a plaintext that is not an opening all raise it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid disclosure response: {reason}")
        self.reason = reason


class UnknownDisclosureKey(InvalidDisclosureResponse, LookupError):
    """A disclosure response was sealed for a regulator key the opener does not hold.

    ``fingerprint`` is the 16-byte key fingerprint named by the response.
    """

    def __init__(self, fingerprint: bytes) -> None:
        super().__init__(f"sealed for a regulator key with fingerprint {fingerprint.hex()}, "
                         "which is not held here")
        self.fingerprint = fingerprint


class UnknownDisclosureRequest(DisclosureError, LookupError):
    """The chain holds no disclosure request with this id; ``request_id`` names it."""

    def __init__(self, request_id: int) -> None:
        super().__init__(f"no disclosure request {request_id} on chain")
        self.request_id = request_id


class DisclosureNotAddressed(DisclosureError):
    """A disclosure request is addressed to another platform than the one acting on it."""


class CommitmentNotInLog(DisclosureError, LookupError):
    """The commitment a disclosure request names is not a leaf of this log."""


class DisclosureConflict(DisclosureError):
    """A disclosure request was already answered with a different response."""


class DisclosureNotAnswered(DisclosureError, LookupError):
    """No response to this disclosure request is stored here (yet)."""


class UnknownAlert(LedgerError, LookupError):
    """No AML alert with that number on the regulator node."""


class InvalidScenario(LedgerError, ValueError):
    """A scenario spec or scenario file is unusable.

    ``where`` is the place in the document (``"$.planted[2].parts_fen[1]"``; relative, like
    ``"parts_fen[1]"``, when a spec object is built in code), ``reason`` what is wrong and
    ``source`` the file, if any.
    """

    def __init__(self, where: str, reason: str, *, source: str | None = None) -> None:
        prefix = f"invalid scenario {source}" if source else "invalid scenario"
        super().__init__(f"{prefix} at {where}: {reason}")
        self.where = where
        self.reason = reason
        self.source = source


class UnknownRegulator(LedgerError, LookupError):
    """No active regulator is registered on chain, none of that name, or several where one
    was expected."""


class InvalidPeerKey(InvalidKey):
    """Another party's SM2 public key cannot be used for a key agreement: the point at
    infinity, a point off the curve, a wrong length or this party's own key."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"peer SM2 public key {reason}")
        self.reason = reason


class ReconciliationError(LedgerError):
    """Root of cross-platform reconciliation failures (PROTOCOL §7)."""


class UnknownCounterparty(ReconciliationError, LookupError):
    """No platform of that name is registered on chain (or it is the reconciling platform
    itself, or a member that is not a platform)."""


class InvalidWindow(ReconciliationError, ValueError):
    """A reconciliation window or grace period is unusable (naive or reversed times, too
    long a span, a negative or too long grace period)."""


class InvalidReconciliationInput(ReconciliationError, ValueError):
    """The records to reconcile are unusable: ``where`` names the place (a receipts line,
    an expectation), ``reason`` what is wrong."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class PairwiseKeyUnavailable(ReconciliationError):
    """A pairwise key in force during the window cannot be derived: the platform's SM2
    private key registered then was not given (keep retired keys to reconcile old windows)."""


class LogVerificationFailed(ReconciliationError):
    """A node served a log that does not match the chain: leaves that do not rebuild an
    anchored root, fewer leaves than anchored, another platform's log, or a checkpoint not
    signed with a key its platform registered. ``kind`` is the fault (``root-mismatch``,
    ``withheld``, ``wrong-log``, ``bad-checkpoint-signature``), ``platform`` whose log."""

    def __init__(self, platform: str, kind: str, detail: str) -> None:
        super().__init__(f"{platform}'s log refused ({kind}): {detail}")
        self.platform = platform
        self.kind = kind
        self.detail = detail


class RiskListError(LedgerError):
    """Root of shared risk-device list failures (docs/risklist.md)."""


class InvalidFingerprint(RiskListError, ValueError):
    """A device fingerprint is not in an accepted form; ``reason`` says why.

    ``index`` is its position when it came in a batch (``None`` for a single one).
    """

    def __init__(self, reason: str, index: int | None = None) -> None:
        where = "device fingerprint" if index is None else f"device fingerprint [{index}]"
        super().__init__(f"invalid {where}: {reason}")
        self.reason = reason
        self.index = index


class UnknownRiskReason(RiskListError, ValueError):
    """A risk reason code or name is not one of the documented codes; ``value`` is it."""

    def __init__(self, value: object, known: str) -> None:
        super().__init__(f"unknown risk reason {value!r}; known: {known}")
        self.value = value


class ListKeyUnavailable(RiskListError):
    """This member does not hold the list key an operation needs (not delivered yet, or
    entries exist under epochs it has no key for): a check would not be complete."""


class InvalidListKey(RiskListError):
    """A delivered list-key ring does not decrypt with this member's keys, is malformed, is
    for another deployment or epoch, or rewrites keys of earlier epochs."""


class RiskDeviceAlreadyListed(RiskListError):
    """The device is already listed (under this or an earlier epoch's key)."""


class RiskDeviceNotListed(RiskListError, LookupError):
    """The device is not on the risk list."""
