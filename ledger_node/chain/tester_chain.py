"""The embedded chain's py-evm chain and eth-tester backend, with block times that follow
the clock.

eth-tester's chain class (``MainnetTesterPosChain``, local to its ``setup_tester_chain``) is
py-evm's :class:`~eth.chains.base.MiningChain`, which builds the *pending* header of the next
block the moment a block is mined, stamped ``max(now, parent + 1)`` with *now* read then.
eth-tester auto-mines that header when the next transaction arrives, however late, so after
an idle spell a block carried about its parent's mining time: an anchor sent after ten idle
seconds was stamped before the checkpoint it anchors was signed (issue 18, part 3).

:class:`TesterChain` stamps the pending header again, ``max(now, parent + 1)``, at the last
moment it can: just before the block's first transaction runs (so ``block.timestamp`` inside
the contract is the header's time), or when the block is mined empty. A time set on purpose
(py-evm's :meth:`~TesterChain.set_header_timestamp`, eth-tester's ``time_travel``) is kept.

*Now* is read where py-evm reads it for every header it makes (``eth._utils.headers.eth_now``),
so one clock stamps every block and a test fakes it in one place.

Both embedded chains use these: :func:`memory_tester` (``LedgerChain.embedded()``) and the
stored chain (:mod:`ledger_node.chain.embedded_store`), whose backend subclasses
:class:`TesterBackend`.
"""

from __future__ import annotations

from typing import Any, Final, cast

from eth._utils import headers as evm_headers
from eth.abc import (
    BlockAndMetaWitness,
    BlockAPI,
    BlockHeaderAPI,
    ComputationAPI,
    ReceiptAPI,
    SignedTransactionAPI,
)
from eth.chains.base import MiningChain
from eth.constants import BLANK_ROOT_HASH
from eth.db.atomic import AtomicDB
from eth.vm.forks.prague import PragueVM
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm.main import (
    generate_genesis_state_for_keys,
    get_default_account_keys,
    get_default_genesis_params,
)
from eth_typing import BlockNumber

__all__ = [
    "TESTER_CHAIN_ID",
    "TesterBackend",
    "TesterChain",
    "memory_tester",
    "wall_clock",
]

TESTER_CHAIN_ID: Final = 131277322940537
"""eth-tester's chain id (its ``MainnetTesterPosChain``), kept so tools see the same chain."""


def wall_clock() -> int:
    """Now, in whole Unix seconds, read where py-evm reads it for a new header."""
    return int(evm_headers.eth_now())


class TesterChain(MiningChain):
    """eth-tester's ``MainnetTesterPosChain``, whose blocks carry the time they are made.

    Same chain id, a Prague VM from genesis and a constant gas limit (as eth-tester's); py-evm
    reads the canonical head from the database it is given, so the class also reopens a
    stored chain. Each block is stamped ``max(now, parent + 1)`` with *now* read when its
    first transaction arrives or when it is mined empty (module docstring), unless its time
    was set on purpose with :meth:`set_header_timestamp`.
    """

    chain_id = TESTER_CHAIN_ID
    vm_configuration = ((BlockNumber(0), PragueVM),)
    _timestamp_pinned: bool = False
    """Whether the pending header's time was set on purpose (kept until it is mined)."""

    def create_header_from_parent(
        self, parent_header: BlockHeaderAPI, **header_params: Any
    ) -> BlockHeaderAPI:
        """The next header, keeping the parent's gas limit (as eth-tester does)."""
        return super().create_header_from_parent(
            parent_header, **{**header_params, "gas_limit": parent_header.gas_limit}
        )

    def get_transaction_builder(self) -> Any:
        """The transaction builder of the VM of the pending block (as eth-tester does)."""
        return super().get_vm().get_transaction_builder()

    def set_header_timestamp(self, timestamp: int) -> None:
        """Mine the pending block at ``timestamp``, whatever the clock says (a test's jump)."""
        super().set_header_timestamp(timestamp)
        self._timestamp_pinned = True

    def apply_transaction(
        self, transaction: SignedTransactionAPI
    ) -> tuple[BlockAPI, ReceiptAPI, ComputationAPI]:
        """Run ``transaction`` in the pending block, stamped first if it is the block's first."""
        self._stamp_pending_block()
        return super().apply_transaction(transaction)

    def mine_block_extended(self, *args: Any, **kwargs: Any) -> BlockAndMetaWitness:
        """Mine the pending block (stamped now if it holds nothing), start the next one."""
        self._stamp_pending_block()
        try:
            return super().mine_block_extended(*args, **kwargs)
        finally:
            self._timestamp_pinned = False

    def mine_all(
        self,
        transactions: Any,
        *args: Any,
        parent_header: BlockHeaderAPI | None = None,
        **kwargs: Any,
    ) -> Any:
        """Mine ``transactions`` in one block (eth-tester: withdrawals), stamped now."""
        if parent_header is None:
            self._stamp_pending_block()
        try:
            return super().mine_all(transactions, *args, parent_header=parent_header, **kwargs)
        finally:
            self._timestamp_pinned = False

    def import_block(self, block: Any, perform_validation: bool = True) -> Any:
        """Import ``block``; the next pending header is py-evm's new one, not pinned."""
        try:
            return super().import_block(block, perform_validation)
        finally:
            self._timestamp_pinned = False

    def _stamp_pending_block(self) -> None:
        """Stamp the pending header ``max(now, parent + 1)`` if it holds no transaction yet
        and its time was not set on purpose. A block already holding transactions keeps its
        time: they ran with it as ``block.timestamp``."""
        header = self.header
        if self._timestamp_pinned or header.transaction_root != BLANK_ROOT_HASH:
            return
        parent = self.get_block_header_by_hash(header.parent_hash)
        timestamp = max(wall_clock(), parent.timestamp + 1)
        if timestamp != header.timestamp:
            self.header = header.copy(timestamp=timestamp)


class TesterBackend(PyEVMBackend):  # type: ignore[misc]
    """eth-tester's py-evm backend over a given :class:`TesterChain`.

    Everything but the chain it is built on and ``time_travel`` is eth-tester's own code.
    """

    def __init__(self, chain: TesterChain) -> None:
        """Serve ``chain`` with eth-tester's ten funded development keys."""
        # PyEVMBackend.__init__ would build its own chain: set the fields instead.
        self.account_keys = get_default_account_keys()
        self.chain = chain

    def time_travel(self, to_timestamp: int) -> int:
        """Mine an empty block at ``to_timestamp`` (eth-tester's, which mines at
        ``to_timestamp - 1`` and would be overridden by the clock); return it."""
        self.chain.set_header_timestamp(to_timestamp)
        self.mine_blocks()
        return to_timestamp

    def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
        """A fresh in-memory :class:`TesterChain` at eth-tester's genesis (no arguments:
        eth-tester's would build its own chain class, without the clock rule)."""
        if args or any(v is not None for v in kwargs.values()):
            raise TypeError("the embedded chain resets to eth-tester's default genesis only")
        self.chain = _memory_chain()


def _memory_chain() -> TesterChain:
    """A new in-memory chain with eth-tester's genesis and funded development keys."""
    genesis_state = generate_genesis_state_for_keys(get_default_account_keys())
    chain = TesterChain.from_genesis(AtomicDB(), get_default_genesis_params(), genesis_state)
    return cast(TesterChain, chain)  # py-evm types from_genesis as returning any BaseChain


def memory_tester() -> EthereumTester:
    """An eth-tester over a fresh in-memory :class:`TesterChain` (eth-tester's genesis)."""
    return EthereumTester(TesterBackend(_memory_chain()))
