"""Merkle log: cross-checks against a naive RFC 9162 reference, properties and corruptions.

The reference below is the RFC's recursive definitions written out literally over
``ledger_node.crypto.hashes`` (so it shares no hashing code with the fast path either).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_node.crypto.hashes import hash_function, sha256, sm3
from ledger_node.errors import InvalidProof, RootMismatchError
from ledger_node.log.merkle import (
    SHA256_HASHER,
    SM3_HASHER,
    FunctionHasher,
    Hasher,
    HashlibHasher,
    MemoryLevelStore,
    MerkleLog,
    consistency_proof,
    consistency_proof_length,
    hasher_for,
    inclusion_proof,
    inclusion_proof_length,
    root_from_consistency_proof,
    root_from_inclusion_proof,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

HASHERS = [SM3_HASHER, SHA256_HASHER]
MAX = 300

# --------------------------------------------------------------------------------------
# Naive reference: RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1, literally.
# --------------------------------------------------------------------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(name: str, d: Sequence[bytes]) -> bytes:
    h = hash_function(name)
    n = len(d)
    if n == 0:
        return h(b"")
    if n == 1:
        return h(b"\x00" + d[0])
    k = _k(n)
    return h(b"\x01" + ref_mth(name, d[:k]) + ref_mth(name, d[k:]))


def ref_path(name: str, m: int, d: Sequence[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return ref_path(name, m, d[:k]) + [ref_mth(name, d[k:])]
    return ref_path(name, m - k, d[k:]) + [ref_mth(name, d[:k])]


def ref_subproof(name: str, m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(name, d)]
    k = _k(n)
    if m <= k:
        return ref_subproof(name, m, d[:k], b) + [ref_mth(name, d[k:])]
    return ref_subproof(name, m - k, d[k:], False) + [ref_mth(name, d[:k])]


def ref_proof(name: str, m: int, d: Sequence[bytes]) -> list[bytes]:
    if m == 0 or m == len(d):
        return []
    return ref_subproof(name, m, d, True)


# --------------------------------------------------------------------------------------
# Fixtures: one random tree of MAX leaves per hash; smaller trees are its prefixes,
# which is exactly what a log serves for earlier sizes.
# --------------------------------------------------------------------------------------


def _leaves(seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(0, 40)) + i.to_bytes(4, "big") for i in range(n)]


LEAVES = _leaves(2026, MAX)


@cache
def big_log(name: str) -> MerkleLog:
    return MerkleLog.from_leaves(hasher_for(name), LEAVES)


@cache
def roots(name: str) -> tuple[bytes, ...]:
    log = big_log(name)
    return tuple(log.root(n) for n in range(MAX + 1))


def _flip(b: bytes, bit: int) -> bytes:
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --------------------------------------------------------------------------------------
# Hashers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"abc", bytes(range(256)) * 5])
def test_fast_sm3_equals_ledger_hashes_sm3(data: bytes) -> None:
    """The hashlib (OpenSSL) SM3 path equals ledger_node.crypto.hashes.sm3 (cryptography)."""
    assert SM3_HASHER.empty_root() == sm3(b"")
    assert SM3_HASHER.hash_leaf(data) == sm3(b"\x00" + data)
    left, right = sm3(data), sm3(data + b"x")
    assert SM3_HASHER.hash_children(left, right) == sm3(b"\x01" + left + right)
    assert SHA256_HASHER.hash_leaf(data) == sha256(b"\x00" + data)


def test_sm3_known_answer() -> None:
    # GB/T 32905-2016 Appendix A.1: SM3("abc").
    want = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert hashlib.new("sm3", b"abc").hexdigest() == want
    assert sm3(b"abc").hex() == want


def test_function_hasher_equals_hashlib_hasher() -> None:
    """The fallback used when hashlib's OpenSSL lacks SM3 builds the same trees."""
    fallback = FunctionHasher("sm3", sm3)
    assert fallback.digest_size == 32 and fallback.empty_root() == SM3_HASHER.empty_root()
    log = MerkleLog.from_leaves(fallback, LEAVES[:77])
    assert log.root() == roots("sm3")[77]
    proof = log.inclusion_proof(40).path
    assert list(proof) == list(big_log("sm3").inclusion_proof(40, 77).path)
    verify_inclusion(SM3_HASHER, 40, 77, log.leaf_hash(40), proof, log.root())


