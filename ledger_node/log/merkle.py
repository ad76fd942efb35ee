"""RFC 9162 §2.1 Merkle trees, proofs and an incremental append-only log, hash as a parameter.

Pure logic, no I/O. The tree hash, inclusion proofs and consistency proofs follow RFC 9162
§2.1 exactly (leaf prefix ``0x00``, node prefix ``0x01``, empty root ``HASH("")``); the hash
is injected as a :class:`Hasher`, of which :data:`SM3_HASHER` (the default) and
:data:`SHA256_HASHER` are the two values.

:class:`MerkleLog` keeps the hashes of complete, aligned subtrees by level (level 0 holds
the leaf hashes, level ``k`` the roots of the subtrees ``[j * 2**k, (j + 1) * 2**k)``) in a
small :class:`LevelStore`, so that appending is amortised O(1) hashes, and the root at any
size, inclusion proofs and consistency proofs cost O(log n) hashes and store reads.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from ledger_node.crypto.hashes import HashFunction, sm3
from ledger_node.errors import InvalidProof, RootMismatchError

Root = bytes
LeafHash = bytes
LeafIndex = int
TreeSize = int

LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"


# --------------------------------------------------------------------------------------
# Hashers
# --------------------------------------------------------------------------------------


class Hasher(Protocol):
    """The RFC 9162 tree hashing strategy for one hash function."""

    @property
    def name(self) -> str:
        """The hash function's name (``"sm3"``, ``"sha256"``)."""
        ...

    @property
    def digest_size(self) -> int:
        """Length in bytes of every digest this hasher returns."""
        ...

    def empty_root(self) -> Root:
        """Return the root of the empty tree, ``HASH("")``."""
        ...

    def hash_leaf(self, data: bytes) -> LeafHash:
        """Return ``HASH(0x00 || data)``."""
        ...

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        """Return ``HASH(0x01 || left || right)``."""
        ...


class HashlibHasher:
    """A :class:`Hasher` over an OpenSSL-backed ``hashlib`` algorithm.

    Each hash copies a context already fed with the domain prefix: copying is cheaper than
    constructing a new context by name, and the prefix is never concatenated.
    """

    __slots__ = ("name", "digest_size", "_empty", "_leaf_ctx", "_node_ctx")

    def __init__(self, name: str) -> None:
        """Build the hasher for ``hashlib.new(name)``; raise ``ValueError`` if unavailable."""
        base = hashlib.new(name)
        self.name = name
        self.digest_size = base.digest_size
        self._empty = base.copy().digest()
        self._leaf_ctx = base.copy()
        self._leaf_ctx.update(LEAF_PREFIX)
        self._node_ctx = base.copy()
        self._node_ctx.update(NODE_PREFIX)

    def __repr__(self) -> str:
        return f"HashlibHasher({self.name!r})"

    def empty_root(self) -> Root:
        """Return ``HASH("")``."""
        return self._empty

    def hash_leaf(self, data: bytes) -> LeafHash:
        """Return ``HASH(0x00 || data)``."""
        ctx = self._leaf_ctx.copy()
        ctx.update(data)
        return ctx.digest()

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        """Return ``HASH(0x01 || left || right)``."""
        ctx = self._node_ctx.copy()
        ctx.update(left)
        ctx.update(right)
        return ctx.digest()

    def hash_leaves(self, leaves: Iterable[bytes]) -> bytearray:
        """Return the leaf hashes of ``leaves``, concatenated (bulk fast path)."""
        copy = self._leaf_ctx.copy
        out = bytearray()
        put = out.extend
        for data in leaves:
            ctx = copy()
            ctx.update(data)
            put(ctx.digest())
        return out

    def hash_pairs(self, level: bytes | bytearray) -> bytearray:
        """Hash adjacent digest pairs of a concatenated level into the level above.

        ``level`` holds an even number of concatenated digests; siblings are adjacent, so
        each parent hashes one contiguous slice and nothing is concatenated.
        """
        view = memoryview(level)
        copy = self._node_ctx.copy
        step = 2 * self.digest_size
        out = bytearray()
        put = out.extend
        for i in range(0, len(level) - step + 1, step):
            ctx = copy()
            ctx.update(view[i : i + step])
            put(ctx.digest())
        return out


