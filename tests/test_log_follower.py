"""The log follower on its own: a platform's log anchored on an embedded chain, served page
by page from memory (honestly or not), followed and verified against the anchors.

Each fault class is detected with the range it refuses, verified ranges before a fault are
handed over, and a key rotated mid-log still verifies the checkpoints signed before it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import pytest

from ledger_node.chain.adapter import AnchoredCheckpoint, KeyPeriod, LedgerChain
from ledger_node.client.log_follower import (
    FAULT_BAD_SIGNATURE,
    FAULT_ROOT_MISMATCH,
    FAULT_UNREACHABLE,
    FAULT_WITHHELD,
    FAULT_WRONG_LOG,
    AnchoredRootMismatch,
    ForeignLog,
    HashChanged,
    LogFault,
    LogFollower,
    PageIncomplete,
    PageNotServed,
    RegisteredKeys,
    ServedPage,
    UnknownHash,
    UnsignedCheckpoint,
    VerifiedRange,
)
from ledger_node.crypto.gmcrypto import SM2PrivateKey, generate_private_key
from ledger_node.demo.run import Party
from ledger_node.errors import ApiError, InvalidLeaf
from ledger_node.log.checkpoint import Checkpoint, log_id_for, sign_checkpoint
from ledger_node.log.leaf import Leaf, leaves_data
from ledger_node.log.merkle import MerkleLog, hasher_for
from tests.api_support import Consortium, make_consortium, random_leaves

SIZES = (10, 20, 25)  # the anchored checkpoints of every log here
TIMESTAMP = 1_790_000_000


@pytest.fixture(scope="module")
def consortium() -> Consortium:
    return make_consortium(LedgerChain.embedded())


def anchor_log(consortium: Consortium, party: Party, shard: int, leaves: Sequence[Leaf],
               signers: Sequence[SM2PrivateKey], sizes: Sequence[int] = SIZES,
               between: Callable[[int], None] = lambda size: None) -> list[AnchoredCheckpoint]:
    """Anchor checkpoints of ``party``'s log ``shard`` at ``sizes``, the one at ``sizes[i]``
    signed with ``signers[i]``; ``between(size)`` runs after each. Returns the anchors as
    read from the chain's events."""
    log_id = log_id_for(party.name, shard)
    tree = MerkleLog(hasher_for("sm3"))
    tree.extend(leaves_data(leaves))
    as_party = consortium.as_party(party)
    for size, key in zip(sizes, signers, strict=True):
        checkpoint = Checkpoint(party.name, log_id, size, tree.root(size), TIMESTAMP + size)
        signed = sign_checkpoint(key, checkpoint)
        as_party.anchor_checkpoint(log_id, size, checkpoint.root, checkpoint.timestamp,
                                   signed.signature)
        between(size)
    return consortium.chain.checkpoints(log_id)


@dataclass
class MemoryNode:
    """A node serving a log's leaves from memory; ``change(page, served)`` may alter them."""

    platform: str
    log_id: bytes
    leaves: list[Leaf]
    change: Callable[[tuple[int, int], ServedPage[Leaf]], ServedPage[Leaf]] = (
        lambda page, served: served)
    asked: list[tuple[int, int]] = field(default_factory=list)

    def fetch(self, start: int, end: int) -> ServedPage[Leaf]:
        self.asked.append((start, end))
        served = ServedPage(self.leaves[start:end], "sm3", len(self.leaves),
                            origin=(self.platform, self.log_id), served=(start, end))
        return self.change((start, end), served)


@dataclass
class Log:
    """A platform log anchored at :data:`SIZES`, and a way to follow it."""

    consortium: Consortium
    party: Party
    log_id: bytes
    leaves: list[Leaf]
    anchors: list[AnchoredCheckpoint]

    def node(self, change: Callable[[tuple[int, int], ServedPage[Leaf]], ServedPage[Leaf]]
             | None = None) -> MemoryNode:
        node = MemoryNode(self.party.name, self.log_id, list(self.leaves))
        if change is not None:
            node.change = change
        return node

    def follower(self, keys: RegisteredKeys | None = None, *, tree: MerkleLog | None = None,
                 page_size: int = 7, ahead: int = 0,
                 on_new_tree: Callable[[MerkleLog], None] | None = None) -> LogFollower[Leaf]:
        return LogFollower(self.party.name, self.party.account.address, self.log_id,
                           keys or RegisteredKeys(self.consortium.chain), leaves_data,
                           tree=tree, page_size=page_size, ahead=ahead, on_new_tree=on_new_tree)


