"""Standard Ethereum JSON-RPC over HTTP for the embedded (eth-tester / py-evm) chain.

:class:`ChainServer` serves one in-process chain on 127.0.0.1 so that every member's node,
the regulator, auditors, the offline verifier and ordinary Ethereum tools (``curl``, web3,
ethers, cast) reach one and the same chain with ``--rpc-url``, exactly as they would reach a
Besu node. The wire format is the one geth and anvil speak: quantities and data as 0x-hex,
blocks, transactions, receipts and logs with the standard camelCase field names, reverts as
error ``3`` / ``"execution reverted"`` carrying the raw revert data.

Only an allow-list is served: read methods, ``eth_call``, ``eth_estimateGas``,
``eth_getLogs``, the filter methods (``eth_newFilter`` ... ``eth_uninstallFilter``) and
``eth_sendRawTransaction`` (transactions signed by the caller's own key). Everything that
would let a caller act as someone else (the tester's unlocked accounts,
``eth_sendTransaction``, ``eth_sign*``, ``personal_*``) or rewrite the chain (``evm_*``,
``testing_*``, ``debug_*``, ...) is answered as geth answers a method it does not have
(``-32601``, "the method ... does not exist/is not available"), with the reason in ``data``.

The chain is not thread-safe: every call into it holds :attr:`ChainServer.lock`, which is the
lock the embedded :class:`~ledger_node.chain.adapter.LedgerChain`'s provider holds around each
of its own requests, so in-process users of the same chain are serialised with the server.
No client holds it for long (:class:`RpcLimits`, docs/chain-server.md): ``eth_call`` and
``eth_estimateGas`` run under a gas cap and a wall-clock limit that is checked inside the
EVM (at every jump, every message call and inside precompiles), and hand the lock to whoever
waits for it every few milliseconds of execution; ``eth_getLogs`` is bounded in blocks,
addresses and topics and takes the lock per chunk of blocks; a raw transaction is tried on
a copy of the state within ``tx_timeout`` before it is mined; a request body is read exactly
to its ``Content-Length`` within a read timeout.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import json
import logging
import secrets
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Final

from eth.exceptions import HeaderNotFound, Revert, VMError
from eth.exceptions import TransactionNotFound as EvmTransactionNotFound
from eth.vm import opcode_values
from eth.vm.spoof import SpoofTransaction
from eth_bloom.bloom import BloomFilter, get_bloom_bits
from eth_tester import EthereumTester
from eth_tester.backends.pyevm.serializers import (
    serialize_transaction,
    serialize_transaction_receipt,
)
from eth_tester.exceptions import (
    BlockNotFound,
    TransactionFailed,
)
from eth_tester.exceptions import (
    ValidationError as TesterValidationError,
)
from eth_utils.exceptions import ValidationError as EvmValidationError

from ledger_node.chain.adapter import LedgerChain
from ledger_node.jsonlimits import JsonTextRefused, parse_json

__all__ = [
    "DEFAULT_CHAIN_URL",
    "DEFAULT_PORT",
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "ChainRpc",
    "ChainServer",
    "RpcLimits",
]

_log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 8545
"""The conventional Ethereum JSON-RPC port."""
DEFAULT_CHAIN_URL: Final = f"http://127.0.0.1:{DEFAULT_PORT}"
"""Where ``jointledger chain`` serves the embedded chain by default, and nodes look for it."""

MAX_BODY_BYTES: Final = 5 * 1024 * 1024
"""Largest request body accepted (geth's limit); larger ones get HTTP 413."""

MAX_BATCH: Final = 1000
"""Most calls accepted in one JSON-RPC batch (geth's default ``BatchRequestLimit``)."""

MAX_FEE_HISTORY_BLOCKS: Final = 1024
"""Most blocks one ``eth_feeHistory`` covers (geth's ``maxBlockCount``)."""
MAX_FEE_HISTORY_PERCENTILES: Final = 100
"""Most reward percentiles one ``eth_feeHistory`` asks for (geth's ``maxQueryLimit``)."""

# JSON-RPC 2.0 and Ethereum error codes.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
SERVER_ERROR: Final = -32000  # geth: nonce too low, unknown block, filter not found, ...
REQUEST_TIMED_OUT: Final = -32002  # geth: a batch's calls left when its time ran out
LIMIT_EXCEEDED: Final = -32005  # Besu: range / filter limits
EXECUTION_REVERTED: Final = 3  # geth / anvil: revert with data

_PRIORITY_FEE_WEI: Final = 10**9  # what eth-tester's provider suggests, and the chain accepts
_BLOCK_TAGS: Final = frozenset({"latest", "earliest", "pending", "safe", "finalized"})
_LOOPBACK_NAMES: Final = frozenset({"localhost"})
_IDLE_TIMEOUT_S: Final = 60.0
_SELF_LOCKING: Final = frozenset({
    "eth_getLogs", "eth_getFilterChanges", "eth_getFilterLogs", "eth_uninstallFilter",
    "eth_feeHistory",
})
"""Methods that take the chain lock themselves (per chunk of blocks scanned), or need none."""
_LOG_BLOCKS_PER_LOCK: Final = 256  # blocks scanned per hold of the lock by a log scan
_FEE_BLOCKS_PER_LOCK: Final = 64  # blocks read per hold of the lock by eth_feeHistory
_BLOOM_CACHE_SIZE: Final = 1_000_000  # blocks; a bloom is a small int for most blocks
_MAX_TOPIC_POSITIONS: Final = 4  # LOG0..LOG4: a log has at most four topics (geth maxTopics)
_EVM_SLICE_S: Final = 0.02
"""Longest run of one eth_call / eth_estimateGas between two hand-offs of the chain lock."""
_HANDOFF_S: Final = 0.0005
"""How long a long-running call lets go of the chain lock at each hand-off, so that a thread
waiting for it (another client, block production) is scheduled and takes it."""
IN_PROCESS_CLIENT: Final = "in-process"
"""The client name of calls made through :meth:`ChainRpc.handle` without one."""


@dataclass(frozen=True)
class RpcLimits:
    """Every limit the chain server keeps, each with geth's or Besu's default
    (docs/chain-server.md, "Limits"). Raises ``ValueError`` for a value that is not positive.
    """

    max_body_bytes: int = MAX_BODY_BYTES
    """Largest request body (geth: 5 MiB); a larger one gets HTTP 413."""
    max_batch: int = MAX_BATCH
    """Most calls in one batch (geth ``--rpc.batch-request-limit``, 1,000)."""
    read_timeout: float = 30.0
    """Seconds a request body may take to arrive in full (geth's HTTP ``ReadTimeout``);
    then HTTP 408 and the connection is closed."""
    header_timeout: float = 10.0
    """Seconds a request's head (request line and headers) may take to arrive once its first
    byte has (geth's ``ReadHeaderTimeout``); then the connection is shut down."""
    max_connections: int = 256
    """Most connections served at once (one thread each); one more is answered HTTP 503 and
    closed."""
    request_timeout: float = 30.0
    """Seconds one HTTP request may run (geth's ``WriteTimeout``): a batch's calls not
    started by then are answered ``-32002 request timed out``."""
    gas_cap: int = 50_000_000
    """Most gas one ``eth_call`` / ``eth_estimateGas`` may use (geth ``--rpc.gascap``);
    a larger ``gas`` is lowered to it, as geth does."""
    evm_timeout: float = 5.0
    """Seconds of wall clock one ``eth_call`` / ``eth_estimateGas`` may run (geth
    ``--rpc.evmtimeout``), enforced inside the EVM; then ``execution aborted``."""
    tx_timeout: float = 1.0
    """Seconds a transaction sent with ``eth_sendRawTransaction`` may take to execute: it is
    tried on a copy of the pending block's state first and refused if it runs longer, since
    mining it holds the chain with nothing to hand it off (no geth equivalent: geth's EVM
    is fast enough that the block gas limit bounds a block's time)."""
    max_logs_range: int = 1000
    """Widest ``eth_getLogs`` range: ``toBlock - fromBlock`` may not exceed it (Besu
    ``--rpc-max-logs-range``)."""
    max_log_addresses: int = 1000
    """Most addresses in one log filter (geth's ``maxAddresses``)."""
    max_log_topics: int = 1000
    """Most alternatives in one topic position of a log filter (geth's ``maxSubTopics``);
    a filter has at most four positions whatever this is."""
    max_filters: int = 256
    """Most filters (``eth_newFilter`` ...) one client address keeps at once."""
    filter_timeout: float = 300.0
    """Seconds a filter lives without being polled (geth: 5 minutes)."""
    methods: frozenset[str] | None = None
    """The methods served: ``None`` for the whole allow-list, or a subset of it."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name != "methods" and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"RpcLimits.{name} must be positive, got {value!r}")
        if self.methods is not None:
            object.__setattr__(self, "methods", frozenset(self.methods))


@dataclass(frozen=True)
class _CallRequest:
    """The parts of an eth_call / eth_estimateGas transaction object that execution uses."""

    sender: bytes
    to: bytes  # b"" for a contract creation
    gas: int | None
    value: int
    data: bytes
    nonce: int | None  # validated, then ignored: a call always runs at the next nonce


class _RpcError(Exception):
    """A JSON-RPC error object to send back: ``code``, ``message`` and optional ``data``."""

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


# ---------------------------------------------------------------------- refusals

_IMPERSONATION_REASON: Final = (
    "this server holds no keys and never signs or sends for a caller: sign the transaction "
    "with your own key and use eth_sendRawTransaction"
)
_REFUSED_METHODS: Final = {
    "eth_sendTransaction": _IMPERSONATION_REASON,
    "eth_sign": _IMPERSONATION_REASON,
    "eth_signTransaction": _IMPERSONATION_REASON,
    "eth_signTypedData": _IMPERSONATION_REASON,
    "eth_signTypedData_v3": _IMPERSONATION_REASON,
    "eth_signTypedData_v4": _IMPERSONATION_REASON,
}
_REFUSED_PREFIXES: Final = {
    "personal_": "personal_* would unlock or use keys held by the server",
    "evm_": "evm_* would mine, snapshot or rewind the shared chain",
    "testing_": "testing_* would move the shared chain's clock",
    "debug_": "debug_* is not part of the public API of this chain",
    "admin_": "admin_* is not part of the public API of this chain",
    "miner_": "miner_* would control block production",
    "txpool_": "txpool_* is not part of the public API of this chain",
    "anvil_": "anvil_* would rewrite the shared chain",
    "hardhat_": "hardhat_* would rewrite the shared chain",
}


def _refusal(method: str) -> _RpcError:
    """The error for a method outside the allow-list: geth's words, which clients recognise
    (ethers falls back to polling on them), with the reason it is refused as ``data``."""
    reason: str | None = _REFUSED_METHODS.get(method)
    if reason is None:
        reason = next(
            (why for prefix, why in _REFUSED_PREFIXES.items() if method.startswith(prefix)), None
        )
    return _RpcError(
        METHOD_NOT_FOUND, f"the method {method} does not exist/is not available", reason
    )


# ---------------------------------------------------------------------- bounded EVM execution


class _ExecutionTimeout(Exception):
    """Raised inside the EVM when a call's wall-clock budget is spent. Not a ``VMError``:
    py-evm must not turn it into an ordinary failed computation, it ends the whole call."""


class _Budget:
    """The wall-clock budget of one ``eth_call`` / ``eth_estimateGas``, checked inside py-evm.

    :meth:`check` runs at every ``JUMP`` / ``JUMPI`` (only a jump can repeat code), at the
    start of every message call and contract creation, and (through :meth:`trace`) at every
    Python function call inside a precompile, whose pure-Python cryptography (pairings,
    BLS12-381, BLAKE2 rounds) can run for minutes on one call. Between two checks py-evm runs
    at most one straight stretch of code (≤ 49,152 bytes of init code), a few milliseconds.

    Every :data:`_EVM_SLICE_S` of execution it also hands the chain lock to whoever waits for
    it (other clients, block production) and takes it back: the call runs on its own
    state object over content-addressed trie nodes, which nothing else changes, so it may
    let go of the chain between two opcodes.
    """

    __slots__ = ("_deadline", "_lock", "_message", "_next", "handoffs")

    def __init__(self, deadline: float, message: str,
                 lock: AbstractContextManager[Any] | None) -> None:
        self._deadline = deadline
        self._message = message
        self._lock = lock
        self._next = min(deadline, time.monotonic() + _EVM_SLICE_S)
        self.handoffs = 0

    def check(self) -> None:
        """Raise :class:`_ExecutionTimeout` past the deadline; hand the lock off when due."""
        if time.monotonic() >= self._next:
            self._due()

    def _due(self) -> None:
        if time.monotonic() >= self._deadline:
            raise _ExecutionTimeout(self._message)
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            try:
                time.sleep(_HANDOFF_S)
            finally:
                self._lock.__enter__()
            self.handoffs += 1
        self._next = min(self._deadline, time.monotonic() + _EVM_SLICE_S)

    def trace(self, frame: FrameType, event: str, arg: Any) -> None:
        """A ``sys.settrace`` function: check at each Python call (no line tracing)."""
        self.check()


class _CheckedOpcode:
    """A py-evm opcode that checks the running call's budget before it executes."""

    __slots__ = ("_inner", "gas_cost", "mnemonic")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.mnemonic = getattr(inner, "mnemonic", "?")
        self.gas_cost = getattr(inner, "gas_cost", 0)

    def __call__(self, computation: Any) -> Any:
        computation.state.budget.check()
        return self._inner(computation=computation)


def _checked_precompile(precompile: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``precompile`` run under the budget's trace function (restoring any tracer, such as
    coverage's, afterwards)."""

    @functools.wraps(precompile)
    def run(computation: Any) -> Any:
        budget: _Budget = computation.state.budget
        budget.check()
        previous = sys.gettrace()
        sys.settrace(budget.trace)
        try:
            return precompile(computation)
        finally:
            sys.settrace(previous)

    return run


_JUMPS: Final = (opcode_values.JUMP, opcode_values.JUMPI)


@functools.cache
def _bounded_computation_class(base: type[Any]) -> type[Any]:
    """``base`` (a fork's computation class) with budget checks at jumps, messages and
    precompiles; block production keeps using ``base`` itself, unchanged."""
    opcodes = dict(base.opcodes)
    for code in _JUMPS:
        opcodes[code] = _CheckedOpcode(opcodes[code])
    precompiles = {address: _checked_precompile(fn)
                   for address, fn in base.get_precompiles().items()}
    apply = base.apply_computation.__func__  # the classmethod's function, to bind to ours

    def apply_computation(cls: type[Any], state: Any, message: Any, transaction_context: Any,
                          parent_computation: Any = None) -> Any:
        state.budget.check()
        return apply(cls, state, message, transaction_context,
                     parent_computation=parent_computation)

    return type(f"Bounded{base.__name__}", (base,), {
        "opcodes": opcodes,
        "_precompiles": precompiles,
        "apply_computation": classmethod(apply_computation),
    })


@functools.cache
def _bounded_state_class(base: type[Any]) -> type[Any]:
    """``base`` (a fork's state class) running the bounded computation class; each instance
    carries the ``budget`` of the call it runs."""
    return type(f"Bounded{base.__name__}", (base,), {
        "computation_class": _bounded_computation_class(base.computation_class),
        "budget": None,
    })


# ---------------------------------------------------------------------- parameter parsing


def _invalid(what: str, value: Any, expected: str) -> _RpcError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return _RpcError(INVALID_PARAMS, f"invalid {what}: expected {expected}, got {shown}")


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _quantity(value: Any, what: str) -> int:
    """A 0x-hex quantity (at most 256 bits) as an int; raise -32602 otherwise."""
    if (
        not isinstance(value, str)
        or value[:2] not in ("0x", "0X")
        or not 2 < len(value) <= 66
        or not _is_hex(value[2:])
    ):
        raise _invalid(what, value, "a 0x-prefixed hex quantity")
    return int(value, 16)


def _data(value: Any, what: str, size: int | None = None) -> str:
    """0x-hex data (``size`` bytes if given), lower-cased; raise -32602 otherwise."""
    expected = f"{size} bytes of 0x-prefixed hex" if size else "0x-prefixed hex data"
    if (
        not isinstance(value, str)
        or value[:2] not in ("0x", "0X")
        or len(value) % 2
        or not _is_hex(value[2:])
        or (size is not None and len(value) != 2 + 2 * size)
    ):
        raise _invalid(what, value, expected)
    return "0x" + value[2:].lower()


def _address(value: Any, what: str) -> str:
    """A 20-byte address in lower-case hex (eth-tester accepts it without a checksum)."""
    return _data(value, what, 20)


def _hash32(value: Any, what: str) -> str:
    return _data(value, what, 32)


def _boolean(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(what, value, "true or false")
    return value


def _params(params: Sequence[Any], required: int, optional: int, method: str) -> list[Any]:
    """``params`` padded with ``None`` to ``required + optional`` after checking the count."""
    if not required <= len(params) <= required + optional:
        expected = str(required) if not optional else f"{required} to {required + optional}"
        raise _RpcError(
            INVALID_PARAMS,
            f"{method} takes {expected} parameters, got {len(params)}",
        )
    return list(params) + [None] * (required + optional - len(params))


# ---------------------------------------------------------------------- result encoding

_CAMEL: Final = {
    "access_list": "accessList",
    "authorization_list": "authorizationList",
    "base_fee_per_gas": "baseFeePerGas",
    "blob_gas_price": "blobGasPrice",
    "blob_gas_used": "blobGasUsed",
    "blob_versioned_hashes": "blobVersionedHashes",
    "block_hash": "blockHash",
    "block_number": "blockNumber",
    "chain_id": "chainId",
    "coinbase": "miner",
    "contract_address": "contractAddress",
    "cumulative_gas_used": "cumulativeGasUsed",
    "effective_gas_price": "effectiveGasPrice",
    "excess_blob_gas": "excessBlobGas",
    "extra_data": "extraData",
    "gas_limit": "gasLimit",
    "gas_price": "gasPrice",
    "gas_used": "gasUsed",
    "log_index": "logIndex",
    "logs_bloom": "logsBloom",
    "max_fee_per_blob_gas": "maxFeePerBlobGas",
    "max_fee_per_gas": "maxFeePerGas",
    "max_priority_fee_per_gas": "maxPriorityFeePerGas",
    "mix_hash": "mixHash",
    "parent_beacon_block_root": "parentBeaconBlockRoot",
    "parent_hash": "parentHash",
    "receipts_root": "receiptsRoot",
    "requests_hash": "requestsHash",
    "sha3_uncles": "sha3Uncles",
    "state_root": "stateRoot",
    "storage_keys": "storageKeys",
    "total_difficulty": "totalDifficulty",
    "transaction_hash": "transactionHash",
    "transaction_index": "transactionIndex",
    "transactions_root": "transactionsRoot",
    "validator_index": "validatorIndex",
    "withdrawals_root": "withdrawalsRoot",
    "y_parity": "yParity",
}


def _wire(value: Any) -> Any:
    """An eth-tester output value in wire form: ints as quantities, hex lower-cased."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else value
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, Mapping):
        return {_CAMEL.get(k, k): _wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} for JSON-RPC")


def _bloom_hex(bloom: int) -> str:
    return "0x" + bloom.to_bytes(256, "big").hex()


def _encode_transaction(tx: Mapping[str, Any]) -> dict[str, Any]:
    """A transaction object as geth / anvil send it (``input``, ``to`` null for creations)."""
    out: dict[str, Any] = {}
    for key, value in tx.items():
        if key == "data":
            out["input"] = _wire(value)
        elif key == "to":
            out["to"] = _wire(value) if value else None
        else:
            out[_CAMEL.get(key, key)] = _wire(value)
    if "yParity" in out and out.get("type") not in (None, "0x0"):
        out["v"] = out["yParity"]  # typed transactions: geth sends both, equal
    return out


def _encode_log(log: Mapping[str, Any]) -> dict[str, Any]:
    """A log object; eth-tester's ``type: mined`` becomes the standard ``removed: false``."""
    out = {_CAMEL.get(k, k): _wire(v) for k, v in log.items() if k != "type"}
    out["removed"] = False
    return out


def _encode_receipt(receipt: Mapping[str, Any]) -> dict[str, Any]:
    """A receipt with the standard fields, including the ``logsBloom`` eth-tester omits."""
    out: dict[str, Any] = {}
    bloom = BloomFilter()
    for key, value in receipt.items():
        if key == "state_root":  # post-Byzantium receipts carry status, not a state root
            continue
        if key == "logs":
            out["logs"] = [_encode_log(log) for log in value]
            for log in value:
                bloom.add(bytes.fromhex(str(log["address"])[2:]))
                for topic in log["topics"]:
                    bloom.add(bytes.fromhex(str(topic)[2:]))
        elif key == "to":
            out["to"] = _wire(value) if value else None
        else:
            out[_CAMEL.get(key, key)] = _wire(value)
    out["logsBloom"] = _bloom_hex(int(bloom))
    return out


def _encode_block(block: Mapping[str, Any]) -> dict[str, Any]:
    """A block object; full transactions are encoded like ``eth_getTransactionByHash``."""
    out: dict[str, Any] = {}
    for key, value in block.items():
        if key == "logs_bloom":
            out["logsBloom"] = _bloom_hex(int(value))
        elif key == "transactions":
            out["transactions"] = [
                _encode_transaction(tx) if isinstance(tx, Mapping) else _wire(tx) for tx in value
            ]
        else:
            out[_CAMEL.get(key, key)] = _wire(value)
    return out


# ---------------------------------------------------------------------- dispatcher


def _check_py_evm(tester: EthereumTester) -> None:
    """Refuse an eth-tester chain on any backend but py-evm (the server reads its chain)."""
    if getattr(tester.backend, "chain", None) is None:
        raise TypeError("ChainServer serves an in-process eth-tester chain over a py-evm "
                        f"backend, not {type(tester.backend).__name__}")


class ChainRpc:
    """The transport-free JSON-RPC 2.0 dispatcher over one :class:`EthereumTester`.

    :meth:`handle` takes a request body and returns the response body (``None`` when the
    request held only notifications). Every call into the chain holds ``lock``; ``limits``
    bound what one call may cost (:class:`RpcLimits`). Raises ``ValueError`` if
    ``limits.methods`` names a method that is not served.
    """

    def __init__(self, tester: EthereumTester, chain_id: int,
                 lock: AbstractContextManager[Any], limits: RpcLimits | None = None) -> None:
        self._tester = tester
        self._chain: Any = tester.backend.chain  # py-evm Chain: calls and estimates
        self._chain_id = chain_id
        self._lock = lock
        self._limits = limits if limits is not None else RpcLimits()
        self._blooms: dict[bytes, int] = {}
        self._filters = _FilterStore(self._limits.max_filters, self._limits.filter_timeout)
        self._context = threading.local()  # the client and deadline of the running request
        self._client_version = f"JointLedger/embedded-chain/eth-tester/py-evm/python{_py()}"
        self._disabled: frozenset[str] = frozenset()
        self._methods: dict[str, Callable[[Sequence[Any]], Any]] = {
            "web3_clientVersion": self._client_version_method,
            "net_version": self._net_version,
            "net_listening": self._net_listening,
            "eth_chainId": self._eth_chain_id,
            "eth_accounts": self._eth_accounts,
            "eth_blockNumber": self._eth_block_number,
            "eth_syncing": self._eth_syncing,
            "eth_gasPrice": self._eth_gas_price,
            "eth_maxPriorityFeePerGas": self._eth_max_priority_fee,
            "eth_feeHistory": self._eth_fee_history,
            "eth_getBalance": self._eth_get_balance,
            "eth_getCode": self._eth_get_code,
            "eth_getStorageAt": self._eth_get_storage_at,
            "eth_getTransactionCount": self._eth_get_transaction_count,
            "eth_getBlockByNumber": self._eth_get_block_by_number,
            "eth_getBlockByHash": self._eth_get_block_by_hash,
            "eth_getTransactionByHash": self._eth_get_transaction_by_hash,
            "eth_getTransactionReceipt": self._eth_get_transaction_receipt,
            "eth_call": self._eth_call,
            "eth_estimateGas": self._eth_estimate_gas,
            "eth_getLogs": self._eth_get_logs,
            "eth_newFilter": self._eth_new_filter,
            "eth_newBlockFilter": self._eth_new_block_filter,
            "eth_newPendingTransactionFilter": self._eth_new_pending_transaction_filter,
            "eth_getFilterChanges": self._eth_get_filter_changes,
            "eth_getFilterLogs": self._eth_get_filter_logs,
            "eth_uninstallFilter": self._eth_uninstall_filter,
            "eth_sendRawTransaction": self._eth_send_raw_transaction,
        }
        enabled = self._limits.methods
        if enabled is not None:
            unknown = sorted(enabled - set(self._methods))
            if unknown:
                raise ValueError(
                    f"RpcLimits.methods names methods this server does not have: "
                    f"{', '.join(unknown)} (served: {', '.join(sorted(self._methods))})"
                )
            self._disabled = frozenset(self._methods) - enabled
            self._methods = {name: fn for name, fn in self._methods.items() if name in enabled}

    @property
    def methods(self) -> frozenset[str]:
        """The names of the served (allow-listed) methods."""
        return frozenset(self._methods)

    @property
    def limits(self) -> RpcLimits:
        """The limits every call is held to."""
        return self._limits

    # ------------------------------------------------------------------ envelope

    @contextmanager
    def peer(self, address: str) -> Iterator[None]:
        """Within this block, requests :meth:`handle` answers in this thread come from the
        client ``address`` (the HTTP front end says so around each request, and keeps
        calling ``handle(body)`` itself, which tests tap)."""
        previous = getattr(self._context, "peer", None)
        self._context.peer = address
        try:
            yield
        finally:
            self._context.peer = previous

    def handle(self, body: bytes, client: str | None = None) -> bytes | None:
        """Answer one HTTP request body (a call or a batch); ``None`` for notifications only.

        ``client`` names the caller (its address) for the per-client filter bound; by default
        the one :meth:`peer` names, else :data:`IN_PROCESS_CLIENT`. Never
        raises for bad input: malformed JSON is -32700, a malformed call -32600, an empty or
        oversized batch one -32600 error object. The calls of a batch not started within
        ``request_timeout`` are answered -32002.
        """
        deadline = time.monotonic() + self._limits.request_timeout
        if client is None:
            client = getattr(self._context, "peer", None) or IN_PROCESS_CLIENT
        try:
            request = parse_json(body)  # UTF-8 only, nesting checked, then parsed as text
        except JsonTextRefused as refused:
            error = _RpcError(PARSE_ERROR, f"parse error: {refused.reason}")
            return _dump(_error_response(None, error))
        except (ValueError, RecursionError) as exc:
            return _dump(_error_response(None, _RpcError(PARSE_ERROR, f"parse error: {exc}")))
        if isinstance(request, list):
            if not request:
                return _dump(_error_response(None, _RpcError(INVALID_REQUEST, "empty batch")))
            limit = self._limits.max_batch
            if len(request) > limit:
                error = _RpcError(
                    INVALID_REQUEST, f"batch of {len(request)} calls exceeds {limit}"
                )
                return _dump(_error_response(None, error))
            answers = [a for a in (self.handle_call(item, client, deadline) for item in request)
                       if a is not None]
            return _dump(answers) if answers else None
        answer = self.handle_call(request, client, deadline)
        return None if answer is None else _dump(answer)

    def handle_call(self, request: Any, client: str = IN_PROCESS_CLIENT,
                    deadline: float | None = None) -> dict[str, Any] | None:
        """Answer one decoded call object; ``None`` for a well-formed notification.

        A call that has not started by ``deadline`` (monotonic seconds) is answered
        -32002 "request timed out", as geth answers the rest of a batch that ran too long.
        """
        if not isinstance(request, dict):
            return _error_response(None, _RpcError(INVALID_REQUEST, "a call must be an object"))
        has_id = "id" in request
        call_id = request.get("id")
        valid_id = call_id is None or isinstance(call_id, str | int | float)
        if not valid_id or isinstance(call_id, bool):
            return _error_response(
                None, _RpcError(INVALID_REQUEST, "id must be a string, a number or null")
            )
        if request.get("jsonrpc") != "2.0":
            return _error_response(call_id, _RpcError(INVALID_REQUEST, 'jsonrpc must be "2.0"'))
        method = request.get("method")
        if not isinstance(method, str) or not method:
            return _error_response(
                call_id, _RpcError(INVALID_REQUEST, "method must be a non-empty string")
            )
        params = request.get("params", [])
        try:
            if deadline is not None and time.monotonic() >= deadline:
                raise _RpcError(REQUEST_TIMED_OUT, "request timed out")
            if params is None:
                params = []
            if not isinstance(params, list):
                raise _RpcError(INVALID_PARAMS, "params must be an array")
            result = self.call(method, params, client=client, deadline=deadline)
        except _RpcError as error:
            return _error_response(call_id, error) if has_id else None
        if not has_id:
            return None
        return {"jsonrpc": "2.0", "id": call_id, "result": result}

    def call(self, method: str, params: Sequence[Any], *, client: str = IN_PROCESS_CLIENT,
             deadline: float | None = None) -> Any:
        """Run one allow-listed method; raise :class:`_RpcError` for any failure.

        ``client`` names the caller for the per-client filter bound; an ``eth_call`` /
        ``eth_estimateGas`` stops at ``deadline`` (monotonic seconds) if that comes before
        its own ``evm_timeout``.
        """
        handler = self._methods.get(method)
        if handler is None:
            refusal = _refusal(method)
            if method in self._disabled:
                refusal.data = "not enabled on this server (RpcLimits.methods)"
            raise refusal
        context = self._context
        context.client, context.deadline = client, deadline
        try:
            if method in _SELF_LOCKING:
                return handler(params)
            with self._lock:
                return handler(params)
        except _RpcError:
            raise
        except (TesterValidationError, EvmValidationError) as exc:
            raise _RpcError(INVALID_PARAMS, f"invalid params: {exc}") from exc
        except BlockNotFound as exc:
            raise _RpcError(SERVER_ERROR, f"header not found: {exc}") from exc
        except Exception as exc:  # a bug or an eth-tester surprise: report, keep serving
            _log.exception("JSON-RPC %s failed", method)
            raise _RpcError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}") from exc
        finally:
            context.client, context.deadline = IN_PROCESS_CLIENT, None

    # ------------------------------------------------------------------ helpers

    def _latest_number(self) -> int:
        # py-evm's canonical head, without building the whole block (360 us -> 1 us)
        return int(self._chain.get_canonical_head().block_number)

    def _block_id(self, value: Any, what: str = "block", default: str = "latest") -> int | str:
        """A block tag, quantity or EIP-1898 object as eth-tester's block identifier."""
        if value is None:
            return default
        if isinstance(value, str) and value in _BLOCK_TAGS:
            return value
        if isinstance(value, dict):
            if "blockHash" in value:
                block_hash = _hash32(value["blockHash"], f"{what}.blockHash")
                try:
                    return int(self._tester.get_block_by_hash(block_hash)["number"])
                except BlockNotFound:
                    raise _RpcError(
                        SERVER_ERROR, f"header for hash {block_hash} not found"
                    ) from None
            if "blockNumber" in value:
                return self._block_id(value["blockNumber"], f"{what}.blockNumber")
            raise _invalid(what, value, "an object with blockHash or blockNumber")
        if isinstance(value, str) and value[:2] in ("0x", "0X"):
            return _quantity(value, what)
        raise _invalid(what, value, "a block number or one of " + "/".join(sorted(_BLOCK_TAGS)))

    def _state_block(self, value: Any) -> int | str:
        """A block id for state reads; ``pending`` is ``latest`` (eth-tester mines at once)."""
        block = self._block_id(value)
        if block == "pending":
            return "latest"
        if isinstance(block, int) and block > self._latest_number():
            raise _RpcError(SERVER_ERROR, f"header not found: block {block} is in the future")
        return block

    def _call_request(self, value: Any, what: str) -> _CallRequest:
        """A call / estimate transaction object, validated field by field."""
        if not isinstance(value, dict):
            raise _invalid(what, value, "a transaction object")
        sender = _address(value["from"], f"{what}.from") if value.get("from") else None
        to = _address(value["to"], f"{what}.to") if value.get("to") is not None else None
        numbers: dict[str, int | None] = {}
        for key in ("gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value", "nonce"):
            item = value.get(key)
            numbers[key] = None if item is None else _quantity(item, f"{what}.{key}")
        if numbers["gasPrice"] is not None and (
            numbers["maxFeePerGas"] is not None or numbers["maxPriorityFeePerGas"] is not None
        ):
            raise _RpcError(
                INVALID_PARAMS,
                "both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified",
            )
        data = value.get("data")
        code = value.get("input")
        if data is not None and code is not None and _data(data, "data") != _data(code, "input"):
            raise _RpcError(INVALID_PARAMS, 'both "data" and "input" are set and not equal')
        payload = code if code is not None else data
        # Other fields (chainId, type, accessList, blob fields, unknown keys) are ignored,
        # as geth ignores unknown fields; calls run costless, so fee fields only get checked.
        return _CallRequest(
            sender=bytes.fromhex(sender[2:]) if sender else bytes(20),
            to=bytes.fromhex(to[2:]) if to else b"",
            gas=numbers["gas"],
            value=numbers["value"] or 0,
            data=bytes.fromhex(_data(payload, f"{what}.input")[2:]) if payload else b"",
            nonce=numbers["nonce"],
        )

    def _header(self, block: int | str) -> Any:
        """The py-evm header a call at ``block`` runs on (its post-state)."""
        chain = self._chain
        if block == "earliest":
            block = 0
        if isinstance(block, int):
            try:
                return chain.get_canonical_block_header_by_number(block)
            except HeaderNotFound:
                raise _RpcError(SERVER_ERROR, f"header not found: block {block}") from None
        return chain.get_canonical_head()

    def _costless(self, request: _CallRequest, header: Any, estimate: bool) -> Any:
        """Run ``request`` on the state after ``header`` with base fee and gas price 0.

        Returns the computation's output (call) or the chain's gas estimate. This is what
        py-evm's ``in_costless_state`` / ``get_transaction_result`` / ``estimate_gas`` do,
        with three differences geth makes too: the gas is capped at ``gas_cap``, the nonce is
        always the sender's next one (a call's ``nonce`` is ignored), and execution stops
        after ``evm_timeout`` seconds (:class:`_Budget`). EVM failures raise.
        """
        limits = self._limits
        gas = min(request.gas if request.gas is not None else int(header.gas_limit),
                  limits.gas_cap)
        started = time.monotonic()
        deadline = started + limits.evm_timeout
        message = f"execution aborted (timeout = {limits.evm_timeout:g}s)"
        request_deadline = getattr(self._context, "deadline", None)
        if request_deadline is not None and request_deadline < deadline:
            deadline, message = request_deadline, "request timed out"
        budget = _Budget(deadline, message, self._lock)
        # The estimator searches up to the state's gas limit: the capped gas, as in geth.
        vm, state = self._bounded_state(
            header, gas if estimate else int(header.gas_limit), budget
        )
        unsigned = vm.create_unsigned_transaction(
            nonce=int(state.get_nonce(request.sender)),
            gas_price=0,
            gas=gas,
            to=request.to,
            value=request.value,
            data=request.data,
        )
        spoofed = SpoofTransaction(unsigned, from_=request.sender)
        try:
            if estimate:
                return int(self._chain.gas_estimator(state, spoofed))
            computation = state.costless_execute_transaction(spoofed)
        except _ExecutionTimeout as timeout:
            _log.info("eth_%s stopped after %.2f s (%d hand-offs of the chain lock): %s",
                      "estimateGas" if estimate else "call", time.monotonic() - started,
                      budget.handoffs, timeout)
            raise _RpcError(SERVER_ERROR, str(timeout)) from None
        computation.raise_if_error()
        return bytes(computation.output)

    def _bounded_state(self, header: Any, gas_limit: int, budget: _Budget) -> tuple[Any, Any]:
        """The VM of ``header`` and a throwaway py-evm state for a call on top of it: the
        pending block's context with base fee 0 and ``gas_limit``, run by the bounded
        computation class.

        The same as py-evm's ``VM.in_costless_state`` except for the state class and the gas
        limit; nothing is ever persisted from it.
        """
        vm = self._chain.get_vm(header)
        pending = vm.generate_block_from_parent_header_and_coinbase(header, header.coinbase)
        changes: dict[str, Any] = {"gas_limit": gas_limit}
        if hasattr(pending.header, "base_fee_per_gas"):
            changes["base_fee_per_gas"] = 0
        free_header = pending.header.copy(**changes)
        previous_hashes = itertools.chain((header.hash,), vm.previous_hashes)
        context = vm.create_execution_context(free_header, previous_hashes, vm.chain_context)
        state = _bounded_state_class(vm.get_state_class())(
            vm.chaindb.db, context, free_header.state_root
        )
        state.budget = budget
        return vm, state

    # ------------------------------------------------------------------ methods

    def _client_version_method(self, params: Sequence[Any]) -> str:
        _params(params, 0, 0, "web3_clientVersion")
        return self._client_version

    def _net_version(self, params: Sequence[Any]) -> str:
        _params(params, 0, 0, "net_version")
        return str(self._chain_id)

    def _net_listening(self, params: Sequence[Any]) -> bool:
        _params(params, 0, 0, "net_listening")
        return True

    def _eth_chain_id(self, params: Sequence[Any]) -> str:
        _params(params, 0, 0, "eth_chainId")
        return hex(self._chain_id)

    def _eth_accounts(self, params: Sequence[Any]) -> list[str]:
        # The tester's unlocked accounts are never offered: nobody may act as them here.
        _params(params, 0, 0, "eth_accounts")
        return []

    def _eth_block_number(self, params: Sequence[Any]) -> str:
        _params(params, 0, 0, "eth_blockNumber")
        return hex(self._latest_number())

    def _eth_syncing(self, params: Sequence[Any]) -> bool:
        _params(params, 0, 0, "eth_syncing")
        return False

    def _eth_gas_price(self, params: Sequence[Any]) -> str:
        # geth's suggestion for legacy transactions: the head's base fee plus the tip.
        _params(params, 0, 0, "eth_gasPrice")
        base = int(self._tester.get_block_by_number("latest").get("base_fee_per_gas") or 0)
        return hex(base + _PRIORITY_FEE_WEI)

    def _eth_max_priority_fee(self, params: Sequence[Any]) -> str:
        _params(params, 0, 0, "eth_maxPriorityFeePerGas")
        return hex(_PRIORITY_FEE_WEI)

    def _eth_fee_history(self, params: Sequence[Any]) -> dict[str, Any]:
        # Self-locking: read from py-evm's blocks and receipts a chunk of blocks per hold of
        # the lock. (eth-tester looks each receipt up by walking back from the head: 1,024
        # blocks with reward percentiles held every client for 23 s on a 300-block chain.)
        count_raw, newest_raw, percentiles_raw = _params(params, 2, 1, "eth_feeHistory")
        count = _quantity(count_raw, "blockCount")
        if not 1 <= count <= MAX_FEE_HISTORY_BLOCKS:
            raise _invalid("blockCount", count_raw, f"1..{MAX_FEE_HISTORY_BLOCKS}")
        percentiles: list[float] = []
        if percentiles_raw is not None:
            if not isinstance(percentiles_raw, list) or not all(
                isinstance(p, int | float) and not isinstance(p, bool) and 0 <= p <= 100
                for p in percentiles_raw
            ):
                raise _invalid("rewardPercentiles", percentiles_raw, "numbers in 0..100")
            if len(percentiles_raw) > MAX_FEE_HISTORY_PERCENTILES:
                raise _invalid("rewardPercentiles", percentiles_raw,
                               f"at most {MAX_FEE_HISTORY_PERCENTILES} percentiles")
            if any(a > b for a, b in zip(percentiles_raw, percentiles_raw[1:], strict=False)):
                raise _invalid("rewardPercentiles", percentiles_raw, "a non-decreasing list")
            percentiles = [float(p) for p in percentiles_raw]
        with self._lock:
            newest_id = self._state_block(newest_raw)
            newest = int(self._tester.get_block_by_number(newest_id)["number"])
        oldest = max(0, newest - count + 1)
        base_fees: list[str] = []
        ratios: list[float] = []
        rewards: list[list[str]] = []
        last: dict[str, int] = {}
        for chunk in range(oldest, newest + 1, _FEE_BLOCKS_PER_LOCK):
            with self._lock:
                for number in range(chunk, min(chunk + _FEE_BLOCKS_PER_LOCK, newest + 1)):
                    block = self._chain.get_canonical_block_by_number(number)
                    header = block.header
                    base = int(getattr(header, "base_fee_per_gas", 0) or 0)
                    last = {"base_fee_per_gas": base, "gas_limit": int(header.gas_limit),
                            "gas_used": int(header.gas_used)}
                    base_fees.append(hex(base))
                    ratios.append(int(header.gas_used) / int(header.gas_limit))
                    if percentiles_raw is not None:
                        rewards.append(self._rewards(block, base, percentiles))
        base_fees.append(hex(_next_base_fee(last)))
        result: dict[str, Any] = {
            "oldestBlock": hex(oldest),
            "baseFeePerGas": base_fees,
            "gasUsedRatio": ratios,
        }
        if percentiles_raw is not None:
            result["reward"] = rewards
        return result

    def _rewards(self, block: Any, base: int, percentiles: Sequence[float]) -> list[str]:
        """geth's gas-weighted percentiles of the effective tips paid in py-evm ``block``."""
        receipts = block.get_receipts(self._chain.chaindb)
        tips: list[tuple[int, int]] = []
        previous = 0
        for tx, receipt in zip(block.transactions, receipts, strict=True):
            cumulative = int(receipt.gas_used)  # a receipt's gas is the block's running total
            tip = min(int(tx.max_priority_fee_per_gas), int(tx.max_fee_per_gas) - base)
            tips.append((tip, cumulative - previous))
            previous = cumulative
        if not tips:
            return ["0x0" for _ in percentiles]
        tips.sort()
        total = sum(gas for _, gas in tips)
        out = []
        index, cumulative = 0, tips[0][1]
        for p in percentiles:
            threshold = total * p / 100
            while cumulative < threshold and index < len(tips) - 1:
                index += 1
                cumulative += tips[index][1]
            out.append(hex(tips[index][0]))
        return out

    def _eth_get_balance(self, params: Sequence[Any]) -> str:
        address, block = _params(params, 1, 1, "eth_getBalance")
        account = _address(address, "address")
        return hex(int(self._tester.get_balance(account, self._state_block(block))))

    def _eth_get_code(self, params: Sequence[Any]) -> str:
        address, block = _params(params, 1, 1, "eth_getCode")
        account = _address(address, "address")
        return str(_wire(self._tester.get_code(account, self._state_block(block))))

    def _eth_get_storage_at(self, params: Sequence[Any]) -> str:
        address, slot, block = _params(params, 2, 1, "eth_getStorageAt")
        account = _address(address, "address")
        position = _quantity(slot, "storage slot")
        value = self._tester.get_storage_at(account, hex(position), self._state_block(block))
        return "0x" + bytes.fromhex(str(value)[2:]).rjust(32, b"\0").hex()

    def _eth_get_transaction_count(self, params: Sequence[Any]) -> str:
        address, block = _params(params, 1, 1, "eth_getTransactionCount")
        account = _address(address, "address")
        return hex(int(self._tester.get_nonce(account, self._state_block(block))))

    def _eth_get_block_by_number(self, params: Sequence[Any]) -> dict[str, Any] | None:
        block_raw, full_raw = _params(params, 2, 0, "eth_getBlockByNumber")
        block_id = self._block_id(block_raw)
        full = _boolean(full_raw, "full transactions flag")
        try:
            return _encode_block(self._tester.get_block_by_number(block_id, full))
        except BlockNotFound:
            return None

    def _eth_get_block_by_hash(self, params: Sequence[Any]) -> dict[str, Any] | None:
        hash_raw, full_raw = _params(params, 2, 0, "eth_getBlockByHash")
        block_hash = _hash32(hash_raw, "block hash")
        full = _boolean(full_raw, "full transactions flag")
        try:
            return _encode_block(self._tester.get_block_by_hash(block_hash, full))
        except BlockNotFound:
            return None

    def _eth_get_transaction_by_hash(self, params: Sequence[Any]) -> dict[str, Any] | None:
        (hash_raw,) = _params(params, 1, 0, "eth_getTransactionByHash")
        found = self._locate(_hash32(hash_raw, "transaction hash"))
        if found is None:
            return None
        block, tx, index = found
        raw = serialize_transaction(block, tx, index, False)
        return _encode_transaction(self._tester.normalizer.normalize_outbound_transaction(raw))

    def _eth_get_transaction_receipt(self, params: Sequence[Any]) -> dict[str, Any] | None:
        (hash_raw,) = _params(params, 1, 0, "eth_getTransactionReceipt")
        found = self._locate(_hash32(hash_raw, "transaction hash"))
        if found is None:  # unknown, or pending (not mined yet): no receipt
            return None
        block, tx, index = found
        receipts = block.get_receipts(self._chain.chaindb)
        raw = serialize_transaction_receipt(block, receipts, tx, index, False, self._chain.get_vm())
        receipt = _encode_receipt(self._tester.normalizer.normalize_outbound_receipt(raw))
        # eth-tester numbers logs within the receipt; logIndex is the position in the block
        offset = sum(len(r.logs) for r in receipts[:index])
        for log in receipt["logs"]:
            log["logIndex"] = hex(int(log["logIndex"], 16) + offset)
        return receipt

    def _locate(self, tx_hash: str) -> tuple[Any, Any, int] | None:
        """The mined block, transaction and index of ``tx_hash``, or ``None``.

        py-evm's transaction index, not eth-tester's lookup, which walks back block by block
        from the head (a receipt of an old transaction cost O(chain length)).
        """
        raw = bytes.fromhex(tx_hash[2:])
        try:
            number, index = self._chain.chaindb.get_transaction_index(raw)
            block = self._chain.get_canonical_block_by_number(number)
        except (EvmTransactionNotFound, HeaderNotFound, BlockNotFound):
            return None
        if index >= len(block.transactions) or block.transactions[index].hash != raw:
            return None  # a stale index entry (the chain was rewound in-process)
        return block, block.transactions[index], index

    def _eth_call(self, params: Sequence[Any]) -> str:
        # py-evm's costless execution (base fee and gas price 0), as geth runs an eth_call
        # without fee fields: an unfunded auditor can read, and the revert data is exact.
        tx_raw, block_raw = _params(params, 1, 1, "eth_call")
        request = self._call_request(tx_raw, "transaction")
        header = self._header(self._state_block(block_raw))
        try:
            output = self._costless(request, header, estimate=False)
        except VMError as exc:
            raise _vm_failure(exc) or _RpcError(SERVER_ERROR, f"execution failed: {exc!r}") from exc
        except EvmValidationError as exc:
            raise _RpcError(SERVER_ERROR, f"call rejected: {exc}") from exc
        return "0x" + bytes(output).hex()

    def _eth_estimate_gas(self, params: Sequence[Any]) -> str:
        # The chain's own estimator (the single-pass one LedgerChain.embedded installs).
        tx_raw, block_raw = _params(params, 1, 1, "eth_estimateGas")
        request = self._call_request(tx_raw, "transaction")
        header = self._header(self._state_block(block_raw))
        try:
            return hex(self._costless(request, header, estimate=True))
        except VMError as exc:
            raise _vm_failure(exc) or _RpcError(
                SERVER_ERROR, f"gas estimation failed: {exc!r}"
            ) from exc
        except EvmValidationError as exc:
            raise _RpcError(SERVER_ERROR, f"gas estimation rejected: {exc}") from exc

    def _eth_get_logs(self, params: Sequence[Any]) -> list[dict[str, Any]]:
        # Self-locking: the range is resolved under the lock, then scanned a chunk of blocks
        # per lock hold, so a long scan by an auditor does not stall the members' anchoring.
        (raw,) = _params(params, 1, 0, "eth_getLogs")
        query = self._log_query(raw)
        with self._lock:
            start, end = self._log_range(query)
        return self._scan_logs(start, end, query)

    def _log_query(self, value: Any) -> _LogQuery:
        """A log filter object, validated, with its address and topic counts bounded."""
        if not isinstance(value, dict):
            raise _invalid("filter", value, "a filter object")
        limits = self._limits
        address = value.get("address")
        addresses: frozenset[bytes] | None = None
        if isinstance(address, list):
            if len(address) > limits.max_log_addresses:
                raise _RpcError(
                    LIMIT_EXCEEDED,
                    f"exceed max addresses: {len(address)} > {limits.max_log_addresses} "
                    "(max_log_addresses)",
                )
            checked = [_address(a, "filter.address") for a in address]
            addresses = frozenset(bytes.fromhex(a[2:]) for a in checked) or None
        elif address is not None:
            addresses = frozenset({bytes.fromhex(_address(address, "filter.address")[2:])})
        topics = self._topics(value.get("topics"))
        block_hash = value.get("blockHash")
        if block_hash is not None:
            block_hash = _hash32(block_hash, "filter.blockHash")
            if value.get("fromBlock") is not None or value.get("toBlock") is not None:
                raise _RpcError(
                    INVALID_PARAMS, "cannot specify both blockHash and fromBlock/toBlock"
                )
        from_block = self._block_id(value.get("fromBlock"), "fromBlock")
        to_block = self._block_id(value.get("toBlock"), "toBlock")
        return _LogQuery(addresses, topics, block_hash, from_block, to_block)

    def _topics(self, value: Any) -> tuple[frozenset[str] | None, ...]:
        """Topic positions: ``None`` for a wildcard, else the set of accepted topics."""
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) > _MAX_TOPIC_POSITIONS:
            raise _invalid("filter.topics", value,
                           f"an array of at most {_MAX_TOPIC_POSITIONS} topic positions")
        limit = self._limits.max_log_topics
        topics: list[frozenset[str] | None] = []
        for i, position in enumerate(value):
            if position is None:
                topics.append(None)
            elif isinstance(position, list):
                if len(position) > limit:
                    raise _RpcError(
                        LIMIT_EXCEEDED,
                        f"exceed max topics: {len(position)} alternatives in position {i} "
                        f"> {limit} (max_log_topics)",
                    )
                alternatives = frozenset(_hash32(t, f"filter.topics[{i}]") for t in position)
                topics.append(alternatives or None)
            else:
                topics.append(frozenset({_hash32(position, f"filter.topics[{i}]")}))
        while topics and topics[-1] is None:  # trailing wildcards match anything
            topics.pop()
        return tuple(topics)

    def _log_range(self, query: _LogQuery) -> tuple[int, int]:
        """The block numbers ``(start, end)`` a filter covers (end <= head), at most
        ``max_logs_range`` blocks apart (Besu's rule: ``toBlock - fromBlock``)."""
        if query.block_hash is not None:
            number = int(self._block_id({"blockHash": query.block_hash}, "blockHash"))
            return number, number
        latest = self._latest_number()
        start, end = (0 if block == "earliest" else latest if isinstance(block, str) else block
                      for block in (query.from_block, query.to_block))
        if start > end:
            raise _RpcError(INVALID_PARAMS, "invalid block range params: fromBlock > toBlock")
        end = min(end, latest)
        limit = self._limits.max_logs_range
        if end - start > limit:
            raise _RpcError(
                LIMIT_EXCEEDED,
                f"requested range exceeds maximum RPC range limit: blocks {start}..{end} "
                f"span {end - start} > {limit} (max_logs_range); ask in pages",
            )
        return start, end

    def _scan_logs(self, start: int, end: int, query: _LogQuery) -> list[dict[str, Any]]:
        """The matching logs of blocks ``start..end``, taking the lock per chunk of blocks."""
        found: list[dict[str, Any]] = []
        for chunk in range(start, end + 1, _LOG_BLOCKS_PER_LOCK):
            with self._lock:
                for number in range(chunk, min(chunk + _LOG_BLOCKS_PER_LOCK, end + 1)):
                    # The header's logs bloom (as geth uses it) skips the blocks that cannot
                    # hold a matching log; only the others have their receipts read.
                    if query.may_match(self._bloom(number)):
                        found.extend(self._block_logs(number, query))
        return found

    def _block_logs(self, number: int, query: _LogQuery) -> list[dict[str, Any]]:
        """The logs of canonical block ``number`` that match the filter, in wire form."""
        block = self._chain.get_canonical_block_by_number(number)
        receipts = block.get_receipts(self._chain.chaindb)
        block_hash = "0x" + bytes(block.hash).hex()
        out: list[dict[str, Any]] = []
        log_index = 0
        for tx_index, (tx, receipt) in enumerate(zip(block.transactions, receipts, strict=True)):
            for log in receipt.logs:
                log_topics = ["0x" + int(t).to_bytes(32, "big").hex() for t in log.topics]
                if query.matches(bytes(log.address), log_topics):
                    out.append(
                        {
                            "address": "0x" + bytes(log.address).hex(),
                            "topics": log_topics,
                            "data": "0x" + bytes(log.data).hex(),
                            "blockNumber": hex(number),
                            "blockHash": block_hash,
                            "transactionHash": "0x" + bytes(tx.hash).hex(),
                            "transactionIndex": hex(tx_index),
                            "logIndex": hex(log_index),
                            "removed": False,
                        }
                    )
                log_index += 1
        return out

    def _bloom(self, number: int) -> int:
        """The logs bloom of canonical block ``number``, cached by block hash (immutable)."""
        block_hash = self._chain.chaindb.get_canonical_block_hash(number)
        bloom = self._blooms.get(block_hash)
        if bloom is None:
            if len(self._blooms) >= _BLOOM_CACHE_SIZE:
                self._blooms.clear()
            bloom = int(self._chain.get_block_header_by_hash(block_hash).bloom)
            self._blooms[block_hash] = bloom
        return bloom

    # ------------------------------------------------------------------ filters

    def _eth_new_filter(self, params: Sequence[Any]) -> str:
        (raw,) = _params(params, 1, 0, "eth_newFilter")
        query = self._log_query(raw)
        if query.block_hash is not None:
            raise _RpcError(INVALID_PARAMS, "eth_newFilter takes no blockHash: use eth_getLogs")
        return self._filters.install(self._client(), "logs", self._latest_number() + 1, query)

    def _eth_new_block_filter(self, params: Sequence[Any]) -> str:
        _params(params, 0, 0, "eth_newBlockFilter")
        return self._filters.install(self._client(), "blocks", self._latest_number() + 1)

    def _eth_new_pending_transaction_filter(self, params: Sequence[Any]) -> str:
        # Every transaction is mined before its hash is returned: nothing is ever pending.
        _params(params, 0, 1, "eth_newPendingTransactionFilter")
        return self._filters.install(self._client(), "transactions", 0)

    def _eth_get_filter_changes(self, params: Sequence[Any]) -> list[Any]:
        # Self-locking: what is new since the last poll, the logs scanned chunk by chunk.
        (raw,) = _params(params, 1, 0, "eth_getFilterChanges")
        filter_id = _filter_id(raw)
        with self._lock:
            head = self._latest_number()
            installed, start = self._filters.claim(filter_id, head)
            if installed.kind == "blocks":
                return [
                    "0x" + bytes(self._chain.chaindb.get_canonical_block_hash(n)).hex()
                    for n in range(start, head + 1)
                ]
        if installed.kind != "logs" or installed.query is None:
            return []
        query = installed.query
        low = start if not isinstance(query.from_block, int) else max(start, query.from_block)
        high = head if not isinstance(query.to_block, int) else min(head, query.to_block)
        return self._scan_logs(low, high, query) if low <= high else []

    def _eth_get_filter_logs(self, params: Sequence[Any]) -> list[dict[str, Any]]:
        # Self-locking: every log the filter covers, as eth_getLogs with its criteria.
        (raw,) = _params(params, 1, 0, "eth_getFilterLogs")
        installed = self._filters.get(_filter_id(raw))
        if installed.kind != "logs" or installed.query is None:
            raise _RpcError(SERVER_ERROR, "filter not found")
        with self._lock:
            start, end = self._log_range(installed.query)
        return self._scan_logs(start, end, installed.query)

    def _eth_uninstall_filter(self, params: Sequence[Any]) -> bool:
        (raw,) = _params(params, 1, 0, "eth_uninstallFilter")
        return self._filters.uninstall(_filter_id(raw))

    def _client(self) -> str:
        """The running request's client (its address), for the per-client filter bound."""
        return str(getattr(self._context, "client", IN_PROCESS_CLIENT))

    def _rehearse(self, payload: bytes) -> None:
        """Run a signed transaction once on a throwaway copy of the pending block's state,
        within ``tx_timeout``, before eth-tester mines it; refuse it (-32000) if it runs
        longer. Mining holds the chain lock with nothing to hand off to: a funded sender's
        loop at the block gas limit held every client for 6.5 s, 60 pairings for 9.5 s.

        The copy is the very state and header the transaction is mined on (the chain lock
        is held throughout, the budget never lets go of it), so the run is the same. One
        that cannot be decoded is refused (-32602) rather than mined untried; one that is
        invalid otherwise (nonce, funds) is left to eth-tester, which refuses it in its own
        words.
        """
        chain = self._chain
        header = chain.header  # the pending block eth-tester applies the transaction to
        vm = chain.get_vm(header)
        try:
            transaction = vm.get_transaction_builder().decode(payload)
        except Exception as exc:  # rlp / validation errors: eth-tester could not decode it
            raise _RpcError(INVALID_PARAMS, f"invalid raw transaction: {exc}") from exc
        timeout = self._limits.tx_timeout
        budget = _Budget(
            time.monotonic() + timeout,
            f"transaction rejected: its execution did not finish within {timeout:g} s "
            "(tx_timeout); it was not mined",
            None,  # no hand-off: nothing may change the chain between this run and mining
        )
        context = vm.create_execution_context(header, vm.previous_hashes, vm.chain_context)
        state = _bounded_state_class(vm.get_state_class())(
            vm.chaindb.db, context, header.state_root
        )
        state.budget = budget
        try:
            state.apply_transaction(transaction)
        except _ExecutionTimeout as timeout_error:
            raise _RpcError(SERVER_ERROR, str(timeout_error)) from None
        except Exception:  # invalid here: eth-tester refuses it with the standard error
            return

    def _eth_send_raw_transaction(self, params: Sequence[Any]) -> str:
        (raw_hex,) = _params(params, 1, 0, "eth_sendRawTransaction")
        raw = _data(raw_hex, "raw transaction")
        payload = bytes.fromhex(raw[2:])
        if not payload:
            raise _invalid("raw transaction", raw_hex, "a signed transaction")
        _require_chain_id(payload, self._chain_id)
        self._rehearse(payload)
        try:
            return str(_wire(self._tester.send_raw_transaction(raw)))
        except (TesterValidationError, EvmValidationError) as exc:
            raise _RpcError(SERVER_ERROR, f"transaction rejected: {exc}") from exc
        except TransactionFailed as exc:
            raise _vm_failure(exc) or _RpcError(SERVER_ERROR, f"transaction failed: {exc}") from exc
        except Exception as exc:  # rlp / decoding errors from py-evm for a garbled payload
            if type(exc).__module__.startswith(("rlp", "eth")):
                raise _RpcError(INVALID_PARAMS, f"invalid raw transaction: {exc}") from exc
            raise


def _require_chain_id(payload: bytes, chain_id: int) -> None:
    """Refuse a raw transaction not bound to this chain, as geth does.

    Legacy transactions must carry an EIP-155 chain id in ``v`` (unprotected ones could be
    replayed from any chain); typed ones (EIP-2718) carry it as their first field. py-evm
    does not check a legacy transaction's chain id itself.
    """
    import rlp  # type: ignore[import-untyped]  # py-evm's dependency

    typed = payload[0] < 0xC0
    try:
        fields = rlp.decode(payload[1:] if typed else payload)
    except Exception as exc:  # rlp.DecodingError and friends
        raise _RpcError(INVALID_PARAMS, f"invalid raw transaction: {exc}") from exc
    if (
        not isinstance(fields, list)
        or not fields
        or not all(isinstance(f, bytes) for f in fields[:7])
    ):
        raise _RpcError(INVALID_PARAMS, "invalid raw transaction: not an RLP transaction")
    if typed:
        signed_for = int.from_bytes(fields[0], "big")
    else:
        if len(fields) != 9:
            raise _RpcError(INVALID_PARAMS, "invalid raw transaction: not a legacy transaction")
        v = int.from_bytes(fields[6], "big")
        if v in (27, 28):
            raise _RpcError(
                SERVER_ERROR, "only replay-protected (EIP-155) transactions allowed over RPC"
            )
        signed_for = (v - 35) // 2
    if signed_for != chain_id:
        raise _RpcError(
            SERVER_ERROR,
            f"invalid chain id for signer: have {signed_for}, want {chain_id}",
        )


def _bloom_mask(value: bytes) -> int:
    """The three logs-bloom bits of ``value``: a bloom may hold it iff all three are set."""
    mask = 0
    for bit in get_bloom_bits(value):
        mask |= bit
    return mask


@dataclass(frozen=True)
class _LogQuery:
    """A validated log filter (``eth_getLogs``, ``eth_newFilter``): addresses (any of),
    topics position by position (``None`` matches anything, else any of the set), and the
    block range as given (tags or numbers) or one block hash."""

    addresses: frozenset[bytes] | None
    topics: tuple[frozenset[str] | None, ...]
    block_hash: str | None
    from_block: int | str
    to_block: int | str
    _address_masks: tuple[int, ...] = field(init=False, repr=False)
    _topic_masks: tuple[tuple[int, ...], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # The bloom bits are hashed once per query, not once per block scanned.
        object.__setattr__(self, "_address_masks",
                           tuple(_bloom_mask(a) for a in self.addresses or ()))
        object.__setattr__(self, "_topic_masks", tuple(
            tuple(_bloom_mask(bytes.fromhex(t[2:])) for t in position)
            for position in self.topics if position is not None
        ))

    def may_match(self, bloom: int) -> bool:
        """Whether a block with logs bloom ``bloom`` may hold a matching log."""
        if not bloom:
            return False
        if self._address_masks and not any(bloom & m == m for m in self._address_masks):
            return False
        return all(any(bloom & m == m for m in masks) for masks in self._topic_masks)

    def matches(self, address: bytes, log_topics: Sequence[str]) -> bool:
        """Whether a log from ``address`` with ``log_topics`` matches."""
        if self.addresses is not None and address not in self.addresses:
            return False
        if len(self.topics) > len(log_topics):
            return False
        return all(wanted is None or topic in wanted
                   for wanted, topic in zip(self.topics, log_topics, strict=False))


@dataclass
class _Filter:
    """One installed filter: what it watches, whose it is, and how far it has reported."""

    kind: str  # "logs", "blocks" or "transactions"
    client: str
    next_block: int  # the first block whose changes the next poll reports
    expires: float  # monotonic seconds
    query: _LogQuery | None = None


class _FilterStore:
    """The installed filters by id, as geth keeps them: each expires ``timeout`` seconds after
    it was last polled, and one client (address) keeps at most ``per_client`` at once."""

    def __init__(self, per_client: int, timeout: float) -> None:
        self._per_client = per_client
        self._timeout = timeout
        self._filters: dict[str, _Filter] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def install(self, client: str, kind: str, next_block: int,
                query: _LogQuery | None = None) -> str:
        """Keep a new filter; return its id. Raise -32005 past the client's bound."""
        with self._lock:
            now = self._sweep()
            held = self._counts.get(client, 0)
            if held >= self._per_client:
                raise _RpcError(
                    LIMIT_EXCEEDED,
                    f"too many filters: this client keeps {held} (max_filters "
                    f"{self._per_client}); uninstall some, or let idle ones expire after "
                    f"{self._timeout:g} s",
                )
            filter_id = "0x" + secrets.token_hex(16)
            self._filters[filter_id] = _Filter(kind, client, next_block, now + self._timeout,
                                               query)
            self._counts[client] = held + 1
            return filter_id

    def get(self, filter_id: str) -> _Filter:
        """The live filter ``filter_id`` (its expiry pushed back); -32000 if there is none."""
        with self._lock:
            return self._touch(filter_id, self._sweep())

    def claim(self, filter_id: str, head: int) -> tuple[_Filter, int]:
        """The filter and the first block it has not reported; from now on it has reported
        every block up to ``head``."""
        with self._lock:
            installed = self._touch(filter_id, self._sweep())
            start = installed.next_block
            installed.next_block = max(start, head + 1)
            return installed, start

    def uninstall(self, filter_id: str) -> bool:
        """Remove ``filter_id``; whether it was there."""
        with self._lock:
            self._sweep()
            return self._drop(filter_id)

    def __len__(self) -> int:
        with self._lock:
            self._sweep()
            return len(self._filters)

    def _touch(self, filter_id: str, now: float) -> _Filter:
        installed = self._filters.get(filter_id)
        if installed is None or installed.expires <= now:
            if installed is not None:
                self._drop(filter_id)
            raise _RpcError(SERVER_ERROR, "filter not found")
        installed.expires = now + self._timeout
        return installed

    def _drop(self, filter_id: str) -> bool:
        installed = self._filters.pop(filter_id, None)
        if installed is None:
            return False
        left = self._counts[installed.client] - 1
        if left:
            self._counts[installed.client] = left
        else:
            del self._counts[installed.client]
        return True

    def _sweep(self) -> float:
        """Drop expired filters (at most every 1 % of the timeout); return the time now."""
        now = time.monotonic()
        if now >= self._next_sweep:
            for filter_id in [i for i, f in self._filters.items() if f.expires <= now]:
                self._drop(filter_id)
            self._next_sweep = now + self._timeout / 100
        return now


def _filter_id(value: Any) -> str:
    """A filter id as installed (lower-case 0x-hex); -32602 for what cannot be one."""
    if not isinstance(value, str) or not 2 < len(value) <= 66 or value[:2] not in ("0x", "0X"):
        raise _invalid("filter id", value, "a filter id (0x-hex)")
    return "0x" + value[2:].lower()


def _vm_failure(exc: BaseException) -> _RpcError | None:
    """The geth-style error for an EVM failure in ``exc``'s chain, or ``None`` if none."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        candidates: list[Any] = [current, *current.args]
        for candidate in candidates:
            if isinstance(candidate, Revert):
                data = candidate.args[0] if candidate.args else b""
                raw = bytes(data) if isinstance(data, bytes | bytearray) else b""
                return _RpcError(EXECUTION_REVERTED, "execution reverted", "0x" + raw.hex())
            if isinstance(candidate, VMError):
                return _RpcError(SERVER_ERROR, f"execution failed: {candidate!r}")
        current = current.__cause__ or current.__context__
    return None


def _next_base_fee(block: Mapping[str, int]) -> int:
    """The EIP-1559 base fee of the block after ``block`` (its base fee, gas limit, gas used)."""
    base = int(block.get("base_fee_per_gas") or 0)
    limit = int(block.get("gas_limit") or 0)
    used = int(block.get("gas_used") or 0)
    target = limit // 2
    if not target or used == target:
        return base
    if used > target:
        return base + max(1, base * (used - target) // target // 8)
    return base - base * (target - used) // target // 8


def _error_response(call_id: Any, error: _RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call_id, "error": error.to_json()}


def _dump(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _py() -> str:
    v = sys.version_info
    return f"{v.major}.{v.minor}.{v.micro}"


# ---------------------------------------------------------------------- HTTP transport


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive front end: POST / with a JSON body, like geth's HTTP endpoint."""

    protocol_version = "HTTP/1.1"
    server_version = "JointLedgerChain/1"
    sys_version = ""
    timeout = _IDLE_TIMEOUT_S  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True  # headers and body go out as two writes
    server: _HTTPServer

    def handle_one_request(self) -> None:
        """Wait (up to the idle timeout) for the next request to begin, then read it with a
        watchdog that shuts the connection down if its head is not complete within
        ``header_timeout``: a head trickled a byte at a time cannot hold the thread."""
        try:
            began = self.rfile.peek(1)  # type: ignore[attr-defined]
        except OSError:  # idle past the timeout, or reset
            self.close_connection = True
            return
        if not began:
            self.close_connection = True
            return
        self._watchdog = threading.Timer(self.server.limits.header_timeout, self._cut)
        self._watchdog.daemon = True
        self._watchdog.start()
        try:
            super().handle_one_request()
        finally:
            self._watchdog.cancel()

    def _cut(self) -> None:
        """The head did not arrive in time: end the connection (its reads return EOF)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def parse_request(self) -> bool:
        """The head has arrived: stop the watchdog before the body and the call run."""
        complete = super().parse_request()
        self._watchdog.cancel()
        return complete

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        if self.headers.get("Transfer-Encoding"):
            self._reply(411, _RpcError(INVALID_REQUEST, "send a Content-Length, not chunks"))
            return
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            self._reply(411, _RpcError(INVALID_REQUEST, "a valid Content-Length is required"))
            return
        limit = self.server.limits.max_body_bytes
        if length > limit:
            message = f"request body of {length} bytes exceeds the limit of {limit} bytes"
            self._reply(413, _RpcError(INVALID_REQUEST, message))
            return
        body = self._read_body(length)
        if body is None:
            return  # answered and closed
        try:
            with self.server.rpc.peer(str(self.client_address[0])):
                answer = self.server.rpc.handle(body)
        except Exception:  # a bug: answer and keep serving rather than drop the connection
            _log.exception("JSON-RPC request failed")
            self._reply(500, _RpcError(INTERNAL_ERROR, "internal error"))
            return
        if answer is None:  # notifications only: nothing to say (as anvil answers)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send(200, answer)

    def _read_body(self, length: int) -> bytes | None:
        """Exactly ``length`` bytes of body, all within ``read_timeout`` seconds.

        A body that ends early (the client shut its side down) is never executed: HTTP 400.
        One that has not arrived in time gets HTTP 408. Either way the connection is
        closed and ``None`` returned.
        """
        timeout = self.server.limits.read_timeout
        deadline = time.monotonic() + timeout
        body = bytearray()
        refusal: tuple[int, str] | None = None
        try:
            while len(body) < length:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(length - len(body))
                if not chunk:
                    refusal = (400, f"request body ended after {len(body)} of the {length} "
                                    "bytes its Content-Length announced; nothing was executed")
                    break
                body += chunk
        except TimeoutError:
            refusal = (408, f"request body not received within {timeout:g} s ({len(body)} of "
                            f"{length} bytes); nothing was executed")
        except OSError:  # reset by the peer: nobody to answer
            self.close_connection = True
            return None
        finally:
            self.connection.settimeout(self.timeout)
        if refusal is not None:
            self._reply(refusal[0], _RpcError(INVALID_REQUEST, refusal[1]))
            return None
        return bytes(body)

    def do_GET(self) -> None:  # noqa: N802
        self._reply(405, _RpcError(INVALID_REQUEST, "JSON-RPC is served by POST only"))

    do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    def _reply(self, status: int, error: _RpcError) -> None:
        """An HTTP error carrying a JSON-RPC error object; the connection is then closed."""
        self.close_connection = True
        self._send(status, _dump(_error_response(None, error)), close=True)

    def _send(self, status: int, body: bytes, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == 405:
            self.send_header("Allow", "POST")
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        _log.debug("%s " + format, self.address_string(), *args)


class _HTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that can close its open keep-alive connections on stop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], rpc: ChainRpc) -> None:
        self.rpc = rpc
        self.limits = rpc.limits
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            full = len(self._open) >= self.limits.max_connections
            if not full:
                self._open.add(request)
        if full:  # one thread per connection: past the limit, refuse rather than spawn
            body = _dump(_error_response(None, _RpcError(
                SERVER_ERROR, f"too many connections (limit {self.limits.max_connections})")))
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                                b"application/json\r\nConnection: close\r\nContent-Length: "
                                + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            super().shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open connection so idle keep-alive handlers end now."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer


def _require_loopback(host: str, tls: bool = False, allow_plaintext: bool = False) -> None:
    """Raise ValueError unless ``host`` is a loopback address, or the chain is served over
    TLS, or plain HTTP beyond loopback is explicitly allowed."""
    if tls or allow_plaintext or host in _LOOPBACK_NAMES:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(
        f"the embedded chain is served in plain HTTP on loopback only, not on {host!r}: give "
        "it a TLS certificate (--tls-cert, --tls-key) or --allow-plaintext; members on other "
        "machines normally use a Besu / GoQuorum network with --rpc-url"
    )


class ChainServer:
    """Standard Ethereum JSON-RPC over HTTP for an in-process eth-tester chain.

    The port is bound at construction (``port=0`` picks a free one, see :attr:`url`);
    :meth:`start` serves it from a background thread and :meth:`stop` closes it. Usable as
    a context manager. Every limit of :class:`RpcLimits` is a keyword here, with the same
    default; ``limits`` gives them all at once (a keyword given as well overrides it). With
    ``ssl_context`` (a server context; one requiring client certificates makes it mutual TLS)
    it serves https. Raises ``TypeError`` if ``chain`` is not an embedded (eth-tester,
    py-evm) chain, ``ValueError`` for a non-loopback host served in plain HTTP without
    ``allow_plaintext`` or a limit that is not positive, and ``OSError`` if the port is taken.
    """

    def __init__(
        self,
        chain: LedgerChain,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        limits: RpcLimits | None = None,
        max_body_bytes: int | None = None,
        max_batch: int | None = None,
        read_timeout: float | None = None,
        header_timeout: float | None = None,
        max_connections: int | None = None,
        request_timeout: float | None = None,
        gas_cap: int | None = None,
        evm_timeout: float | None = None,
        tx_timeout: float | None = None,
        max_logs_range: int | None = None,
        max_log_addresses: int | None = None,
        max_log_topics: int | None = None,
        max_filters: int | None = None,
        filter_timeout: float | None = None,
        methods: Iterable[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        allow_plaintext: bool = False,
    ) -> None:
        _require_loopback(host, ssl_context is not None, allow_plaintext)
        given: dict[str, Any] = {
            "max_body_bytes": max_body_bytes, "max_batch": max_batch,
            "read_timeout": read_timeout, "header_timeout": header_timeout,
            "max_connections": max_connections, "request_timeout": request_timeout,
            "gas_cap": gas_cap, "evm_timeout": evm_timeout, "tx_timeout": tx_timeout,
            "max_logs_range": max_logs_range,
            "max_log_addresses": max_log_addresses, "max_log_topics": max_log_topics,
            "max_filters": max_filters, "filter_timeout": filter_timeout,
            "methods": frozenset(methods) if methods is not None else None,
        }
        settings = asdict(limits) if limits is not None else {}
        settings.update({name: value for name, value in given.items() if value is not None})
        tester, self._lock = chain.embedded_tester()
        _check_py_evm(tester)
        self._rpc = ChainRpc(tester, chain.chain_id, self._lock, RpcLimits(**settings))
        self._httpd = _HTTPServer((host, port), self._rpc)
        if ssl_context is not None:  # TLS: the handshake runs in each connection's thread
            self._httpd.socket = ssl_context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False)
        bound_host, bound_port = self._httpd.server_address[:2]
        host_text = bound_host.decode() if isinstance(bound_host, bytes) else str(bound_host)
        shown = f"[{host_text}]" if ":" in host_text else host_text
        scheme = "https" if ssl_context is not None else "http"
        self._url = f"{scheme}://{shown}:{bound_port}"
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def limits(self) -> RpcLimits:
        """The limits this server keeps."""
        return self._rpc.limits

    @property
    def url(self) -> str:
        """The endpoint, e.g. ``http://127.0.0.1:8545``."""
        return self._url

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """The lock held around every call into the chain: the embedded provider's own, so
        in-process users of the same :class:`LedgerChain` are serialised with the server."""
        return self._lock

    @property
    def rpc(self) -> ChainRpc:
        """The transport-free dispatcher (for in-process callers and tests)."""
        return self._rpc

    def start(self) -> None:
        """Serve from a background daemon thread; raise RuntimeError if stopped or running."""
        if self._closed:
            raise RuntimeError("a stopped ChainServer cannot be restarted")
        if self._thread is not None:
            raise RuntimeError("ChainServer already started")
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"chain-server-{self._url}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close open connections and release the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()
        self._httpd.close_connections()

    def __enter__(self) -> ChainServer:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