class FunctionHasher:
    """A :class:`Hasher` over any one-shot hash function, such as ``ledger_node.crypto.hashes.sm3``.

    Slower than :class:`HashlibHasher` (it concatenates the prefix and builds a context per
    hash); used for SM3 only when the ``hashlib`` OpenSSL lacks it.
    """

    __slots__ = ("name", "digest_size", "_fn", "_empty")

    def __init__(self, name: str, fn: HashFunction) -> None:
        """Wrap ``fn`` (bytes -> digest) under ``name``."""
        self.name = name
        self._fn = fn
        self._empty = fn(b"")
        self.digest_size = len(self._empty)

    def __repr__(self) -> str:
        return f"FunctionHasher({self.name!r})"

    def empty_root(self) -> Root:
        """Return ``HASH("")``."""
        return self._empty

    def hash_leaf(self, data: bytes) -> LeafHash:
        """Return ``HASH(0x00 || data)``."""
        return self._fn(LEAF_PREFIX + data)

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        """Return ``HASH(0x01 || left || right)``."""
        return self._fn(NODE_PREFIX + left + right)


def _sm3_hasher() -> Hasher:
    try:
        return HashlibHasher("sm3")
    except ValueError:  # hashlib's OpenSSL built without SM3: cryptography's always has it
        return FunctionHasher("sm3", sm3)


SM3_HASHER: Final[Hasher] = _sm3_hasher()
"""SM3 (GB/T 32905) tree hasher, the project default."""

SHA256_HASHER: Final[Hasher] = HashlibHasher("sha256")
"""SHA-256 tree hasher: the RFC 6962/9162 reference vectors apply to it unchanged."""

DEFAULT_HASHER: Final[Hasher] = SM3_HASHER

_HASHERS: Final[dict[str, Hasher]] = {"sm3": SM3_HASHER, "sha256": SHA256_HASHER}


def hasher_for(name: str) -> Hasher:
    """Return the tree hasher called ``name``; raise ``ValueError`` for an unknown name."""
    try:
        return _HASHERS[name]
    except KeyError:
        raise ValueError(f"unknown hash {name!r}; expected one of {sorted(_HASHERS)}") from None


def _hash_leaves(hasher: Hasher, leaves: Iterable[bytes]) -> bytearray:
    if isinstance(hasher, HashlibHasher):
        return hasher.hash_leaves(leaves)
    out = bytearray()
    for data in leaves:
        out += hasher.hash_leaf(data)
    return out


def hash_leaves(hasher: Hasher, datas: Iterable[bytes]) -> bytes:
    """The leaf hashes of ``datas`` (leaf data), concatenated: the hasher's bulk path when
    it has one (how a node checks rows and rebuilds trees from them)."""
    return bytes(_hash_leaves(hasher, datas))


def hash_pairs(hasher: Hasher, level: bytes | bytearray) -> bytes:
    """The level above ``level`` (concatenated digests, an even number of them)."""
    return bytes(_hash_pairs(hasher, level))


def _hash_pairs(hasher: Hasher, level: bytes | bytearray) -> bytearray:
    if isinstance(hasher, HashlibHasher):
        return hasher.hash_pairs(level)
    size = hasher.digest_size
    out = bytearray()
    for i in range(0, len(level) - 2 * size + 1, 2 * size):
        out += hasher.hash_children(
            bytes(level[i : i + size]), bytes(level[i + size : i + 2 * size])
        )
    return out


# --------------------------------------------------------------------------------------
# Proof shapes (RFC 9162 §2.1.3.1 and §2.1.4.1), independent of any hash
# --------------------------------------------------------------------------------------


def _split(width: int) -> int:
    """Return the largest power of two strictly less than ``width`` (``width >= 2``)."""
    return 1 << ((width - 1).bit_length() - 1)