def test_hasher_for() -> None:
    assert hasher_for("sm3") is SM3_HASHER
    assert hasher_for("sha256") is SHA256_HASHER
    assert SM3_HASHER.name == "sm3" and SM3_HASHER.digest_size == 32
    with pytest.raises(ValueError, match="unknown hash"):
        hasher_for("md5")


def test_bulk_paths_equal_single_hashes() -> None:
    hasher = HashlibHasher("sm3")
    leaves = LEAVES[:9]
    assert bytes(hasher.hash_leaves(leaves)) == b"".join(map(hasher.hash_leaf, leaves))
    level = b"".join(sm3(x) for x in leaves[:8])
    want = b"".join(
        hasher.hash_children(level[i : i + 32], level[i + 32 : i + 64]) for i in range(0, 256, 64)
    )
    assert bytes(hasher.hash_pairs(level)) == want


@dataclass
class CountingHasher:
    """A plain Hasher (not HashlibHasher: exercises the generic paths) that counts calls."""

    inner: Hasher = SHA256_HASHER
    calls: int = 0
    name: str = field(default="counting-sha256")
    digest_size: int = 32

    def empty_root(self) -> bytes:
        return self.inner.empty_root()

    def hash_leaf(self, data: bytes) -> bytes:
        self.calls += 1
        return self.inner.hash_leaf(data)

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        self.calls += 1
        return self.inner.hash_children(left, right)


# --------------------------------------------------------------------------------------
# Cross-checks against the naive reference
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("hasher", HASHERS, ids=lambda h: h.name)
def test_roots_match_reference(hasher: Hasher) -> None:
    for n in [*range(0, 70), 127, 128, 129, 255, 256, 257, MAX]:
        want = ref_mth(hasher.name, LEAVES[:n])
        assert roots(hasher.name)[n] == want, n
        assert tree_root(hasher, LEAVES[:n]) == want


@pytest.mark.parametrize("hasher", HASHERS, ids=lambda h: h.name)
def test_inclusion_proofs_match_reference(hasher: Hasher) -> None:
    log = big_log(hasher.name)
    sizes = [*range(1, 40), 64, 65, 100, 255, 256, 257, MAX]
    for n in sizes:
        for m in range(n):
            assert list(log.inclusion_proof(m, n).path) == ref_path(hasher.name, m, LEAVES[:n])


@pytest.mark.parametrize("hasher", HASHERS, ids=lambda h: h.name)
def test_consistency_proofs_match_reference(hasher: Hasher) -> None:
    log = big_log(hasher.name)
    pairs = [(m, n) for n in range(0, 40) for m in range(n + 1)]
    rng = random.Random(7)
    for _ in range(200):
        a, b = rng.sample(range(MAX + 1), 2)
        pairs.append((min(a, b), max(a, b)))
    for m, n in pairs:
        want = ref_proof(hasher.name, m, LEAVES[:n])
        assert list(log.consistency_proof(m, n).path) == want, (m, n)


def test_one_shot_functions() -> None:
    leaves = LEAVES[:13]
    p = inclusion_proof(SM3_HASHER, leaves, 4, 11)
    assert (p.index, p.size) == (4, 11)
    assert list(p.path) == ref_path("sm3", 4, leaves[:11])
    c = consistency_proof(SM3_HASHER, leaves, 5)
    assert (c.size1, c.size2) == (5, 13)
    assert list(c.path) == ref_proof("sm3", 5, leaves)
    with pytest.raises(ValueError):
        inclusion_proof(SM3_HASHER, leaves, 0, 14)
    with pytest.raises(ValueError):
        consistency_proof(SM3_HASHER, leaves, 6, 5)


# --------------------------------------------------------------------------------------
# Exhaustive properties over every prefix of the random tree
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("hasher", HASHERS, ids=lambda h: h.name)
def test_every_inclusion_proof_verifies(hasher: Hasher) -> None:
    log, rs = big_log(hasher.name), roots(hasher.name)
    for n in range(1, MAX + 1):
        for m in range(n):
            proof = log.inclusion_proof(m, n).path
            assert len(proof) == inclusion_proof_length(m, n)
            verify_inclusion(hasher, m, n, log.leaf_hash(m), proof, rs[n])
            assert root_from_inclusion_proof(hasher, m, n, log.leaf_hash(m), proof) == rs[n]


