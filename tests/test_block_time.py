"""Block time follows the clock (issue 18, part 3).

py-evm builds the next block's header the moment the previous block is mined, stamping it
``max(now, parent + 1)`` *then*; eth-tester mines that header whenever the next transaction
arrives. After an idle spell the new block therefore carried about its parent's mining
time: ``jointledger chain`` idle for 10 s stamped the next anchor ~12 s before the
checkpoint it anchored was signed, and the console showed a negative anchoring latency.

The embedded chain (in memory and stored) must stamp each block ``max(now, parent + 1)``
with *now* read when the block's first transaction arrives (or when it is mined empty).

The clock is faked where py-evm reads it (``eth._utils.headers.eth_now``), which is also
where the embedded chain reads it, so the idle spells cost no real time; one test keeps
the real clock to show the fake is not fooling us.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from eth._utils import headers as evm_headers
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger_node.chain.adapter import LedgerChain, Member, Role
from ledger_node.chain.embedded_store import close_chain_store
from ledger_node.log.checkpoint import log_id_for

ETHER = 10**18
LOG_ID = log_id_for("unionpay", 0)


@dataclass
class FakeClock:
    """The wall clock py-evm reads, as whole Unix seconds, moved only by the test.

    It starts well after the genesis (eth-tester stamps it with the real ``time.time()``),
    so no block time below is decided by the genesis's.
    """

    now: int = field(default_factory=lambda: int(time.time()) + 1000)

    def __call__(self) -> int:
        return self.now

    def idle(self, seconds: int) -> None:
        """Let ``seconds`` pass with nothing sent to the chain."""
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """A fake wall clock for every header py-evm and the embedded chain stamp."""
    fake = FakeClock()
    monkeypatch.setattr(evm_headers, "eth_now", fake)
    yield fake


def _send_one(chain: LedgerChain) -> int:
    """One transaction (a transfer from the faucet), mined; the number of its block."""
    return chain.fund(Account.create().address, 1).block_number


def _block_time(chain: LedgerChain, number: int) -> int:
    return int(chain.w3.eth.get_block(number)["timestamp"])


def test_a_block_after_an_idle_spell_carries_the_clock(clock: FakeClock) -> None:
    chain = LedgerChain.embedded()
    first = _send_one(chain)
    assert _block_time(chain, first) == clock.now
    clock.idle(10)
    sent_at = clock.now
    second = _send_one(chain)
    assert _block_time(chain, second) == sent_at  # was first's time + 1


def test_blocks_within_one_second_still_increase(clock: FakeClock) -> None:
    chain = LedgerChain.embedded()
    numbers = [_send_one(chain) for _ in range(3)]
    times = [_block_time(chain, n) for n in numbers]
    assert times == [clock.now, clock.now + 1, clock.now + 2]


def test_a_clock_behind_the_parent_gives_parent_plus_one(clock: FakeClock) -> None:
    chain = LedgerChain.embedded()
    clock.idle(100)
    parent = _block_time(chain, _send_one(chain))
    clock.now -= 50  # the wall clock stepped back (NTP)
    assert _block_time(chain, _send_one(chain)) == parent + 1


def test_an_empty_block_mined_after_an_idle_spell_carries_the_clock(clock: FakeClock) -> None:
    chain = LedgerChain.embedded()
    _send_one(chain)
    clock.idle(30)
    chain.w3.provider.ethereum_tester.mine_blocks(1)  # type: ignore[attr-defined]
    assert _block_time(chain, chain.block_number()) == clock.now


def test_time_travel_still_jumps_ahead_of_the_clock(clock: FakeClock) -> None:
    """eth-tester's ``time_travel`` (the console's clock-ahead test uses it) mines at the
    time asked for; the blocks after it stay after it."""
    chain = LedgerChain.embedded()
    target = clock.now + 600
    chain.w3.provider.ethereum_tester.time_travel(target)  # type: ignore[attr-defined]
    assert _block_time(chain, chain.block_number()) == target
    assert _block_time(chain, _send_one(chain)) == target + 1
    clock.idle(1000)
    assert _block_time(chain, _send_one(chain)) == clock.now


def _consortium(chain: LedgerChain) -> tuple[LedgerChain, LocalAccount]:
    """JointLedger deployed on ``chain``; the platform's view of it and the platform."""
    faucet = chain.with_account(chain.dev_faucet())
    platform, regulator = Account.create(), Account.create()
    for account in (platform, regulator):
        faucet.fund(account.address, 10 * ETHER)
    deployment = chain.with_account(regulator).deploy(
        [
            Member(platform.address, Role.PLATFORM, "unionpay", bytes([1]) * 64),
            Member(regulator.address, Role.REGULATOR, "pboc", bytes([2]) * 64),
        ],
        threshold=1,
    )
    return chain.with_account(platform).attach(deployment), platform


def test_the_contract_sees_the_block_time_the_header_carries(clock: FakeClock) -> None:
    """The header is stamped before the transaction runs: ``block.timestamp`` stored by the
    contract for an anchor is the header's time (a re-stamp at mining would differ)."""
    as_platform, _ = _consortium(LedgerChain.embedded())
    clock.idle(12)
    signed_at = clock.now
    outcome = as_platform.anchor_checkpoint(LOG_ID, 1, bytes(32), signed_at, b"sig")
    anchored = as_platform.latest_checkpoint(LOG_ID)
    assert anchored is not None
    assert anchored.block_time == _block_time(as_platform, outcome.block_number) == signed_at
    assert anchored.block_time >= anchored.timestamp  # never before the checkpoint's signing


def test_the_stored_chain_keeps_the_rule_across_a_reopen(clock: FakeClock,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    chain = LedgerChain.embedded_on_disk(path)
    as_platform, platform = _consortium(chain)
    deployment = as_platform.deployment
    clock.idle(10)
    as_platform.anchor_checkpoint(LOG_ID, 1, bytes(32), clock.now, b"sig1")
    assert _block_time(chain, chain.block_number()) == clock.now
    close_chain_store(chain.w3)

    clock.idle(60)  # the chain is down for a minute
    reopened = LedgerChain.embedded_on_disk(path, platform).attach(deployment)
    clock.idle(20)  # then idle after the reopen
    sent_at = clock.now
    outcome = reopened.anchor_checkpoint(LOG_ID, 2, bytes(32), sent_at, b"sig2")
    assert _block_time(reopened, outcome.block_number) == sent_at
    head = _block_time(reopened, outcome.block_number)
    clock.now = head - 5  # the clock now behind the stored head
    outcome = reopened.anchor_checkpoint(LOG_ID, 3, bytes(32), head, b"sig3")
    assert _block_time(reopened, outcome.block_number) == head + 1
    close_chain_store(reopened.w3)

    clock.now = head - 5  # reopened with the clock still behind: parent + 1 again
    again = LedgerChain.embedded_on_disk(path, platform).attach(deployment)
    outcome = again.anchor_checkpoint(LOG_ID, 4, bytes(32), head, b"sig4")
    assert _block_time(again, outcome.block_number) == head + 2
    close_chain_store(again.w3)


def test_real_clock_a_block_after_idling_is_within_a_second_of_sending() -> None:
    """No fake: idle three real seconds, then a block must carry the wall clock at sending."""
    chain = LedgerChain.embedded()
    _send_one(chain)
    time.sleep(3.0)
    sent_at = time.time()
    block_time = _block_time(chain, _send_one(chain))
    assert int(sent_at) <= block_time <= sent_at + 1