def inclusion_proof_length(index: LeafIndex, size: TreeSize) -> int:
    """Return how many hashes the inclusion proof of leaf ``index`` in a ``size`` tree has.

    Raises :class:`InvalidProof` unless ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise InvalidProof(f"leaf index {index} is not in a tree of size {size}")
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(size1: TreeSize, size2: TreeSize) -> int:
    """Return how many hashes the consistency proof from ``size1`` to ``size2`` has.

    The proof is empty when ``size1 == 0`` or ``size1 == size2``. Raises
    :class:`InvalidProof` unless ``0 <= size1 <= size2``.
    """
    if not 0 <= size1 <= size2:
        raise InvalidProof(f"sizes must satisfy 0 <= size1 <= size2, got {size1} and {size2}")
    if size1 == 0 or size1 == size2:
        return 0
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    shift = (size1 & -size1).bit_length() - 1  # trailing zeros of size1
    seed = 0 if size1 == 1 << shift else 1  # root1 itself is the seed when a power of two
    return seed + inner - shift + border


def _consistency_ranges(size1: TreeSize, size2: TreeSize) -> list[tuple[int, int]]:
    """Return the leaf ranges whose hashes form PROOF(size1, D[0:size2]) (RFC 9162 §2.1.4.1)."""
    out: list[tuple[int, int]] = []
    if size1 == 0 or size1 == size2:
        return out
    lo, hi, complete = 0, size2, True
    while size1 != hi:
        k = _split(hi - lo)
        if size1 - lo <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
            complete = False
    if not complete:
        out.append((lo, hi))
    out.reverse()
    return out


# --------------------------------------------------------------------------------------
# Proof data
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A log's size and root: what a checkpoint commits to."""

    size: TreeSize
    root: Root


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves, bottom-up."""

    index: LeafIndex
    size: TreeSize
    path: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """The RFC 9162 consistency proof from the tree of ``size1`` to that of ``size2``."""

    size1: TreeSize
    size2: TreeSize
    path: tuple[bytes, ...]


# --------------------------------------------------------------------------------------
# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2)
# --------------------------------------------------------------------------------------


def _check_digest(hasher: Hasher, what: str, value: bytes) -> None:
    if len(value) != hasher.digest_size:
        raise InvalidProof(
            f"{what} is {len(value)} bytes, expected {hasher.digest_size} ({hasher.name})"
        )


def _check_path(hasher: Hasher, proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise InvalidProof(f"proof has {len(proof)} hashes, expected exactly {want}")
    size = hasher.digest_size
    for i, element in enumerate(proof):
        if len(element) != size:
            raise InvalidProof(f"proof[{i}] is {len(element)} bytes, expected {size}")


def _check_root(expected: bytes, calculated: bytes) -> None:
    if not hmac.compare_digest(expected, calculated):
        raise RootMismatchError(expected, calculated)


def root_from_inclusion_proof(
    hasher: Hasher,
    index: LeafIndex,
    size: TreeSize,
    leaf_hash: LeafHash,
    proof: Sequence[bytes],
) -> Root:
    """Return the root that ``proof`` yields for ``leaf_hash`` at ``index`` in a ``size`` tree.

    Preconditions, checked first: ``0 <= index < size``; ``proof`` holds exactly
    :func:`inclusion_proof_length` ``(index, size)`` hashes; ``leaf_hash`` and every proof
    element are ``hasher.digest_size`` bytes. Raises :class:`InvalidProof` otherwise.
    """
    _check_path(hasher, proof, inclusion_proof_length(index, size))
    _check_digest(hasher, "leaf hash", leaf_hash)
    hash_children = hasher.hash_children
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # unreachable once the length is exact; kept as the RFC's own check
        raise InvalidProof(f"proof too short for leaf {index} in a tree of size {size}")
    return r


def verify_inclusion(
    hasher: Hasher,
    index: LeafIndex,
    size: TreeSize,
    leaf_hash: LeafHash,
    proof: Sequence[bytes],
    root: Root,
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the ``size``-leaf tree with ``root``.

    Same preconditions as :func:`root_from_inclusion_proof`, plus ``root`` is
    ``hasher.digest_size`` bytes. Raises :class:`InvalidProof` for a malformed proof and
    :class:`RootMismatchError` (a subclass) when the computed root differs.
    """
    _check_digest(hasher, "root", root)
    _check_root(root, root_from_inclusion_proof(hasher, index, size, leaf_hash, proof))