@pytest.mark.parametrize("hasher", HASHERS, ids=lambda h: h.name)
def test_every_consistency_proof_verifies(hasher: Hasher) -> None:
    log, rs = big_log(hasher.name), roots(hasher.name)
    for n in range(0, MAX + 1):
        for m in range(n + 1):
            proof = log.consistency_proof(m, n).path
            assert len(proof) == consistency_proof_length(m, n)
            verify_consistency(hasher, m, n, proof, rs[m], rs[n])
            if m > 0:
                assert root_from_consistency_proof(hasher, m, n, proof, rs[m]) == rs[n]


def inclusion_corruptions(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes, other: bytes
) -> Iterator[tuple[str, int, int, bytes, list[bytes], bytes]]:
    """Yield (name, index, size, leaf_hash, proof, root), each of which must be rejected."""
    p = list(proof)
    yield "wrong-leaf", index, size, other, p, root
    yield "wrong-root", index, size, leaf, p, other
    yield "index+1", index + 1, size, leaf, p, root
    if index > 0:
        yield "index-1", index - 1, size, leaf, p, root
    yield "index^2", index ^ 2, size, leaf, p, root
    yield "size*2", index, size * 2, leaf, p, root
    yield "size//2", index, size // 2, leaf, p, root
    yield "extended", index, size, leaf, [*p, root], root
    yield "preceding", index, size, leaf, [root, *p], root
    yield "short-element", index, size, leaf, [*p[:-1], p[-1][:-1]] if p else [b""], root
    if p:
        yield "truncated", index, size, leaf, p[:-1], root
        yield "empty-proof", index, size, leaf, [], root
    if len(p) > 1:
        yield "reordered", index, size, leaf, [p[1], p[0], *p[2:]], root
    for i in range(len(p)):
        for bit in (0, 3, 255):
            q = list(p)
            q[i] = _flip(q[i], bit)
            yield f"flip-{i}-{bit}", index, size, leaf, q, root


def consistency_corruptions(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes, other: bytes
) -> Iterator[tuple[str, int, int, list[bytes], bytes, bytes]]:
    """Yield (name, size1, size2, proof, root1, root2) that must be rejected (0 < size1 < size2)."""
    p = list(proof)
    yield "swapped-roots", size1, size2, p, root2, root1
    yield "wrong-root1", size1, size2, p, other, root2
    yield "wrong-root2", size1, size2, p, root1, other
    yield "size1-1", size1 - 1, size2, p, root1, root2
    yield "size1+1", size1 + 1, size2, p, root1, root2
    yield "size1^2", size1 ^ 2, size2, p, root1, root2
    yield "size2*2", size1, size2 * 2, p, root1, root2
    yield "size2//2", size1, size2 // 2, p, root1, root2
    yield "sizes-swapped", size2, size1, p, root1, root2
    yield "empty-proof", size1, size2, [], root1, root2
    yield "truncated", size1, size2, p[:-1], root1, root2
    yield "extended", size1, size2, [*p, root2], root1, root2
    yield "preceding", size1, size2, [p[0], *p], root1, root2
    if len(p) > 1:
        yield "reordered", size1, size2, [p[1], p[0], *p[2:]], root1, root2
    for i in range(len(p)):
        for bit in (0, 4, 255):
            q = list(p)
            q[i] = _flip(q[i], bit)
            yield f"flip-{i}-{bit}", size1, size2, q, root1, root2


def _assert_inclusion_rejected(hasher: Hasher, log: MerkleLog, m: int, n: int) -> None:
    rs = roots(hasher.name)
    proof = log.inclusion_proof(m, n).path
    other = hasher.hash_leaf(b"not a leaf of this log")
    for name, i, s, leaf, p, root in inclusion_corruptions(
        m, n, log.leaf_hash(m), proof, rs[n], other
    ):
        with pytest.raises(InvalidProof):
            verify_inclusion(hasher, i, s, leaf, p, root)
            pytest.fail(f"{name} accepted for leaf {m} of {n}")


def _assert_consistency_rejected(hasher: Hasher, log: MerkleLog, m: int, n: int) -> None:
    rs = roots(hasher.name)
    proof = log.consistency_proof(m, n).path
    other = hasher.hash_leaf(b"not a root")
    for name, s1, s2, p, r1, r2 in consistency_corruptions(m, n, proof, rs[m], rs[n], other):
        with pytest.raises(InvalidProof):
            verify_consistency(hasher, s1, s2, p, r1, r2)
            pytest.fail(f"{name} accepted for sizes {m}, {n}")