def follow(follower: LogFollower[Leaf], anchors: Sequence[AnchoredCheckpoint],
           node: MemoryNode) -> tuple[list[VerifiedRange[Leaf]], LogFault | None]:
    """The ranges handed over, and the fault the follow ended with (``None``: clean)."""
    verified: list[VerifiedRange[Leaf]] = []
    try:
        follower.follow(anchors, node.fetch, verified.append)
    except LogFault as fault:
        return verified, fault
    return verified, None


@pytest.fixture(scope="module")
def log(consortium: Consortium) -> Log:
    party = consortium.unionpay
    leaves = random_leaves(25, seed=3)
    anchors = anchor_log(consortium, party, 0, leaves, [party.sm2_key] * len(SIZES))
    return Log(consortium, party, log_id_for(party.name, 0), leaves, anchors)


def spans(verified: Sequence[VerifiedRange[Leaf]]) -> list[tuple[int, int]]:
    return [(v.start, v.end) for v in verified]


# ---------------------------------------------------------------------------- an honest node


@pytest.mark.parametrize("ahead", [0, 2])
def test_an_honest_log_is_verified_checkpoint_by_checkpoint(log: Log, ahead: int) -> None:
    follower, node = log.follower(ahead=ahead), log.node()
    verified, fault = follow(follower, log.anchors, node)
    assert fault is None
    assert spans(verified) == [(0, 10), (10, 20), (20, 25)]
    assert node.asked == [(0, 7), (7, 14), (14, 21), (21, 25)]
    assert [list(v.items) for v in verified] == [log.leaves[0:10], log.leaves[10:20],
                                                 log.leaves[20:25]]
    for part, anchor in zip(verified, log.anchors, strict=True):
        assert part.anchor == anchor
        assert part.checkpoint.checkpoint.root == anchor.root
        assert part.checkpoint.signature == anchor.signature
    assert follower.verified_size == 25
    assert follower.tree is not None and follower.tree.root() == log.anchors[-1].root
    assert [follower.tree.hasher.hash_leaf(d) for d in leaves_data(log.leaves[:10])] == list(
        verified[0].leaf_hashes)
    assert follower.follow(log.anchors, node.fetch, verified.append) == 0  # nothing new


def test_following_resumes_from_a_tree_verified_before(log: Log) -> None:
    tree = MerkleLog(hasher_for("sm3"))
    tree.extend(leaves_data(log.leaves[:20]))
    follower, node = log.follower(tree=tree), log.node()
    verified, fault = follow(follower, log.anchors, node)
    assert fault is None and spans(verified) == [(20, 25)]
    assert node.asked == [(20, 25)]


# ---------------------------------------------------------------------------- faults


def _drop_last(page: tuple[int, int], served: ServedPage[Leaf]) -> ServedPage[Leaf]:
    if page != (14, 21):
        return served
    return dataclasses.replace(served, items=served.items[:-1])


def test_withheld_leaves_are_refused_after_what_verified_before(log: Log) -> None:
    verified, fault = follow(log.follower(), log.anchors, log.node(_drop_last))
    assert spans(verified) == [(0, 10)]  # handed over before the fault
    assert isinstance(fault, PageIncomplete) and fault.kind == FAULT_WITHHELD
    assert (fault.start, fault.end, fault.served_count) == (14, 21, 6)
    assert fault.detail == ("asked for leaves [14, 21), the node served 6 (it reports size "
                            "25; the chain anchors 25)")


@pytest.mark.parametrize(("error", "kind"), [
    (ApiError(416, "range-not-satisfiable", "Leaves beyond the end", "size 7"), FAULT_WITHHELD),
    (ApiError(404, "unknown-log", "Unknown log", "not here"), FAULT_WITHHELD),
    (InvalidLeaf("leaves", "malformed"), FAULT_WITHHELD),
    (ApiError(503, "unavailable", "Unavailable", "later"), FAULT_UNREACHABLE),
    (httpx.ConnectError("connection refused"), FAULT_UNREACHABLE),
])
def test_a_page_the_node_does_not_serve(log: Log, error: Exception, kind: str) -> None:
    def refuse(page: tuple[int, int], served: ServedPage[Leaf]) -> ServedPage[Leaf]:
        if page == (7, 14):
            raise error
        return served

    for ahead in (0, 2):
        verified, fault = follow(log.follower(ahead=ahead), log.anchors, log.node(refuse))
        assert verified == []  # the first anchor (10) needs the refused page
        assert isinstance(fault, PageNotServed) and fault.kind == kind
        assert (fault.start, fault.end, fault.page, fault.error) == (7, 25, (7, 14), error)
        assert fault.detail.startswith("the node did not serve leaves [7, 14) that the chain "
                                       f"anchors: {type(error).__name__}: ")