def root_from_consistency_proof(
    hasher: Hasher,
    size1: TreeSize,
    size2: TreeSize,
    proof: Sequence[bytes],
    root1: Root,
) -> Root:
    """Check ``proof`` against the ``size1`` tree's ``root1``; return the ``size2`` root it implies.

    Preconditions, checked first: ``1 <= size1 <= size2`` (from the empty tree any root2
    is consistent, so there is none to compute: :func:`verify_consistency` handles it);
    ``proof`` holds exactly :func:`consistency_proof_length` ``(size1, size2)`` hashes
    (none when ``size1 == size2``, and then root1 is returned); ``root1`` and every element
    are ``hasher.digest_size`` bytes. Raises :class:`InvalidProof`, or
    :class:`RootMismatchError` if the proof does not reproduce ``root1``.
    """
    want = consistency_proof_length(size1, size2)
    if size1 == 0:
        raise InvalidProof("a consistency proof from the empty tree implies no root2")
    _check_path(hasher, proof, want)
    _check_digest(hasher, "root1", root1)
    if size1 == size2:
        return root1
    hash_children = hasher.hash_children
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    if fn == 0:  # size1 is a power of two: root1 is the seed and not in the proof
        fr = sr = root1
        rest: Sequence[bytes] = proof
    else:
        fr = sr = proof[0]
        rest = proof[1:]
    for c in rest:
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # unreachable once the length is exact; kept as the RFC's own check
        raise InvalidProof(f"proof too short for sizes {size1} and {size2}")
    _check_root(root1, fr)
    return sr


def verify_consistency(
    hasher: Hasher,
    size1: TreeSize,
    size2: TreeSize,
    proof: Sequence[bytes],
    root1: Root,
    root2: Root,
) -> None:
    """Check that the ``size2`` tree with ``root2`` extends the ``size1`` tree with ``root1``.

    Preconditions as :func:`root_from_consistency_proof`, plus ``root2`` is
    ``hasher.digest_size`` bytes; with ``size1 == 0`` the proof is empty and ``root1`` must
    be the empty root (any ``root2`` is consistent with it); with ``size1 == size2`` the
    proof is empty and the roots must be equal. Raises :class:`InvalidProof` for a
    malformed proof and :class:`RootMismatchError` when a computed root differs.
    """
    _check_digest(hasher, "root2", root2)
    if size1 == 0:
        _check_path(hasher, proof, consistency_proof_length(size1, size2))
        _check_digest(hasher, "root1", root1)
        _check_root(hasher.empty_root(), root1)
        if size2 == 0:
            _check_root(root2, hasher.empty_root())
        return
    _check_root(root2, root_from_consistency_proof(hasher, size1, size2, proof, root1))


# --------------------------------------------------------------------------------------
# Level storage
# --------------------------------------------------------------------------------------


class LevelStore(Protocol):
    """Storage of complete-subtree hashes by level, for :class:`MerkleLog`.

    Level ``k`` holds, in order, the roots of the aligned complete subtrees of ``2**k``
    leaves; a log of ``n`` leaves has exactly ``n >> k`` of them at level ``k``. Digests
    are fixed-size; ``read`` and ``extend`` deal in concatenated digests so that a backend
    (in memory, SQLite) can move whole runs at once.
    """

    def count(self, level: int) -> int:
        """Return how many digests ``level`` holds (0 for a level never written)."""
        ...

    def get(self, level: int, index: int) -> bytes:
        """Return digest ``index`` of ``level``."""
        ...

    def read(self, level: int, start: int, stop: int) -> bytes:
        """Return digests ``start`` to ``stop - 1`` of ``level``, concatenated."""
        ...

    def append(self, level: int, digest: bytes) -> None:
        """Append one digest to ``level`` (creating the level if needed)."""
        ...

    def extend(self, level: int, digests: bytes | bytearray) -> None:
        """Append concatenated ``digests`` to ``level`` (creating the level if needed)."""
        ...


class MemoryLevelStore:
    """A :class:`LevelStore` holding each level as one ``bytearray`` (32 bytes a node)."""

    __slots__ = ("_digest_size", "_levels")

    def __init__(self, digest_size: int) -> None:
        """Create an empty store for digests of ``digest_size`` bytes."""
        self._digest_size = digest_size
        self._levels: list[bytearray] = []

    def count(self, level: int) -> int:
        """Return how many digests ``level`` holds."""
        if level >= len(self._levels):
            return 0
        return len(self._levels[level]) // self._digest_size

    def get(self, level: int, index: int) -> bytes:
        """Return digest ``index`` of ``level``."""
        d = self._digest_size
        return bytes(self._levels[level][index * d : (index + 1) * d])

    def read(self, level: int, start: int, stop: int) -> bytes:
        """Return digests ``start`` to ``stop - 1`` of ``level``, concatenated."""
        if level >= len(self._levels):
            return b""
        d = self._digest_size
        return bytes(self._levels[level][start * d : stop * d])

    def append(self, level: int, digest: bytes) -> None:
        """Append one digest to ``level``."""
        self._ensure(level).extend(digest)

    def extend(self, level: int, digests: bytes | bytearray) -> None:
        """Append concatenated digests to ``level``."""
        self._ensure(level).extend(digests)

    @classmethod
    def from_levels(cls, digest_size: int, levels: Iterable[bytearray]) -> MemoryLevelStore:
        """Return a store over ``levels`` (concatenated digests, level 0 first).

        The bytearrays are taken over, not copied (a million-leaf log holds 64 MB).
        """
        store = cls(digest_size)
        store._levels = list(levels)
        return store

    def _ensure(self, level: int) -> bytearray:
        while len(self._levels) <= level:
            self._levels.append(bytearray())
        return self._levels[level]