@pytest.mark.parametrize("hasher", HASHERS, ids=lambda h: h.name)
def test_inclusion_corruptions_rejected_exhaustive_small(hasher: Hasher) -> None:
    log = big_log(hasher.name)
    for n in range(1, 65):
        for m in range(n):
            _assert_inclusion_rejected(hasher, log, m, n)


@pytest.mark.parametrize("hasher", HASHERS, ids=lambda h: h.name)
def test_consistency_corruptions_rejected_exhaustive_small(hasher: Hasher) -> None:
    log = big_log(hasher.name)
    for n in range(2, 65):
        for m in range(1, n):
            _assert_consistency_rejected(hasher, log, m, n)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["sm3", "sha256"]), st.integers(1, MAX), st.data())
def test_inclusion_corruptions_rejected_random(name: str, n: int, data: st.DataObject) -> None:
    m = data.draw(st.integers(0, n - 1))
    _assert_inclusion_rejected(hasher_for(name), big_log(name), m, n)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["sm3", "sha256"]), st.integers(2, MAX), st.data())
def test_consistency_corruptions_rejected_random(name: str, n: int, data: st.DataObject) -> None:
    m = data.draw(st.integers(1, n - 1))
    _assert_consistency_rejected(hasher_for(name), big_log(name), m, n)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_random_leaf_data_matches_reference(leaves: list[bytes], data: st.DataObject) -> None:
    """Arbitrary leaf data, duplicates and empty leaves included."""
    n = len(leaves)
    m = data.draw(st.integers(0, n - 1))
    k = data.draw(st.integers(0, n))
    log = MerkleLog.from_leaves(SM3_HASHER, leaves)
    assert log.root() == ref_mth("sm3", leaves)
    assert list(log.inclusion_proof(m).path) == ref_path("sm3", m, leaves)
    assert list(log.consistency_proof(k).path) == ref_proof("sm3", k, leaves)
    verify_inclusion(SM3_HASHER, m, n, log.leaf_hash(m), log.inclusion_proof(m).path, log.root())


# --------------------------------------------------------------------------------------
# Preconditions and edge cases of the verifiers
# --------------------------------------------------------------------------------------

H = SHA256_HASHER
D = H.hash_leaf(b"data")
E = H.empty_root()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: verify_inclusion(H, 0, 0, D, [], D), "not in a tree of size 0"),
        (lambda: verify_inclusion(H, 1, 1, D, [], D), "not in a tree of size 1"),
        (lambda: verify_inclusion(H, -1, 4, D, [D, D], D), "not in a tree"),
        (lambda: verify_inclusion(H, 0, 1, D, [], b""), "root is 0 bytes"),
        (lambda: verify_inclusion(H, 0, 1, b"", [], D), "leaf hash is 0 bytes"),
        (lambda: verify_inclusion(H, 0, 2, D, [], D), "0 hashes, expected exactly 1"),
        (lambda: verify_inclusion(H, 0, 2, D, [D[:31]], D), r"proof\[0\] is 31 bytes"),
        (lambda: verify_consistency(H, 2, 1, [], D, D), "size1 <= size2"),
        (lambda: verify_consistency(H, 1, 2, [], D, D), "0 hashes, expected exactly 1"),
        (lambda: verify_consistency(H, 1, 1, [D], D, D), "1 hashes, expected exactly 0"),
        (lambda: verify_consistency(H, 0, 1, [D], E, D), "1 hashes, expected exactly 0"),
        (lambda: verify_consistency(H, 0, 0, [], E, b""), "root2 is 0 bytes"),
        (lambda: root_from_consistency_proof(H, 0, 3, [], E), "empty tree implies no root2"),
    ],
)
def test_malformed_inputs(call: Callable[[], object], match: str) -> None:
    with pytest.raises(InvalidProof, match=match) as info:
        call()
    assert not isinstance(info.value, RootMismatchError)


def test_trivial_trees() -> None:
    verify_inclusion(H, 0, 1, D, [], D)  # a one-leaf tree's root is its leaf hash
    with pytest.raises(RootMismatchError) as info:
        verify_inclusion(H, 0, 1, D, [], E)
    assert (info.value.expected, info.value.calculated) == (E, D)
    verify_consistency(H, 0, 0, [], E, E)
    verify_consistency(H, 0, 5, [], E, D)  # from the empty tree anything is consistent
    verify_consistency(H, 3, 3, [], D, D)
    assert root_from_consistency_proof(H, 3, 3, [], D) == D
    with pytest.raises(RootMismatchError):
        verify_consistency(H, 0, 5, [], D, D)  # size 0 must have the empty root
    with pytest.raises(RootMismatchError):
        verify_consistency(H, 0, 0, [], E, D)
    with pytest.raises(RootMismatchError):
        verify_consistency(H, 3, 3, [], D, E)