def _flip(index: int) -> Callable[[tuple[int, int], ServedPage[Leaf]], ServedPage[Leaf]]:
    def change(page: tuple[int, int], served: ServedPage[Leaf]) -> ServedPage[Leaf]:
        if not page[0] <= index < page[1]:
            return served
        items = list(served.items)
        leaf = items[index - page[0]]
        items[index - page[0]] = dataclasses.replace(
            leaf, commitment=bytes([leaf.commitment[0] ^ 1]) + leaf.commitment[1:])
        return dataclasses.replace(served, items=items)
    return change


def test_a_leaf_that_does_not_give_the_anchored_root_is_refused(log: Log) -> None:
    verified, fault = follow(log.follower(), log.anchors, log.node(_flip(12)))
    assert spans(verified) == [(0, 10)]
    assert isinstance(fault, AnchoredRootMismatch) and fault.kind == FAULT_ROOT_MISMATCH
    assert (fault.start, fault.end) == (10, 20)
    assert fault.anchor == log.anchors[1] and fault.computed != log.anchors[1].root
    assert f"leaves [10, 20) as served give root {fault.computed.hex()}" in fault.detail
    assert f"(block {log.anchors[1].block_number})" in fault.detail


def test_a_bad_checkpoint_after_a_good_one_on_the_same_page(log: Log) -> None:
    """One page reaches both: the good one is handed over, the refused range starts there,
    and the detail names the page's leaves (the regulator's wording, kept as it was)."""
    verified, fault = follow(log.follower(page_size=25), log.anchors, log.node(_flip(12)))
    assert spans(verified) == [(0, 10)]
    assert isinstance(fault, AnchoredRootMismatch)
    assert (fault.start, fault.end, fault.served_from) == (10, 20, 0)
    assert fault.detail.startswith("leaves [0, 20) as served give root ")


def test_leaves_of_another_log_are_refused(log: Log) -> None:
    other = log_id_for("wechatpay", 0)

    def foreign(page: tuple[int, int], served: ServedPage[Leaf]) -> ServedPage[Leaf]:
        return dataclasses.replace(served, origin=("wechatpay", other))

    verified, fault = follow(log.follower(), log.anchors, log.node(foreign))
    assert verified == []
    assert isinstance(fault, ForeignLog) and fault.kind == FAULT_WRONG_LOG
    assert (fault.served_platform, fault.served_log_id) == ("wechatpay", other)
    assert (fault.start, fault.end) == (0, 7)


def test_an_unknown_or_changed_hash_is_refused(log: Log) -> None:
    def named(name: str, pages: set[tuple[int, int]]
              ) -> Callable[[tuple[int, int], ServedPage[Leaf]], ServedPage[Leaf]]:
        def change(page: tuple[int, int], served: ServedPage[Leaf]) -> ServedPage[Leaf]:
            return dataclasses.replace(served, hash_name=name) if page in pages else served
        return change

    _, unknown = follow(log.follower(), log.anchors, log.node(named("md5", {(0, 7)})))
    assert isinstance(unknown, UnknownHash) and unknown.kind == FAULT_WRONG_LOG
    assert unknown.detail == "the node names hash 'md5'"

    verified, changed = follow(log.follower(), log.anchors, log.node(named("sha256",
                                                                            {(14, 21)})))
    assert spans(verified) == [(0, 10)]
    assert isinstance(changed, HashChanged) and changed.kind == FAULT_ROOT_MISMATCH
    assert (changed.was, changed.now, changed.start, changed.end) == ("sm3", "sha256", 14, 21)

    # an empty log takes the hash its node names (a new tree, reported to the caller)
    trees: list[MerkleLog] = []
    sha = log.follower(tree=MerkleLog(hasher_for("sm3")), on_new_tree=trees.append)
    _, fault = follow(sha, log.anchors, log.node(named("sha256", {(0, 7), (7, 14)})))
    assert [t.hasher.name for t in trees] == ["sha256"] and sha.tree is trees[0]
    assert isinstance(fault, AnchoredRootMismatch)  # anchored under sm3, so it cannot hold