# --------------------------------------------------------------------------------------
# The incremental log
# --------------------------------------------------------------------------------------


class MerkleLog:
    """An append-only RFC 9162 Merkle log over a :class:`LevelStore`.

    Appending costs amortised O(1) hashes (at most log2(n)); :meth:`root`,
    :meth:`inclusion_proof` and :meth:`consistency_proof` work at the current or any
    earlier size with O(log n) hashes and store reads, never rebuilding the tree.
    Not thread-safe: callers serialise writers.
    """

    __slots__ = ("_hasher", "_store", "_size", "_head")

    def __init__(self, hasher: Hasher = DEFAULT_HASHER, store: LevelStore | None = None) -> None:
        """Open a log over ``store`` (a new in-memory one by default), hashing with ``hasher``."""
        self._hasher = hasher
        self._store: LevelStore = (
            store if store is not None else MemoryLevelStore(hasher.digest_size)
        )
        self._size = self._store.count(0)
        self._head: TreeHead | None = None

    @classmethod
    def from_leaves(cls, hasher: Hasher, leaves: Iterable[bytes]) -> MerkleLog:
        """Return a log built in bulk from leaf data."""
        log = cls(hasher)
        log._extend_hashes(_hash_leaves(hasher, leaves))
        return log

    @classmethod
    def from_leaf_hashes(cls, hasher: Hasher, leaf_hashes: Iterable[bytes]) -> MerkleLog:
        """Return a log built in bulk from leaf hashes; raise ``ValueError`` on a bad length."""
        log = cls(hasher)
        log.extend_leaf_hashes(leaf_hashes)
        return log

    @classmethod
    def from_level_prefixes(
        cls, hasher: Hasher, prefixes: Sequence[bytes | bytearray], leaf_tail: bytes | bytearray
    ) -> MerkleLog:
        """Return a log resumed from stored levels, hashing only what they lack.

        ``prefixes[k]`` holds the first digests of level ``k`` (concatenated, as stored);
        ``leaf_tail`` holds the leaf hashes that follow level 0's prefix, so the log has
        ``n = len(prefixes[0] + leaf_tail) / digest_size`` leaves. Each level above 0 is
        completed from the one below: O(missing digests) hashes, not O(n). Raises
        ``ValueError`` if a length is not a whole number of digests or a level holds more
        digests than ``n`` leaves give it (``n >> k`` at level ``k``).
        """
        d = hasher.digest_size
        for k, prefix in enumerate(prefixes):
            if len(prefix) % d:
                raise ValueError(f"level {k} holds {len(prefix)} bytes, not a whole number "
                                 f"of {d}-byte digests")
        if len(leaf_tail) % d:
            raise ValueError(f"the leaf tail holds {len(leaf_tail)} bytes, not a whole number "
                             f"of {d}-byte digests")
        levels = [bytearray(prefixes[0] if prefixes else b"")]
        levels[0] += leaf_tail
        size = len(levels[0]) // d
        for k, prefix in enumerate(prefixes):
            if len(prefix) // d > size >> k:
                raise ValueError(f"level {k} holds {len(prefix) // d} digests but a log of "
                                 f"{size} leaves has {size >> k}")
        for k in range(1, size.bit_length()):
            have = len(prefixes[k]) // d if k < len(prefixes) else 0
            want = size >> k
            level = bytearray(prefixes[k]) if k < len(prefixes) else bytearray()
            level += _hash_pairs(hasher, levels[k - 1][2 * have * d : 2 * want * d])
            levels.append(level)
        return cls(hasher, MemoryLevelStore.from_levels(d, levels))

    @property
    def hasher(self) -> Hasher:
        """The tree hasher of this log."""
        return self._hasher

    @property
    def size(self) -> TreeSize:
        """The number of leaves in the log."""
        return self._size

    def __len__(self) -> int:
        return self._size

    def append(self, data: bytes) -> LeafIndex:
        """Append one leaf's data; return its index."""
        return self.append_leaf_hash(self._hasher.hash_leaf(data))

    def append_leaf_hash(self, leaf_hash: LeafHash) -> LeafIndex:
        """Append one pre-hashed leaf; return its index. Raise ``ValueError`` on a bad length."""
        if len(leaf_hash) != self._hasher.digest_size:
            raise ValueError(
                f"leaf hash is {len(leaf_hash)} bytes, expected {self._hasher.digest_size}"
            )
        store, hash_children = self._store, self._hasher.hash_children
        index = self._size
        store.append(0, leaf_hash)
        node, level, i = leaf_hash, 0, index
        while i & 1:  # node closes a pair: its parent subtree is now complete
            node = hash_children(store.get(level, i - 1), node)
            level += 1
            i >>= 1
            store.append(level, node)
        self._size = index + 1
        return index

    def extend(self, leaves: Iterable[bytes]) -> TreeSize:
        """Append many leaves' data in bulk; return the new size."""
        return self._extend_hashes(_hash_leaves(self._hasher, leaves))

    def extend_leaf_hashes(self, leaf_hashes: Iterable[bytes]) -> TreeSize:
        """Append many pre-hashed leaves in bulk; return the new size.

        Raise ``ValueError`` (appending nothing) if any hash has the wrong length.
        """
        size = self._hasher.digest_size
        buf = bytearray()
        for i, h in enumerate(leaf_hashes):
            if len(h) != size:
                raise ValueError(f"leaf hash {i} is {len(h)} bytes, expected {size}")
            buf += h
        return self._extend_hashes(buf)

    def _extend_hashes(self, buf: bytes | bytearray) -> TreeSize:
        """Append concatenated leaf hashes, then hash each level's new pairs in one pass."""
        d = self._hasher.digest_size
        old, new = self._size, self._size + len(buf) // d
        if new == old:
            return new
        store = self._store
        store.extend(0, buf)
        level = 0
        while new >> (level + 1) > old >> (level + 1):
            first, last = old >> (level + 1), new >> (level + 1)  # new parents [first, last)
            children = store.read(level, 2 * first, 2 * last)
            store.extend(level + 1, _hash_pairs(self._hasher, children))
            level += 1
        self._size = new
        return new

    def level_digests(self, level: int, start: int, stop: int) -> bytes:
        """Return digests ``start`` to ``stop - 1`` of ``level``, concatenated (to persist them).

        Raises ``ValueError`` unless ``0 <= start <= stop <= size >> level``.
        """
        if level < 0 or not 0 <= start <= stop <= self._size >> level:
            raise ValueError(f"digests {start}..{stop} are not in level {level} of a log of "
                             f"{self._size} leaves")
        return self._store.read(level, start, stop)

    def leaf_hash(self, index: LeafIndex) -> LeafHash:
        """Return the hash of leaf ``index``; raise ``IndexError`` if out of range."""
        if not 0 <= index < self._size:
            raise IndexError(f"leaf index {index} out of range for size {self._size}")
        return self._store.get(0, index)

    def _subtree(self, lo: int, hi: int) -> bytes:
        """Return MTH(D[lo:hi]) for a range whose ``lo`` is aligned to the split of its width.

        Every node of an RFC 9162 tree qualifies; the range splits into the complete
        subtrees given by the bits of ``hi - lo``, folded right to left.
        """
        get = self._store.get
        width = hi - lo
        if not width & (width - 1):  # a complete subtree: one stored node
            level = width.bit_length() - 1
            return get(level, lo >> level)
        parts: list[bytes] = []
        for bit in range(width.bit_length() - 1, -1, -1):
            if width >> bit & 1:
                parts.append(get(bit, lo >> bit))
                lo += 1 << bit
        node = parts.pop()
        hash_children = self._hasher.hash_children
        while parts:
            node = hash_children(parts.pop(), node)
        return node

    def _check_size(self, size: TreeSize | None) -> TreeSize:
        if size is None:
            return self._size
        if not 0 <= size <= self._size:
            raise ValueError(f"size {size} out of range for a log of {self._size} leaves")
        return size

    def root(self, size: TreeSize | None = None) -> Root:
        """Return the root at ``size`` leaves (default: now); ``ValueError`` past the end."""
        size = self._check_size(size)
        if size == 0:
            return self._hasher.empty_root()
        head = self._head
        if head is not None and head.size == size:
            return head.root
        root = self._subtree(0, size)
        if size == self._size:
            self._head = TreeHead(size, root)
        return root

    def head(self) -> TreeHead:
        """Return the current size and root."""
        return TreeHead(self._size, self.root())

    def inclusion_proof(self, index: LeafIndex, size: TreeSize | None = None) -> InclusionProof:
        """Return the proof that leaf ``index`` is in the tree of ``size`` leaves (default: now).

        Raises ``ValueError`` if ``size`` exceeds the log or ``index`` is not below it.
        """
        size = self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is not in a tree of size {size}")
        # Below level `inner` the path holds the sibling of each ancestor (complete, or
        # the ragged right edge once); above it the ancestors are on the tree's right
        # border and the path holds their left siblings, one per set bit of index >> inner.
        get = self._store.get
        path: list[bytes] = []
        inner = (index ^ (size - 1)).bit_length()
        for level in range(inner):
            sibling = (index >> level) ^ 1
            if (sibling + 1) << level <= size:
                path.append(get(level, sibling))
            else:
                path.append(self._subtree(sibling << level, size))
        rest, level = index >> inner, inner
        while rest:
            if rest & 1:
                path.append(get(level, rest ^ 1))
            rest >>= 1
            level += 1
        return InclusionProof(index, size, tuple(path))

    def consistency_proof(self, size1: TreeSize, size2: TreeSize | None = None) -> ConsistencyProof:
        """Return the proof that the ``size2`` tree (default: now) extends the ``size1`` tree.

        Raises ``ValueError`` unless ``0 <= size1 <= size2 <= self.size``.
        """
        size2 = self._check_size(size2)
        if not 0 <= size1 <= size2:
            raise ValueError(f"sizes must satisfy 0 <= size1 <= size2, got {size1}, {size2}")
        path = tuple(self._subtree(lo, hi) for lo, hi in _consistency_ranges(size1, size2))
        return ConsistencyProof(size1, size2, path)