# --------------------------------------------------------------------------------------
# The incremental log
# --------------------------------------------------------------------------------------


def _levels(log: MerkleLog) -> list[bytes]:
    store = log._store
    out, level = [], 0
    while store.count(level):
        out.append(store.read(level, 0, store.count(level)))
        level += 1
    return out


@pytest.mark.parametrize("hasher", HASHERS, ids=lambda h: h.name)
def test_incremental_equals_bulk_at_every_size(hasher: Hasher) -> None:
    log = MerkleLog(hasher)
    assert log.root() == hasher.empty_root() and log.size == 0
    rs = roots(hasher.name)
    for n, leaf in enumerate(LEAVES, start=1):
        assert log.append(leaf) == n - 1
        assert log.size == len(log) == n
        assert log.root() == rs[n]
        assert log.head().root == rs[n] and log.head().size == n
        if n % 37 == 0 or n in (1, 2, 3, 255, 256):
            assert _levels(log) == _levels(MerkleLog.from_leaves(hasher, LEAVES[:n]))
    assert _levels(log) == _levels(big_log(hasher.name))


@pytest.mark.parametrize("hasher", HASHERS, ids=lambda h: h.name)
def test_mixed_appends_and_extends_equal_bulk(hasher: Hasher) -> None:
    rng = random.Random(11)
    log = MerkleLog(hasher)
    while log.size < MAX:
        pos = log.size
        step = min(rng.choice([0, 1, 1, 2, 3, 7, 8, 16, 33]), MAX - pos)
        kind = rng.randrange(3)
        if kind == 0:
            for leaf in LEAVES[pos : pos + step]:
                log.append(leaf)
        elif kind == 1:
            assert log.extend(LEAVES[pos : pos + step]) == pos + step
        else:
            hashes = [hasher.hash_leaf(x) for x in LEAVES[pos : pos + step]]
            assert log.extend_leaf_hashes(hashes) == pos + step
        assert log.root() == roots(hasher.name)[log.size]
    assert _levels(log) == _levels(big_log(hasher.name))


def test_from_leaf_hashes_and_generic_hasher_paths() -> None:
    counting = CountingHasher()
    hashes = [SHA256_HASHER.hash_leaf(x) for x in LEAVES]
    log = MerkleLog.from_leaf_hashes(counting, hashes)
    assert log.root() == roots("sha256")[MAX]
    assert MerkleLog.from_leaves(counting, LEAVES).root() == roots("sha256")[MAX]
    assert [log.leaf_hash(i) for i in (0, 17, MAX - 1)] == [hashes[0], hashes[17], hashes[-1]]


def test_proofs_never_rebuild_the_tree() -> None:
    """Root, proofs and appends cost O(log n) hash calls in a 2**16 + 5 leaf log."""
    counting = CountingHasher()
    n = 2**16 + 5
    log = MerkleLog.from_leaf_hashes(counting, (i.to_bytes(32, "big") for i in range(n)))
    assert counting.calls == n - 3  # one per internal complete-subtree node, then nothing
    for call in (
        lambda: log.root(n - 1),
        lambda: log.inclusion_proof(12345),
        lambda: log.inclusion_proof(n - 1),
        lambda: log.inclusion_proof(2**16 - 1, n - 1),
        lambda: log.consistency_proof(777, n - 3),
        lambda: log.consistency_proof(2**16 - 1),
        lambda: log.append(b"one more"),
    ):
        counting.calls = 0
        call()
        assert counting.calls <= 2 * 17, counting.calls


def test_log_errors() -> None:
    log = MerkleLog.from_leaves(SM3_HASHER, LEAVES[:10])
    with pytest.raises(ValueError, match="out of range"):
        log.root(11)
    with pytest.raises(ValueError):
        log.inclusion_proof(10)
    with pytest.raises(ValueError):
        log.inclusion_proof(3, 3)
    with pytest.raises(ValueError):
        log.inclusion_proof(0, 11)
    with pytest.raises(ValueError):
        log.consistency_proof(5, 4)
    with pytest.raises(ValueError):
        log.consistency_proof(5, 11)
    with pytest.raises(IndexError):
        log.leaf_hash(10)
    with pytest.raises(ValueError, match="31 bytes"):
        log.append_leaf_hash(bytes(31))
    with pytest.raises(ValueError, match="leaf hash 1 is 33 bytes"):
        log.extend_leaf_hashes([bytes(32), bytes(33)])
    assert log.size == 10