def test_a_checkpoint_signed_by_no_registered_key_is_refused(consortium: Consortium) -> None:
    party, stranger = consortium.unionpay, generate_private_key()
    leaves = random_leaves(25, seed=4)
    anchors = anchor_log(consortium, party, 1, leaves, [party.sm2_key, stranger,
                                                        party.sm2_key])
    log = Log(consortium, party, log_id_for(party.name, 1), leaves, anchors)
    verified, fault = follow(log.follower(), anchors, log.node())
    assert spans(verified) == [(0, 10)]
    assert isinstance(fault, UnsignedCheckpoint) and fault.kind == FAULT_BAD_SIGNATURE
    assert (fault.start, fault.end, fault.malformed) == (10, 20, None)
    assert fault.detail == (f"the checkpoint at size 20 anchored in block "
                            f"{anchors[1].block_number} is not signed by a key unionpay "
                            f"registered")
    unsigned = [dataclasses.replace(a, signature=None) for a in anchors]
    _, fault = follow(log.follower(), unsigned, log.node())
    assert isinstance(fault, UnsignedCheckpoint) and (fault.start, fault.end) == (0, 10)


def test_a_key_rotated_mid_log_still_verifies_the_checkpoints_before_it(
        consortium: Consortium) -> None:
    party, new_key = consortium.wechatpay, generate_private_key()
    keys = RegisteredKeys(consortium.chain)
    assert [k.raw for k in keys.of(party.account.address)] == [
        party.sm2_key.public_key().raw]  # cached before the rotation

    def rotate_after_the_first(size: int) -> None:
        if size == SIZES[0]:
            proposal, _ = consortium.chain.propose_rotate_key(party.account.address,
                                                              new_key.public_key().raw)
            consortium.as_party(consortium.unionpay).approve(proposal)

    leaves = random_leaves(25, seed=5)
    anchors = anchor_log(consortium, party, 0, leaves, [party.sm2_key, new_key, new_key],
                         between=rotate_after_the_first)
    history = consortium.chain.key_history(consortium.chain.member(party.account.address))
    assert [p.public_key for p in history] == [party.sm2_key.public_key().raw,
                                               new_key.public_key().raw]
    log = Log(consortium, party, log_id_for(party.name, 0), leaves, anchors)
    for registered in (keys, RegisteredKeys(consortium.chain)):  # cached before, or read now
        verified, fault = follow(log.follower(registered), anchors, log.node())
        assert fault is None and spans(verified) == [(0, 10), (10, 20), (20, 25)]
    assert [k.raw for k in keys.of(party.account.address)] == [
        new_key.public_key().raw, party.sm2_key.public_key().raw]  # newest first


def test_registered_keys_off_the_curve_are_skipped(
        log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    good = log.party.sm2_key.public_key().raw
    monkeypatch.setattr(LedgerChain, "key_history", lambda chain, member: [
        KeyPeriod(good, None, 1), KeyPeriod(bytes(64), 1, None)])
    verified, fault = follow(log.follower(), log.anchors, log.node())
    assert fault is None and spans(verified) == [(0, 10), (10, 20), (20, 25)]


def test_page_size_and_prefetch_depth_are_checked(log: Log) -> None:
    with pytest.raises(ValueError, match="page_size"):
        log.follower(page_size=0)
    with pytest.raises(ValueError, match="ahead"):
        log.follower(ahead=-1)


def test_a_fault_stops_fetching_ahead(log: Log) -> None:
    asked: list[tuple[int, int]] = []

    def change(page: tuple[int, int], served: ServedPage[Leaf]) -> ServedPage[Leaf]:
        asked.append(page)
        return _flip(1)(page, served)

    follower = log.follower(page_size=1, ahead=2)
    _, fault = follow(follower, log.anchors, log.node(change))
    assert isinstance(fault, AnchoredRootMismatch) and (fault.start, fault.end) == (0, 10)
    assert 10 <= len(asked) <= 12  # the first anchor's ten pages, at most two more ahead