class InclusionVerifier:
    """:func:`verify_inclusion` that remembers the complete subtrees it has verified under
    the root it verifies against.

    Once a path has led from a leaf to a root, each complete subtree on it (``(node + 1) <<
    level <= size``) is known to be under that root with that digest, through the rest of
    that path. A later proof to the same root that reaches one of them with the same digest
    and the same remaining path elements (compared, not hashed) is verified there: proofs of
    many leaves under one root share their upper nodes, so a verification costs a few
    hashes instead of log2(n). Another root (a new checkpoint) starts afresh; remembered
    nodes are also forgotten past ``capacity``. Thread-safe.
    """

    def __init__(self, hasher: Hasher, capacity: int = 1 << 18) -> None:
        """Verify with ``hasher``, remembering at most ``capacity`` nodes."""
        self._hasher = hasher
        self._capacity = capacity
        self._under: tuple[TreeSize, Root] | None = None
        self._known: dict[tuple[int, int], tuple[bytes, tuple[bytes, ...]]] = {}
        self._lock = threading.Lock()

    def verify(self, index: LeafIndex, size: TreeSize, leaf_hash: LeafHash,
               proof: Sequence[bytes], root: Root) -> None:
        """Check that ``leaf_hash`` is leaf ``index`` of the ``size``-leaf tree with ``root``
        (RFC 9162 §2.1.3.2); raise :class:`InvalidProof` or :class:`RootMismatchError` as
        :func:`verify_inclusion` does."""
        _check_path(self._hasher, proof, inclusion_proof_length(index, size))
        _check_digest(self._hasher, "leaf hash", leaf_hash)
        _check_digest(self._hasher, "root", root)
        path = tuple(proof)
        with self._lock:
            if self._under != (size, root):
                self._under, self._known = (size, root), {}
            known_nodes = self._known
        hash_children = self._hasher.hash_children
        fn, sn, level = index, size - 1, 0
        r = leaf_hash
        seen: list[tuple[tuple[int, int], tuple[bytes, tuple[bytes, ...]]]] = []
        for position, p in enumerate(path):
            if fn & 1 or fn == sn:
                r = hash_children(p, r)
                while not fn & 1 and fn:
                    fn >>= 1
                    sn >>= 1
                    level += 1
            else:
                r = hash_children(r, p)
            fn >>= 1
            sn >>= 1
            level += 1
            if (fn + 1) << level <= size:  # r is a complete subtree's digest
                rest = path[position + 1:]
                known = known_nodes.get((level, fn))
                if known is not None:
                    if not hmac.compare_digest(known[0], r):
                        raise RootMismatchError(known[0], r)
                    if known[1] == rest:
                        self._remember(size, root, seen)
                        return
                seen.append(((level, fn), (r, rest)))
        _check_root(root, r)
        self._remember(size, root, seen)

    def _remember(self, size: TreeSize, root: Root,
                  nodes: list[tuple[tuple[int, int], tuple[bytes, tuple[bytes, ...]]]]
                  ) -> None:
        with self._lock:
            if self._under != (size, root):
                return  # verified under a root that is no longer the current one
            if len(self._known) + len(nodes) > self._capacity:
                self._known = {}
            self._known.update(nodes)