def test_reopen_over_existing_store() -> None:
    """A log opened over a filled store carries on from it (the SQLite path relies on it)."""
    first = MerkleLog.from_leaves(SHA256_HASHER, LEAVES[:100])
    again = MerkleLog(SHA256_HASHER, first._store)
    assert again.size == 100 and again.root() == roots("sha256")[100]
    again.extend(LEAVES[100:])
    assert again.root() == roots("sha256")[MAX]
    assert isinstance(first._store, MemoryLevelStore)


# --------------------------------------------------------------------------------------
# Resuming from stored levels
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("hasher", HASHERS, ids=lambda h: h.name)
def test_resuming_from_level_prefixes_equals_bulk(hasher: Hasher) -> None:
    """Any stored prefix of each level, plus the leaf hashes after level 0's, gives the log."""
    rng = random.Random(5)
    d = hasher.digest_size
    full = _levels(big_log(hasher.name))
    for n in [*range(0, 40), 255, 256, 257, MAX]:
        want = _levels(MerkleLog.from_leaves(hasher, LEAVES[:n]))
        for _ in range(4):
            prefixes = [level[: rng.randint(0, n >> k) * d] for k, level in enumerate(full)
                        if n >> k]
            covered = len(prefixes[0]) // d if prefixes else 0
            tail = full[0][covered * d : n * d]
            resumed = MerkleLog.from_level_prefixes(hasher, prefixes, tail)
            assert resumed.size == n
            assert _levels(resumed) == want
            assert resumed.root() == roots(hasher.name)[n]
            resumed.extend(LEAVES[n : n + 3])
            assert resumed.root() == roots(hasher.name)[min(MAX, n + 3)]


def test_resuming_hashes_only_what_the_levels_lack() -> None:
    counting = CountingHasher()
    bulk = MerkleLog.from_leaf_hashes(counting, (i.to_bytes(32, "big") for i in range(4096)))
    prefixes = [bulk.level_digests(k, 0, (4096 >> k) // 1024 * 1024) for k in range(3)]
    counting.calls = 0
    resumed = MerkleLog.from_level_prefixes(counting, prefixes, b"")
    assert counting.calls == 1023  # levels 3..12 of 4096 leaves: 512 + 256 + ... + 1
    assert resumed.root() == bulk.root()


def test_resuming_refuses_inconsistent_levels() -> None:
    log = MerkleLog.from_leaves(SM3_HASHER, LEAVES[:10])
    level0, level1 = log.level_digests(0, 0, 10), log.level_digests(1, 0, 5)
    with pytest.raises(ValueError, match="level 1 holds 5 digests but a log of 9 leaves has 4"):
        MerkleLog.from_level_prefixes(SM3_HASHER, [level0[:-32], level1], b"")
    with pytest.raises(ValueError, match="level 3 holds 1 digests but a log of 4 leaves has 0"):
        MerkleLog.from_level_prefixes(SM3_HASHER, [level0[:128], b"", b"", level0[:32]], b"")
    with pytest.raises(ValueError, match="level 1 holds 31 bytes"):
        MerkleLog.from_level_prefixes(SM3_HASHER, [level0, level1[:31]], b"")
    with pytest.raises(ValueError, match="leaf tail holds 33 bytes"):
        MerkleLog.from_level_prefixes(SM3_HASHER, [level0], bytes(33))
    assert MerkleLog.from_level_prefixes(SM3_HASHER, [], b"").root() == SM3_HASHER.empty_root()


def test_level_digests() -> None:
    log = MerkleLog.from_leaves(SHA256_HASHER, LEAVES[:10])
    assert log.level_digests(0, 2, 4) == log.leaf_hash(2) + log.leaf_hash(3)
    assert log.level_digests(3, 0, 1) == log.root(8)
    assert log.level_digests(1, 5, 5) == b""
    for level, start, stop in [(0, 0, 11), (1, 0, 6), (4, 0, 1), (0, 3, 2), (-1, 0, 0)]:
        with pytest.raises(ValueError, match="are not in level"):
            log.level_digests(level, start, stop)