def bisect_roots(log: MerkleLog, roots: Sequence[tuple[TreeSize, Root]]) -> tuple[int, int]:
    """Where ``log`` stops giving the trusted ``roots`` (``(size, root)`` pairs, the largest
    of which ``log`` does not give): ``(good, bad)``, the largest size whose root ``log``
    gives and the smallest above it whose root it does not (``good`` is 0 when none
    matches). O(log k) roots of O(log n) stored digests each, for ``k`` roots.

    Every complete subtree ``log`` folds for ``good`` is vouched for by that root, so the
    damage is at or above index ``good`` (or in a node of ``bad``'s that covers it).
    """
    ordered = sorted(dict(roots).items())
    if not ordered:
        raise ValueError("no roots to bisect")

    def gives(position: int) -> bool:
        size, root = ordered[position]
        return size <= log.size and hmac.compare_digest(log.root(size), root)

    lo, hi = -1, len(ordered) - 1  # gives(lo) (the empty tree), not gives(hi)
    if gives(hi):
        raise ValueError(f"the log gives the root at size {ordered[hi][0]}: nothing to bisect")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if gives(mid):
            lo = mid
        else:
            hi = mid
    return (0 if lo < 0 else ordered[lo][0]), ordered[hi][0]


# --------------------------------------------------------------------------------------
# One-shot functions over a list of leaves
# --------------------------------------------------------------------------------------


def tree_root(hasher: Hasher, leaves: Sequence[bytes]) -> Root:
    """Return MTH of ``leaves`` (leaf data, not hashes): O(n) hashes."""
    return MerkleLog.from_leaves(hasher, leaves).root()


def _prefix_log(hasher: Hasher, leaves: Sequence[bytes], size: TreeSize | None) -> MerkleLog:
    if size is not None and not 0 <= size <= len(leaves):
        raise ValueError(f"size {size} out of range for {len(leaves)} leaves")
    return MerkleLog.from_leaves(hasher, leaves[:size])


def inclusion_proof(
    hasher: Hasher, leaves: Sequence[bytes], index: LeafIndex, size: TreeSize | None = None
) -> InclusionProof:
    """Return the inclusion proof of leaf ``index`` in the tree of ``leaves[:size]``.

    ``size`` defaults to ``len(leaves)``. Raises ``ValueError`` unless
    ``0 <= index < size <= len(leaves)``. Builds the tree: O(n) hashes.
    """
    return _prefix_log(hasher, leaves, size).inclusion_proof(index)


def consistency_proof(
    hasher: Hasher, leaves: Sequence[bytes], size1: TreeSize, size2: TreeSize | None = None
) -> ConsistencyProof:
    """Return the consistency proof from ``leaves[:size1]`` to ``leaves[:size2]``.

    ``size2`` defaults to ``len(leaves)``. Raises ``ValueError`` unless
    ``0 <= size1 <= size2 <= len(leaves)``. Builds the tree: O(n) hashes.
    """
    return _prefix_log(hasher, leaves, size2).consistency_proof(size1)
