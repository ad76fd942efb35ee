"""The chain seam: :class:`LedgerChain`, the only code that talks to an Ethereum chain.

It wraps a :class:`web3.Web3` and the deployed ``JointLedger`` contract, and speaks typed
Python (frozen dataclasses, :class:`Role`, bytes) in and out. The embedded eth-tester chain
and any JSON-RPC node (anvil, Besu, GoQuorum) differ only in the provider given to the
constructor; nothing above this module branches on the backend.

Every transaction is signed locally with the sender's own ``eth_account`` key and sent raw
(``eth_sendRawTransaction``): no node ever holds or unlocks a member's key. Reverts come back
as :class:`~ledger_node.errors.ContractRevert` carrying the Solidity custom error's name and
decoded arguments.
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, Final, NoReturn

import requests
from eth.vm.spoof import SpoofTransaction
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester
from eth_tester.exceptions import TransactionFailed
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import TransactionNotFound, Web3Exception
from web3.providers.eth_tester import EthereumTesterProvider
from web3.providers.rpc import HTTPProvider
from web3.providers.rpc.utils import ExceptionRetryConfiguration
from web3.types import RPCEndpoint, RPCResponse, TxReceipt

from ledger_node.chain.contracts import ContractArtifact, load_artifact
from ledger_node.chain.tester_chain import memory_tester
from ledger_node.errors import ChainError, ContractRevert, DeploymentError

Address = str
"""A checksummed 20-byte Ethereum address in hex, e.g. ``0x7E5F...5Bdf``."""

ETH_TESTER_FAUCET_KEY: Final = "0x" + "00" * 31 + "01"
"""eth-tester's first pre-funded account (its default keys are 1, 2, ..., 10)."""

ANVIL_FAUCET_KEY: Final = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""anvil's (and Hardhat's) first pre-funded development account."""

DEV_FAUCET_KEYS: Final = (ETH_TESTER_FAUCET_KEY, ANVIL_FAUCET_KEY)

ANCHOR_GAS_LIMIT: Final = 250_000
"""Gas sent with every checkpoint anchor, instead of estimating it (one EVM run, ~30 ms on
the embedded chain, on the sealer's hot path). An anchor costs 165,316 gas for a log's first
checkpoint and 84,677 after, with a 72-byte DER SM2 signature (docs/contracts.md)."""

_GAS_MARGIN_NUM: Final = 6  # send 6/5 of the estimate: state may move between estimate and mining
_GAS_MARGIN_DEN: Final = 5
_SELECTOR_ERROR_STRING: Final = bytes.fromhex("08c379a0")  # Error(string)
_SELECTOR_PANIC: Final = bytes.fromhex("4e487b71")  # Panic(uint256)
_BYTES_LITERAL: Final = re.compile(r"""b(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
_ALREADY_SENT: Final = re.compile(
    r"already known|already imported|known transaction|nonce too low", re.IGNORECASE
)  # how nodes (geth, Besu, anvil) answer a raw transaction they already hold or mined
_RECEIPT_POLL_FIRST_S: Final = 0.01
_RECEIPT_POLL_MAX_S: Final = 0.5

RPC_ATTEMPTS: Final = 4
"""How many times a JSON-RPC request is sent when the transport fails (refused connection,
timeout) before :class:`~ledger_node.errors.ChainError` is raised."""

RPC_BACKOFF_S: Final = 0.25
"""The first pause between two attempts; it doubles after each (0.25, 0.5, 1 s)."""

RPC_LOG_RANGE: Final = 1000
"""The most blocks one ``eth_getLogs`` asks a JSON-RPC node for: Besu refuses wider ranges
by default (``--rpc-max-logs-range``, 1000 since 22.10.3), so longer ranges are read in
pages of this many blocks."""

_log = logging.getLogger(__name__)


class Role(IntEnum):
    """A member's role; the values are the Solidity ``IJointLedger.Role`` enum's."""

    NONE = 0
    PLATFORM = 1
    REGULATOR = 2
    AUDITOR = 3


class ProposalKind(IntEnum):
    """What a governance proposal does; the values are ``IJointLedger.ProposalKind``'s."""

    ADD_MEMBER = 0
    REMOVE_MEMBER = 1
    ROTATE_KEY = 2
    CHANGE_THRESHOLD = 3
    REMOVE_RISK_DEVICE = 4


@dataclass(frozen=True)
class KeyPeriod:
    """An SM2 key a member had registered, from ``since`` until ``until`` (Unix seconds of
    the rotation blocks; ``None``: since admission, or still registered)."""

    public_key: bytes
    since: int | None
    until: int | None

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether the key was registered at some time in ``[start, end]``."""
        return ((self.since is None or self.since <= end.timestamp())
                and (self.until is None or self.until > start.timestamp()))


@dataclass(frozen=True)
class Member:
    """A consortium member: chain address, role, display name and raw 64-byte SM2 key."""

    address: Address
    role: Role
    name: str
    public_key: bytes
    active: bool = True


@dataclass(frozen=True)
class Proposal:
    """A governance proposal; only the fields its ``kind`` uses are meaningful.

    ``approvals`` counts the approvers that are active voters now, which is what execution
    compares with the threshold in force. ``risk_entry`` is the risk-list entry a
    REMOVE_RISK_DEVICE proposal removes (its ``account`` is the entry's adder).
    """

    id: int
    kind: ProposalKind
    proposer: Address
    account: Address
    role: Role
    name: str
    public_key: bytes
    new_threshold: int
    approvers: tuple[Address, ...]
    approvals: int
    executed: bool
    risk_entry: bytes = bytes(32)


@dataclass(frozen=True)
class AnchoredCheckpoint:
    """A checkpoint as anchored on chain.

    ``signature`` and ``tx_hash`` are known only when read from the ``CheckpointAnchored``
    events (:meth:`LedgerChain.checkpoints`); contract views leave them ``None``.
    """

    log_id: bytes
    tree_size: int
    root: bytes
    timestamp: int
    block_number: int
    block_time: int
    signature: bytes | None = None
    tx_hash: bytes | None = None


@dataclass(frozen=True)
class ChainEvent:
    """One decoded contract event: its Solidity name and arguments (bytes, ints, addresses)."""

    name: str
    args: Mapping[str, Any]
    block_number: int
    tx_hash: bytes
    log_index: int


@dataclass(frozen=True)
class TxOutcome:
    """A mined, successful transaction and the contract events it emitted."""

    tx_hash: bytes
    block_number: int
    gas_used: int
    events: tuple[ChainEvent, ...] = ()

    def event_names(self) -> list[str]:
        """The names of the emitted events, in order."""
        return [e.name for e in self.events]

    def event(self, name: str) -> ChainEvent:
        """The first emitted event called ``name``; raise ``KeyError`` if there is none."""
        for e in self.events:
            if e.name == name:
                return e
        raise KeyError(f"no {name} event in transaction {self.tx_hash.hex()}")


@dataclass(frozen=True)
class MinedTransaction:
    """Where a transaction is mined now (:meth:`LedgerChain.mined_transaction`)."""

    tx_hash: bytes
    block_number: int
    block_hash: bytes
    succeeded: bool


@dataclass(frozen=True)
class CommitmentRecord:
    """Who recorded a direct commitment, and in which block."""

    commitment: bytes
    platform: Address
    block_number: int


@dataclass(frozen=True)
class DisclosureRequest:
    """A regulator's disclosure request and, once fulfilled, the platform's answer digest."""

    id: int
    regulator: Address
    platform: Address
    commitment: bytes
    case_id: bytes
    requested_block: int
    fulfilled: bool
    fulfilled_block: int
    response_digest: bytes


@dataclass(frozen=True)
class RiskDeviceRecord:
    """A listed risk device as stored on chain: its keyed-hash entry, adder, reason code,
    list-key epoch and the block it was listed in (docs/risklist.md)."""

    entry: bytes
    adder: Address
    reason: int
    epoch: int
    block_number: int


RISK_LIST_EVENTS: Final = (
    "RiskDeviceAdded", "RiskDeviceRemoved", "ListEpochOpened", "ListEpochClosed", "ListKeySet",
)
"""The events :meth:`LedgerChain.risk_list_events` reads, in one ``eth_getLogs``."""


@dataclass(frozen=True)
class _EventLayout:
    """An event's name and its indexed and data inputs as (name, ABI type) pairs."""

    name: str
    indexed: tuple[tuple[str, str], ...]
    data: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Deployment:
    """Where a ``JointLedger`` lives: chain, address, deployment block and ABI version."""

    chain_id: int
    address: Address
    deploy_block: int
    abi_sha256: str

    def to_json(self) -> dict[str, Any]:
        """The deployment file's JSON object."""
        return {
            "chainId": self.chain_id,
            "address": self.address,
            "deployBlock": self.deploy_block,
            "abiSha256": self.abi_sha256,
        }

    def save(self, path: Path) -> None:
        """Write the deployment to ``path`` as JSON."""
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """Read a deployment file; raise :class:`DeploymentError` if missing or malformed."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                chain_id=int(data["chainId"]),
                address=Web3.to_checksum_address(str(data["address"])),
                deploy_block=int(data["deployBlock"]),
                abi_sha256=str(data["abiSha256"]),
            )
        except FileNotFoundError:
            raise DeploymentError(f"no deployment file at {path}") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DeploymentError(f"malformed deployment file {path}: {exc!r}") from exc


class _SerialTesterProvider(EthereumTesterProvider):
    """eth-tester's provider, one request at a time: py-evm is not thread-safe, and several
    nodes in one process may share one embedded chain, and no caller above the adapter locks."""

    def __init__(self, tester: EthereumTester) -> None:
        """Serve ``tester``."""
        super().__init__(tester)
        self.serial = threading.RLock()  # re-entrant: middleware may ask from within
        """Held around each request; the JSON-RPC server of this chain holds it too."""

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        """Answer one JSON-RPC request while holding the chain."""
        with self.serial:
            return super().make_request(method, params)


class _RetryingHTTPProvider(HTTPProvider):
    """web3's HTTP provider, retrying every request on transport failures (bounded,
    exponential backoff) and raising :class:`ChainError` once the attempts are spent.

    Re-sending is safe for reads, and for ``eth_sendRawTransaction`` too: the same signed
    bytes are the same transaction, which a node mines at most once (a node that already
    holds it answers "already known" / "nonce too low", which the sender resolves).
    """

    def __init__(self, url: str, *, timeout: float, attempts: int, backoff: float,
                 verify: bool | str = True, cert: tuple[str, str] | None = None) -> None:
        request_kwargs: dict[str, Any] = {"timeout": timeout, "verify": verify}
        if cert is not None:
            request_kwargs["cert"] = cert
        super().__init__(
            url,
            request_kwargs=request_kwargs,
            exception_retry_configuration=ExceptionRetryConfiguration(
                errors=(requests.ConnectionError, requests.Timeout),
                retries=attempts,
                backoff_factor=backoff,
                method_allowlist=["eth", "net", "web3", "evm", "anvil"],
            ),
        )
        self._attempts = attempts

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        try:
            return super().make_request(method, params)
        except requests.RequestException as exc:
            raise ChainError(
                f"JSON-RPC {method} to {self.endpoint_uri} failed after {self._attempts} "
                f"attempts: {type(exc).__name__}: {exc}"
            ) from exc


class _NonceBook:
    """Per-sender nonce allocation shared by every :class:`LedgerChain` on one ``Web3``.

    A sender's nonces are handed out under its lock, from the larger of the node's pending
    count and the last nonce this process used + 1, so one sender may fire transactions
    back to back (or from several threads) without waiting for each to be mined. The hash
    of the last transaction sent is kept to tell a node that lost it (restart, rollback)
    from one that has not counted it yet.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._next: dict[str, int] = {}
        self._last: dict[str, bytes] = {}

    def lock(self, address: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(address, threading.Lock())

    def peek(self, address: str, pending_count: int) -> int:
        """The nonce to use next (call with the sender's lock held)."""
        return max(pending_count, self._next.get(address, 0))

    def used(self, address: str, nonce: int, tx_hash: bytes) -> None:
        """Record that ``nonce`` was accepted by the node, for transaction ``tx_hash``."""
        self._next[address] = nonce + 1
        self._last[address] = tx_hash

    def last_sent(self, address: str) -> bytes | None:
        """The hash of the last transaction sent from ``address`` with a cached nonce."""
        return self._last.get(address) if address in self._next else None

    def forget(self, address: str) -> None:
        """Drop the cached nonce, e.g. after a rejected send, to re-read it from the node."""
        self._next.pop(address, None)
        self._last.pop(address, None)


def _canonical_type(param: Mapping[str, Any]) -> str:
    """The ABI type of ``param`` as used in signatures (tuples spelt out)."""
    typ = str(param["type"])
    if typ.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){typ[len('tuple'):]}"
    return typ


def _normalise(value: Any) -> Any:
    """ABI-decoded values as plain Python: checksummed addresses, tuples for arrays."""
    if isinstance(value, str) and Web3.is_address(value) and value.startswith("0x"):
        return Web3.to_checksum_address(value)
    if isinstance(value, list | tuple):
        return tuple(_normalise(v) for v in value)
    if isinstance(value, HexBytes):
        return bytes(value)
    return value


def _revert_data(exc: BaseException) -> bytes | None:
    """The raw revert data carried by a web3 / eth-tester exception chain, if any.

    web3 puts it in ``ContractLogicError.data`` (hex) for JSON-RPC nodes; the eth-tester
    provider only keeps it in the message of its ``TransactionFailed``, as a Python bytes
    literal (``execution reverted: b'...'``), which is parsed safely with
    ``ast.literal_eval``. Bytes in any other exception (a ``KeyError`` of a trie node, say)
    are not revert data.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        data = getattr(current, "data", None)
        if isinstance(data, str) and data.startswith("0x"):
            return bytes.fromhex(data[2:])
        if isinstance(data, bytes):
            return data
        tester_failure = isinstance(current, TransactionFailed)
        for arg in current.args:
            if tester_failure and isinstance(arg, bytes):
                return arg
            if tester_failure and isinstance(arg, str):
                match = _BYTES_LITERAL.search(arg)
                if match:
                    literal = ast.literal_eval(match.group(0))
                    if isinstance(literal, bytes):
                        return literal
            if isinstance(arg, Mapping):
                nested = arg.get("data")
                if isinstance(nested, str) and nested.startswith("0x"):
                    return bytes.fromhex(nested[2:])
        current = current.__cause__ or current.__context__
    return None


def _single_pass_gas_estimate(state: Any, transaction: Any) -> int:
    """Estimate gas for py-evm by running the transaction once at the block gas limit.

    py-evm's default estimator binary-searches the limit (~13 EVM runs, over half the cost
    of a transaction on the embedded chain). One run gives the gas used; the 1/64 that
    EIP-150 withholds from calls and the 2,300 that EIP-2200 requires left for SSTORE are
    added back, and the adapter adds its own margin. Reverts raise as with the default.
    """
    maximum = SpoofTransaction(transaction, gas=state.gas_limit, gas_price=0)
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(maximum)
        if computation.is_error:
            raise computation.error
        used = int(transaction.intrinsic_gas) + int(computation.get_gas_used())
    finally:
        state.revert(snapshot)
    return min(int(state.gas_limit), used + used // 63 + 2_300)


class LedgerChain:
    """A client of one ``JointLedger`` contract on one chain, acting as one member (or none).

    Build one with :meth:`embedded` (in-process eth-tester chain), :meth:`from_rpc` (any
    JSON-RPC node) or directly from a ``Web3``. :meth:`deploy` or :meth:`attach` binds it to a
    contract; :meth:`with_account` gives the same chain and contract seen by another sender.
    Writes need an account; reads do not. Writes return once the transaction is mined.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        account: LocalAccount | None = None,
        artifact: ContractArtifact | None = None,
        receipt_timeout: float = 120.0,
        log_range: int | None = None,
        _nonces: _NonceBook | None = None,
        _deployment: Deployment | None = None,
    ) -> None:
        """Wrap ``w3``; ``artifact`` defaults to the committed ``JointLedger`` artifact.

        ``log_range``: the most blocks one event query covers (``None``: any range in one
        query); longer ranges are read page by page. Raises
        :class:`~ledger_node.errors.ArtifactError` if the artifact cannot be loaded.
        """
        if log_range is not None and log_range < 1:
            raise ValueError(f"log_range must be at least 1 block, got {log_range}")
        self._w3 = w3
        self._account = account
        self._artifact = artifact if artifact is not None else load_artifact()
        self._timeout = receipt_timeout
        self._log_range = log_range
        self._nonces = _nonces if _nonces is not None else _NonceBook()
        self._deployment: Deployment | None = None
        self._contract: Contract | None = None
        self._errors = self._error_table(self._artifact.abi)
        self._checksums: dict[str, str] = {}
        self._events_by_topic = {
            keccak(text=f"{e['name']}({','.join(_canonical_type(i) for i in e['inputs'])})"): str(
                e["name"]
            )
            for e in self._artifact.abi
            if e.get("type") == "event"
        }
        if _deployment is not None:
            self._bind(_deployment)

    # ------------------------------------------------------------------ construction

    @classmethod
    def embedded(
        cls, account: LocalAccount | None = None, *, artifact: ContractArtifact | None = None
    ) -> LedgerChain:
        """A fresh in-memory eth-tester (py-evm) chain; its faucet is ETH_TESTER_FAUCET_KEY.

        Its blocks carry the wall clock, ``max(now, parent + 1)``, however long it idles
        (:mod:`ledger_node.chain.tester_chain`).
        """
        tester = memory_tester()
        tester.backend.chain.gas_estimator = _single_pass_gas_estimate
        return cls(Web3(_SerialTesterProvider(tester)), account=account, artifact=artifact)

    @classmethod
    def embedded_on_disk(
        cls,
        path: Path,
        account: LocalAccount | None = None,
        *,
        artifact: ContractArtifact | None = None,
    ) -> LedgerChain:
        """The durable embedded chain stored at ``path`` (created with eth-tester's genesis).

        Every mined block is committed to disk before its transaction hash is returned; a
        reopened store resumes at its head (docs/embedded-chain.md). The open store is
        behind ``w3``; close it with :func:`ledger_node.chain.embedded_store.close_chain_store`.
        Raises :class:`~ledger_node.errors.ChainStoreCorrupt` for a damaged file and
        :class:`ChainError` if another process has it open.
        """
        from ledger_node.chain.embedded_store import open_chain_store

        store = open_chain_store(path)
        store.chain.gas_estimator = _single_pass_gas_estimate
        return cls(Web3(_SerialTesterProvider(store.tester)), account=account,
                   artifact=artifact)

    @classmethod
    def from_rpc(
        cls,
        url: str,
        account: LocalAccount | None = None,
        *,
        artifact: ContractArtifact | None = None,
        request_timeout: float = 30.0,
        receipt_timeout: float = 120.0,
        attempts: int = RPC_ATTEMPTS,
        backoff: float = RPC_BACKOFF_S,
        log_range: int | None = RPC_LOG_RANGE,
        verify: bool | str = True,
        cert: tuple[str, str] | None = None,
    ) -> LedgerChain:
        """A JSON-RPC node at ``url`` (http or https).

        Over https the node's certificate is checked against ``verify`` (a CA bundle file;
        ``True``: the system's CAs) and ``cert`` (certificate and key files) is presented
        to a node that requires a client certificate (mutual TLS): requests' own options,
        e.g. ``**ClientTls(...).requests_options()``. Each request waits ``request_timeout``
        seconds for an answer and is sent up to ``attempts`` times on transport failures,
        ``backoff`` seconds apart at first, then doubling; a transaction not mined within
        ``receipt_timeout`` seconds raises :class:`ChainError` (after the nonce is re-read).
        Event queries cover at most ``log_range`` blocks each (:data:`RPC_LOG_RANGE`).
        Raises :class:`ChainError` if the node does not answer.
        """
        if request_timeout <= 0 or receipt_timeout <= 0 or attempts < 1 or backoff < 0:
            raise ValueError("timeouts must be positive, attempts at least 1, backoff >= 0")
        provider = _RetryingHTTPProvider(url, timeout=request_timeout, attempts=attempts,
                                         backoff=backoff, verify=verify, cert=cert)
        w3 = Web3(provider)
        try:
            _ = w3.eth.chain_id
        except Exception as exc:  # ChainError from the provider, bad JSON ...
            raise ChainError(f"JSON-RPC node at {url} does not answer: {exc}") from exc
        return cls(w3, account=account, artifact=artifact, receipt_timeout=receipt_timeout,
                   log_range=log_range)

    def with_account(self, account: LocalAccount) -> LedgerChain:
        """The same chain and contract, sending as ``account``."""
        return LedgerChain(
            self._w3,
            account=account,
            artifact=self._artifact,
            receipt_timeout=self._timeout,
            log_range=self._log_range,
            _nonces=self._nonces,
            _deployment=self._deployment,
        )

    def attach(self, deployment: Deployment) -> LedgerChain:
        """The same chain and sender, bound to the contract of ``deployment``.

        Raises :class:`DeploymentError` if the chain id differs, there is no code at the
        address, or the deployment was made from a different ABI than the loaded artifact.
        """
        chain = self.with_account(self._account) if self._account else LedgerChain(
            self._w3, artifact=self._artifact, receipt_timeout=self._timeout,
            log_range=self._log_range, _nonces=self._nonces,
        )
        chain._bind(deployment)
        return chain

    def _bind(self, deployment: Deployment) -> None:
        if deployment.chain_id != self.chain_id:
            raise DeploymentError(
                f"deployment is on chain {deployment.chain_id}, connected to {self.chain_id}"
            )
        address = Web3.to_checksum_address(deployment.address)
        if not self._w3.eth.get_code(address):
            raise DeploymentError(f"no contract code at {address} on chain {self.chain_id}")
        if deployment.abi_sha256 != self._artifact.abi_sha256:
            raise DeploymentError(
                f"deployment ABI {deployment.abi_sha256[:16]} differs from the artifact's "
                f"{self._artifact.abi_sha256[:16]}: rebuild or redeploy"
            )
        self._deployment = deployment
        self._contract = self._w3.eth.contract(address=address, abi=list(self._artifact.abi))

    # ------------------------------------------------------------------ basics

    def embedded_tester(self) -> tuple[EthereumTester, AbstractContextManager[Any]]:
        """The in-process chain behind an embedded :class:`LedgerChain`, and the lock its
        provider holds around each request, which whoever else calls into that chain (the
        JSON-RPC server) must hold too. Raises ``TypeError`` for a chain reached by URL."""
        provider = self._w3.provider
        if not isinstance(provider, _SerialTesterProvider):
            raise TypeError("an embedded chain is served in-process only: this LedgerChain "
                            f"uses {type(provider).__name__}")
        return provider.ethereum_tester, provider.serial

    def close(self) -> None:
        """Release what the chain holds open: the SQLite store of a stored embedded chain
        (:meth:`embedded_on_disk`); nothing for the others."""
        from ledger_node.chain.embedded_store import close_chain_store, is_stored_chain

        if is_stored_chain(self._w3):
            close_chain_store(self._w3)

    @property
    def w3(self) -> Web3:
        """The underlying ``Web3`` (for tools and tests; domain code should not need it)."""
        return self._w3

    @property
    def account(self) -> LocalAccount | None:
        """The sending account, if any."""
        return self._account

    @property
    def address(self) -> Address:
        """The sending account's address; raise :class:`ChainError` without an account."""
        return str(self._require_account().address)

    @property
    def deployment(self) -> Deployment:
        """The bound deployment; raise :class:`ChainError` before deploy/attach."""
        if self._deployment is None:
            raise ChainError("no JointLedger deployment bound: call deploy() or attach()")
        return self._deployment

    @functools.cached_property
    def chain_id(self) -> int:
        """The chain id reported by the node (asked once: it is fixed for a chain)."""
        return int(self._w3.eth.chain_id)

    def block_number(self) -> int:
        """The latest block number."""
        return int(self._w3.eth.block_number)

    def head(self) -> tuple[int, int]:
        """The latest block's number and Unix timestamp, read together."""
        block = self._w3.eth.get_block("latest")
        return int(block["number"]), int(block["timestamp"])

    def block_time(self, block: int | None = None) -> int:
        """The Unix timestamp of block number ``block`` (``None``: the latest block)."""
        return int(self._w3.eth.get_block("latest" if block is None else block)["timestamp"])

    def key_history(self, member: Member) -> list[KeyPeriod]:
        """Every SM2 key ``member`` has had registered, oldest first: its key at admission,
        each ``KeyRotated`` new key, and the key of each re-admission after a removal (a
        member never rotated nor re-admitted has one period, its current key)."""
        changes = sorted(
            self.events("KeyRotated", account=member.address)
            + self.events("MemberAdded", account=member.address),
            key=lambda e: (e.block_number, e.log_index))
        periods: list[KeyPeriod] = []
        for event in changes:
            rotated = event.name == "KeyRotated"
            key = bytes(event.args["newKey" if rotated else "publicKey"])
            if not periods:  # the first change: admission, or a rotation of a genesis member
                first = bytes(event.args["oldKey"]) if rotated else key
                periods.append(KeyPeriod(first, None, None))
                if not rotated:
                    continue
            at = self.block_time(event.block_number)
            previous = periods[-1]
            periods[-1] = KeyPeriod(previous.public_key, previous.since, at)
            periods.append(KeyPeriod(key, at, None))
        if not periods:
            return [KeyPeriod(member.public_key, None, None)]
        return periods

    def mined_transaction(self, tx_hash: bytes) -> MinedTransaction | None:
        """Where ``tx_hash`` is mined in the chain as it is now, or ``None`` if it is not
        (never mined, still pending, or lost in a reorganisation or rollback)."""
        try:
            receipt = self._w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None
        if receipt is None or receipt.get("blockNumber") is None:
            return None
        return MinedTransaction(bytes(tx_hash), int(receipt["blockNumber"]),
                                bytes(receipt["blockHash"]), int(receipt["status"]) == 1)

    def balance(self, address: Address) -> int:
        """The ether balance of ``address`` in wei."""
        return int(self._w3.eth.get_balance(Web3.to_checksum_address(address)))

    def dev_faucet(self) -> LocalAccount:
        """The first well-known development key with funds on this chain (eth-tester, anvil).

        For tests, demos and deploy scripts on development chains only. Raises
        :class:`ChainError` when none of DEV_FAUCET_KEYS holds ether here.
        """
        for key in DEV_FAUCET_KEYS:
            account: LocalAccount = Account.from_key(key)
            if self.balance(account.address) > 0:
                return account
        raise ChainError("no funded development faucet account on this chain")

    def fund(self, to: Address, amount_wei: int, faucet: LocalAccount | None = None) -> TxOutcome:
        """Send ``amount_wei`` to ``to`` from ``faucet`` (default: :meth:`dev_faucet`).

        Raises :class:`ChainError` if the transfer fails.
        """
        sender = faucet if faucet is not None else self.dev_faucet()
        tx: dict[str, Any] = {
            "to": Web3.to_checksum_address(to),
            "value": amount_wei,
            "from": sender.address,
            "chainId": self.chain_id,
            "gas": 21_000,
        }
        fee = self._fee_fields()
        tx.update(fee)
        return self._sign_and_send(sender, tx, contract_events=False)[0]

    # ------------------------------------------------------------------ deployment

    def deploy(self, members: Sequence[Member], threshold: int) -> Deployment:
        """Deploy ``JointLedger`` with ``members`` and ``threshold``, sent by this account.

        Binds this object to the new contract and returns its :class:`Deployment`. Raises
        :class:`ContractRevert` for invalid members or threshold (e.g.
        ``Governance_InvalidThreshold``), :class:`ChainError` on other failures.
        """
        account = self._require_account()
        factory = self._w3.eth.contract(
            abi=list(self._artifact.abi), bytecode=HexBytes(self._artifact.bytecode)
        )
        initial = [
            (Web3.to_checksum_address(m.address), int(m.role), m.name, m.public_key)
            for m in members
        ]
        outcome, receipt = self._transact(account, factory.constructor(initial, threshold))
        address = receipt["contractAddress"]
        if address is None:
            raise ChainError("deployment receipt carries no contract address")
        deployment = Deployment(
            chain_id=self.chain_id,
            address=Web3.to_checksum_address(address),
            deploy_block=outcome.block_number,
            abi_sha256=self._artifact.abi_sha256,
        )
        self._bind(deployment)
        return deployment

    # ------------------------------------------------------------------ membership

    def member(self, address: Address) -> Member:
        """The member record of ``address`` (role NONE, inactive if never a member)."""
        raw = self._call(self._fn("member", Web3.to_checksum_address(address)))
        role, active, name, key = raw
        return Member(Web3.to_checksum_address(address), Role(role), name, bytes(key), active)

    def members(self) -> list[Member]:
        """Every address ever admitted, with its current record, in admission order."""
        return [self.member(a) for a in self._call(self._fn("members"))]

    def threshold(self) -> int:
        """The number of approvals a proposal needs now."""
        return int(self._call(self._fn("threshold")))

    def active_voter_count(self) -> int:
        """The number of active platforms and regulators."""
        return int(self._call(self._fn("activeVoterCount")))

    # ------------------------------------------------------------------ governance

    def propose_add_member(
        self, address: Address, role: Role, name: str, public_key: bytes
    ) -> tuple[int, TxOutcome]:
        """Propose admitting a member; return the proposal id and the outcome.

        The proposer's approval counts; with threshold 1 the proposal executes at once.
        """
        fn = self._fn(
            "proposeAddMember", Web3.to_checksum_address(address), int(role), name, public_key
        )
        return self._proposal_tx(fn)

    def propose_remove_member(self, address: Address) -> tuple[int, TxOutcome]:
        """Propose removing (deactivating) a member; return the proposal id and outcome."""
        return self._proposal_tx(
            self._fn("proposeRemoveMember", Web3.to_checksum_address(address))
        )

    def propose_rotate_key(self, address: Address, new_key: bytes) -> tuple[int, TxOutcome]:
        """Propose replacing a member's SM2 key; return the proposal id and outcome."""
        return self._proposal_tx(
            self._fn("proposeRotateKey", Web3.to_checksum_address(address), new_key)
        )

    def propose_threshold_change(self, new_threshold: int) -> tuple[int, TxOutcome]:
        """Propose a new approval threshold; return the proposal id and outcome."""
        return self._proposal_tx(self._fn("proposeThresholdChange", new_threshold))

    def approve(self, proposal_id: int) -> TxOutcome:
        """Approve a proposal; it executes in the same transaction if that reaches M."""
        return self._send(self._fn("approve", proposal_id))

    def execute(self, proposal_id: int) -> TxOutcome:
        """Execute a proposal whose still-valid approvals reach the current threshold."""
        return self._send(self._fn("execute", proposal_id))

    def proposal(self, proposal_id: int) -> Proposal:
        """Proposal ``proposal_id``; ContractRevert ``Governance_UnknownProposal`` if none."""
        raw = self._call(self._fn("proposal", proposal_id))
        kind, proposer, account, role, name, key, new_m, approvers, approvals, executed = raw[:10]
        return Proposal(
            id=proposal_id,
            kind=ProposalKind(kind),
            proposer=Web3.to_checksum_address(proposer),
            account=Web3.to_checksum_address(account),
            role=Role(role),
            name=name,
            public_key=bytes(key),
            new_threshold=int(new_m),
            approvers=tuple(Web3.to_checksum_address(a) for a in approvers),
            approvals=int(approvals),
            executed=bool(executed),
            risk_entry=bytes(raw[10]),
        )

    def proposal_count(self) -> int:
        """The number of proposals ever made (= the latest id)."""
        return int(self._call(self._fn("proposalCount")))

    # ------------------------------------------------------------------ checkpoints

    def anchor_checkpoint(
        self, log_id: bytes, tree_size: int, root: bytes, timestamp: int, signature: bytes
    ) -> TxOutcome:
        """Anchor a checkpoint of log ``log_id`` (32 bytes) in one transaction.

        ``signature`` and ``timestamp`` are carried as given (the SM2 signature is verified
        off chain). Raises :class:`ContractRevert` (``Membership_NotPlatform``,
        ``Checkpoint_NotLogOwner``, ``Checkpoint_TreeSizeNotIncreasing``).
        """
        return self._send(
            self._fn("anchorCheckpoint", log_id, tree_size, root, timestamp, signature),
            gas=ANCHOR_GAS_LIMIT,
        )

    def latest_checkpoint(self, log_id: bytes) -> AnchoredCheckpoint | None:
        """The newest checkpoint of ``log_id``, or ``None`` if it has none."""
        if self.checkpoint_count(log_id) == 0:
            return None
        return self._checkpoint(log_id, self._call(self._fn("latestCheckpoint", log_id)))

    def checkpoint_at(self, log_id: bytes, tree_size: int) -> AnchoredCheckpoint:
        """The checkpoint of ``log_id`` at ``tree_size``.

        Raises :class:`ContractRevert` ``Checkpoint_UnknownTreeSize`` if there is none.
        """
        return self._checkpoint(log_id, self._call(self._fn("checkpointAt", log_id, tree_size)))

    def checkpoint_count(self, log_id: bytes) -> int:
        """How many checkpoints ``log_id`` has."""
        return int(self._call(self._fn("checkpointCount", log_id)))

    def log_owner(self, log_id: bytes) -> Address | None:
        """The platform owning ``log_id``, or ``None`` before its first checkpoint."""
        owner = str(self._call(self._fn("logOwner", log_id)))
        return None if int(owner, 16) == 0 else Web3.to_checksum_address(owner)

    def logs_of(self, platform: Address) -> list[bytes]:
        """The log ids ``platform`` has opened, in order."""
        raw = self._call(self._fn("logsOf", Web3.to_checksum_address(platform)))
        return [bytes(x) for x in raw]

    def checkpoints(self, log_id: bytes) -> list[AnchoredCheckpoint]:
        """The full history of ``log_id``, oldest first, from ``CheckpointAnchored`` events.

        Unlike the views, these carry the SM2 signature and the anchoring transaction.
        """
        events = self.events("CheckpointAnchored", logId=log_id)
        times: dict[int, int] = {}
        history = []
        for e in events:
            if e.block_number not in times:
                times[e.block_number] = int(self._w3.eth.get_block(e.block_number)["timestamp"])
            history.append(
                AnchoredCheckpoint(
                    log_id=bytes(e.args["logId"]),
                    tree_size=int(e.args["treeSize"]),
                    root=bytes(e.args["root"]),
                    timestamp=int(e.args["timestamp"]),
                    block_number=e.block_number,
                    block_time=times[e.block_number],
                    signature=bytes(e.args["signature"]),
                    tx_hash=e.tx_hash,
                )
            )
        return history

    # ------------------------------------------------------------------ direct commitments

    def commit(self, commitment: bytes) -> TxOutcome:
        """Record one 32-byte commitment on chain at once (direct mode).

        Raises :class:`ContractRevert` ``Membership_NotPlatform`` or
        ``Commitment_AlreadyRecorded``.
        """
        return self._send(self._fn("commit", commitment))

    def is_committed(self, commitment: bytes) -> bool:
        """Whether ``commitment`` was recorded directly."""
        return bool(self._call(self._fn("isCommitted", commitment)))

    def commitment_record(self, commitment: bytes) -> CommitmentRecord | None:
        """Who recorded ``commitment`` and when, or ``None`` if nobody did."""
        if not self.is_committed(commitment):
            return None
        platform, block = self._call(self._fn("commitmentRecord", commitment))
        return CommitmentRecord(commitment, Web3.to_checksum_address(platform), int(block))

    def commitment_count(self) -> int:
        """How many commitments were recorded directly."""
        return int(self._call(self._fn("commitmentCount")))

    # ------------------------------------------------------------------ disclosures

    def request_disclosure(
        self, platform: Address, commitment: bytes, case_id: bytes
    ) -> tuple[int, TxOutcome]:
        """As a regulator, log a request that ``platform`` open ``commitment`` for a case.

        Returns the request id and outcome. Raises :class:`ContractRevert`
        (``Membership_NotRegulator``, ``Disclosure_TargetNotPlatform``).
        """
        outcome = self._send(
            self._fn(
                "requestDisclosure", Web3.to_checksum_address(platform), commitment, case_id
            )
        )
        return int(outcome.event("DisclosureRequested").args["requestId"]), outcome

    def fulfil_disclosure(self, request_id: int, response_digest: bytes) -> TxOutcome:
        """As the addressed platform, log the digest of the opening sent off chain.

        Raises :class:`ContractRevert` (``Membership_NotPlatform``,
        ``Disclosure_UnknownRequest``, ``Disclosure_NotAddressee``,
        ``Disclosure_AlreadyFulfilled``).
        """
        return self._send(self._fn("fulfilDisclosure", request_id, response_digest))

    def disclosure_request(self, request_id: int) -> DisclosureRequest:
        """Request ``request_id``; ContractRevert ``Disclosure_UnknownRequest`` if none."""
        raw = self._call(self._fn("disclosureRequest", request_id))
        regulator, requested, platform, fulfilled_block, fulfilled, c, case, digest = raw
        return DisclosureRequest(
            id=request_id,
            regulator=Web3.to_checksum_address(regulator),
            platform=Web3.to_checksum_address(platform),
            commitment=bytes(c),
            case_id=bytes(case),
            requested_block=int(requested),
            fulfilled=bool(fulfilled),
            fulfilled_block=int(fulfilled_block),
            response_digest=bytes(digest),
        )

    def disclosure_request_count(self) -> int:
        """How many disclosure requests were ever made (= the latest id)."""
        return int(self._call(self._fn("disclosureRequestCount")))

    def disclosure_requests(self) -> list[DisclosureRequest]:
        """Every disclosure request, oldest first."""
        return [self.disclosure_request(i) for i in range(1, self.disclosure_request_count() + 1)]

    # ------------------------------------------------------------------ risk-device list

    def set_list_keys(self, epoch: int, ciphertexts: Mapping[Address, bytes]) -> TxOutcome:
        """As a regulator, deliver the key ring of ``epoch`` (the current or the next epoch,
        which this opens): ``ciphertexts`` maps each account to its SM2 ciphertext.

        Raises :class:`ContractRevert` (``Membership_NotRegulator``, ``RiskList_WrongEpoch``,
        ``RiskList_NotKeyHolder``, ``RiskList_EmptyCiphertext``, ``RiskList_KeyAlreadySet``).
        """
        accounts = [Web3.to_checksum_address(a) for a in ciphertexts]
        return self._send(
            self._fn("setListKeys", epoch, accounts, [bytes(c) for c in ciphertexts.values()])
        )

    def list_epoch(self) -> int:
        """The current list-key epoch (0 before the first delivery)."""
        return int(self._call(self._fn("listEpoch")))

    def list_epoch_open(self) -> bool:
        """Whether the current epoch takes new entries."""
        return bool(self._call(self._fn("listEpochOpen")))

    def list_key(self, account: Address, epoch: int) -> bytes | None:
        """The key-ring ciphertext of ``epoch`` delivered to ``account``, or ``None``."""
        raw = bytes(self._call(self._fn("listKey", Web3.to_checksum_address(account), epoch)))
        return raw or None

    def add_risk_device(self, entry: bytes, epoch: int, reason: int) -> TxOutcome:
        """List the 32-byte keyed-hash ``entry``, made under the key of ``epoch``.

        Raises :class:`ContractRevert` (``Membership_NotActiveMember``, ``Membership_NotVoter``,
        ``RiskList_WrongEpoch``, ``RiskList_EpochClosed``, ``RiskList_UnknownReason``,
        ``RiskList_AlreadyListed``).
        """
        return self._send(self._fn("addRiskDevice", entry, epoch, reason))

    def add_risk_devices(
        self, entries: Sequence[bytes], epoch: int, reasons: Sequence[int]
    ) -> TxOutcome:
        """List several entries in one transaction (all or none); as :meth:`add_risk_device`,
        plus ``RiskList_LengthMismatch``."""
        return self._send(
            self._fn("addRiskDevices", [bytes(e) for e in entries], epoch, list(reasons))
        )

    def remove_risk_device(self, entry: bytes) -> TxOutcome:
        """Remove an entry this account listed.

        Raises :class:`ContractRevert` (``Membership_NotActiveMember``, ``Membership_NotVoter``,
        ``RiskList_NotListed``, ``RiskList_NotAdder``).
        """
        return self._send(self._fn("removeRiskDevice", entry))

    def propose_remove_risk_device(self, entry: bytes) -> tuple[int, TxOutcome]:
        """Propose removing any member's entry by governance; return the id and outcome."""
        return self._proposal_tx(self._fn("proposeRemoveRiskDevice", entry))

    def risk_device(self, entry: bytes) -> RiskDeviceRecord | None:
        """The chain's record of ``entry``, or ``None`` if it is not listed."""
        if not bool(self._call(self._fn("isRiskDeviceListed", entry))):
            return None
        adder, reason, epoch, block = self._call(self._fn("riskDevice", entry))
        return RiskDeviceRecord(
            bytes(entry), Web3.to_checksum_address(adder), int(reason), int(epoch), int(block)
        )

    def risk_device_count(self) -> int:
        """How many entries are listed now."""
        return int(self._call(self._fn("riskDeviceCount")))

    def risk_list_events(self, from_block: int, to_block: int) -> list[ChainEvent]:
        """Every risk-list event (:data:`RISK_LIST_EVENTS`) in ``from_block..to_block``, in
        chain order (block, then log index), read with one ``eth_getLogs`` per page of
        blocks."""
        contract = self._require_contract()
        layouts = self._risk_layouts
        topics = [["0x" + t.hex() for t in layouts]]
        raw = [log for low, high in self._block_pages(from_block, to_block)
               for log in self._w3.eth.get_logs({"address": contract.address, "fromBlock": low,
                                                 "toBlock": high, "topics": topics})]
        decoded = []
        for log in raw:
            layout = layouts.get(bytes(log["topics"][0])) if log["topics"] else None
            if layout is not None:
                decoded.append(self._decode_static_log(layout, log))
        decoded.sort(key=lambda e: (e.block_number, e.log_index))
        return decoded

    @functools.cached_property
    def _risk_layouts(self) -> dict[bytes, _EventLayout]:
        """Topic -> layout of each risk-list event, for :meth:`_decode_static_log`."""
        layouts = {}
        for entry in self._artifact.abi:
            if entry.get("type") == "event" and entry["name"] in RISK_LIST_EVENTS:
                types = [_canonical_type(i) for i in entry["inputs"]]
                topic = keccak(text=f"{entry['name']}({','.join(types)})")
                layouts[topic] = _EventLayout(
                    str(entry["name"]),
                    tuple((str(i["name"]), str(i["type"])) for i in entry["inputs"]
                          if i["indexed"]),
                    tuple((str(i["name"]), str(i["type"])) for i in entry["inputs"]
                          if not i["indexed"]),
                )
        return layouts

    def _decode_static_log(self, layout: _EventLayout, log: Any) -> ChainEvent:
        """Decode an event whose inputs are all static types, without web3's per-log
        machinery (ten times faster, which matters when a copy syncs a large list)."""
        args: dict[str, Any] = {}
        for (name, typ), topic in zip(layout.indexed, log["topics"][1:], strict=True):
            args[name] = self._static_value(typ, bytes(topic))
        if layout.data:
            values = abi_decode([t for _, t in layout.data], bytes(log["data"]))
            for (name, typ), value in zip(layout.data, values, strict=True):
                args[name] = self._checksum(value) if typ == "address" else _normalise(value)
        return ChainEvent(
            name=layout.name,
            args=args,
            block_number=int(log["blockNumber"]),
            tx_hash=bytes(log["transactionHash"]),
            log_index=int(log["logIndex"]),
        )

    def _static_value(self, typ: str, word: bytes) -> Any:
        if typ == "address":
            return self._checksum("0x" + word[12:].hex())
        if typ.startswith(("uint", "int")):
            return int.from_bytes(word, "big", signed=typ.startswith("int"))
        return word  # bytes32

    def _checksum(self, address: str) -> str:
        """Checksummed ``address``, memoised (eth_utils hashes it every time)."""
        key = address.lower()
        found = self._checksums.get(key)
        if found is None:
            found = self._checksums.setdefault(key, Web3.to_checksum_address(key))
        return found

    # ------------------------------------------------------------------ events

    def events(
        self,
        name: str,
        from_block: int | None = None,
        *,
        to_block: int | None = None,
        **argument_filters: Any,
    ) -> list[ChainEvent]:
        """Contract events called ``name`` in ``from_block..to_block``.

        The range defaults to the deployment block through the latest block; it is read in
        pages of at most ``log_range`` blocks, oldest first. ``argument_filters`` match
        indexed arguments by their Solidity names, e.g.
        ``events("CheckpointAnchored", logId=log_id)``.
        """
        contract = self._require_contract()
        start = self.deployment.deploy_block if from_block is None else from_block
        end = self.block_number() if to_block is None else to_block
        event = contract.events[name]()
        return [self._event(name, log)
                for low, high in self._block_pages(start, end)
                for log in event.get_logs(from_block=low, to_block=high,
                                          argument_filters=argument_filters or None)]

    def _block_pages(self, start: int, end: int) -> list[tuple[int, int]]:
        """``start..end`` (inclusive) cut into ranges of at most ``log_range`` blocks (one
        range when there is no limit); none when the range is empty (``end < start``)."""
        if end < start:
            return []
        if self._log_range is None:
            return [(start, end)]
        step = self._log_range
        return [(low, min(end, low + step - 1)) for low in range(start, end + 1, step)]

    # ------------------------------------------------------------------ internals

    def _require_account(self) -> LocalAccount:
        if self._account is None:
            raise ChainError("this LedgerChain has no account: use with_account() to send")
        return self._account

    def _require_contract(self) -> Contract:
        if self._contract is None:
            raise ChainError("no JointLedger deployment bound: call deploy() or attach()")
        return self._contract

    def _fn(self, name: str, *args: Any) -> ContractFunction:
        return self._require_contract().functions[name](*args)

    def _call(self, fn: ContractFunction) -> Any:
        """``eth_call`` ``fn``; reverts become :class:`ContractRevert`."""
        try:
            return fn.call()
        except Exception as exc:
            self._raise_decoded(exc, f"call {fn.fn_name}")

    def _send(self, fn: ContractFunction, *, gas: int | None = None) -> TxOutcome:
        return self._transact(self._require_account(), fn, gas=gas)[0]

    def _proposal_tx(self, fn: ContractFunction) -> tuple[int, TxOutcome]:
        outcome = self._send(fn)
        return int(outcome.event("ProposalCreated").args["id"]), outcome

    def _fee_fields(self) -> dict[str, int]:
        """EIP-1559 fee fields from the node's base fee and priority-fee suggestion."""
        base = int(self._w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
        tip = int(self._w3.eth.max_priority_fee)
        return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base + tip}

    def _transact(
        self, account: LocalAccount, fn: Any, *, gas: int | None = None
    ) -> tuple[TxOutcome, TxReceipt]:
        """Estimate (unless ``gas`` is given), sign, send and wait for ``fn``.

        With a fixed ``gas`` nothing is executed before sending; a revert then shows up in
        the mined receipt and is decoded from there, as for any mined failure.
        """
        fields: dict[str, Any] = {"from": account.address, "chainId": self.chain_id}
        if gas is not None:
            fields["gas"] = gas
        try:
            tx = dict(fn.build_transaction(fields))
        except Exception as exc:  # estimate_gas ran the call and it reverted
            self._raise_decoded(exc, "estimate gas")
        if gas is None:
            tx["gas"] = int(tx["gas"]) * _GAS_MARGIN_NUM // _GAS_MARGIN_DEN
        return self._sign_and_send(account, tx, contract_events=True)

    def _sign_and_send(
        self,
        account: LocalAccount,
        tx: dict[str, Any],
        *,
        contract_events: bool,
    ) -> tuple[TxOutcome, TxReceipt]:
        """Sign ``tx`` with a fresh nonce, send it raw and wait for a successful receipt.

        A node answering that it already holds or mined these exact bytes (a re-send after a
        transport timeout) is not an error if it knows the transaction's hash. Raises
        :class:`ChainError` when the node lost this sender's previous transaction (a nonce
        gap: the caller must re-check what it meant to do, then retry) or when the
        transaction is not mined in time; the nonce is re-read from the node afterwards.
        """
        address = str(account.address)
        with self._nonces.lock(address):
            nonce = self._next_nonce(address)
            tx["nonce"] = nonce
            signed = account.sign_transaction(tx)
            tx_hash = bytes(signed.hash)
            try:
                self._w3.eth.send_raw_transaction(signed.raw_transaction)
            except Exception as exc:
                if not (_ALREADY_SENT.search(str(exc)) and self._node_knows(tx_hash)):
                    self._nonces.forget(address)
                    self._raise_decoded(exc, "send transaction")
            self._nonces.used(address, nonce, tx_hash)
        receipt = self._wait_for_receipt(address, nonce, tx_hash)
        if receipt["status"] != 1:
            self._explain_failure(tx, receipt)
        events = self._receipt_events(receipt) if contract_events else ()
        outcome = TxOutcome(
            tx_hash=bytes(tx_hash),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            events=events,
        )
        return outcome, receipt

    def _next_nonce(self, address: str) -> int:
        """The nonce for ``address``'s next transaction (call with its nonce lock held).

        When the cached nonce runs ahead of the node's pending count and the node no longer
        knows the last transaction sent, the node lost it (restarted without its pool, or
        the chain rolled back): the cache is dropped and :class:`ChainError` raised, since
        whatever that transaction did must be re-checked before anything is re-sent.
        """
        pending = int(self._w3.eth.get_transaction_count(address, "pending"))  # type: ignore[arg-type]
        nonce = self._nonces.peek(address, pending)
        last = self._nonces.last_sent(address)
        if nonce > pending and last is not None and not self._node_knows(last):
            self._nonces.forget(address)
            raise ChainError(
                f"nonce gap for {address}: the node's next nonce is {pending}, this process "
                f"sent up to {nonce - 1} but the node lost transaction 0x{last.hex()} "
                "(restart or rollback); re-check and retry"
            )
        return nonce

    def _node_knows(self, tx_hash: bytes) -> bool:
        """Whether the node holds ``tx_hash``, mined or pending."""
        try:
            self._w3.eth.get_transaction(HexBytes(tx_hash))
        except TransactionNotFound:
            return False
        return True

    def _wait_for_receipt(self, address: str, nonce: int, tx_hash: bytes) -> TxReceipt:
        """Poll for ``tx_hash``'s receipt for up to the receipt timeout.

        If it does not come, the sender's mined nonce tells what happened: another
        transaction took the nonce, the node dropped this one, or it is still waiting (for
        a lower nonce that may never come). The nonce cache is dropped in every case and
        :class:`ChainError` raised saying which.
        """
        deadline = time.monotonic() + self._timeout
        pause = _RECEIPT_POLL_FIRST_S
        while True:
            try:
                receipt = self._w3.eth.get_transaction_receipt(HexBytes(tx_hash))
                if receipt is not None and receipt.get("blockNumber") is not None:
                    return receipt
            except TransactionNotFound:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(pause, left))
            pause = min(pause * 2, _RECEIPT_POLL_MAX_S)
        with self._nonces.lock(address):
            self._nonces.forget(address)
        mined = int(self._w3.eth.get_transaction_count(address, "latest"))  # type: ignore[arg-type]
        if mined > nonce:
            found = self.mined_transaction(tx_hash)
            if found is not None:  # mined just after the last poll
                return self._w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            fate = f"another transaction took its nonce {nonce}; it will never be mined"
        elif not self._node_knows(tx_hash):
            fate = f"the node dropped it (nonce {nonce}, the account's mined nonce is {mined})"
        elif mined < nonce:
            fate = (f"it waits behind a nonce gap (nonce {nonce}, the account's mined nonce is "
                    f"{mined})")
        else:
            fate = f"it is still pending (nonce {nonce})"
        _log.warning("transaction 0x%s not mined in %ss: %s", tx_hash.hex(), self._timeout, fate)
        raise ChainError(f"transaction 0x{tx_hash.hex()} not mined in {self._timeout}s: {fate}")

    def _explain_failure(self, tx: Mapping[str, Any], receipt: TxReceipt) -> NoReturn:
        """Replay a mined, failed transaction as a call on the state before its block."""
        call = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
        try:
            self._w3.eth.call(call, int(receipt["blockNumber"]) - 1)  # type: ignore[arg-type]
        except Exception as exc:
            self._raise_decoded(exc, "transaction")
        raise ChainError(f"transaction {receipt['transactionHash'].hex()} failed (status 0)")

    def _raise_decoded(self, exc: Exception, what: str) -> NoReturn:
        """Raise :class:`ContractRevert` for a decodable revert in ``exc``, else ChainError."""
        if isinstance(exc, ChainError):
            raise exc
        data = _revert_data(exc)
        if data is not None and len(data) >= 4:
            raise self._decode_revert(data) from exc
        kind = "" if isinstance(exc, Web3Exception | ValueError | OSError) else " unexpectedly"
        raise ChainError(f"{what} failed{kind}: {exc!r}") from exc

    @staticmethod
    def _error_table(
        abi: Iterable[Mapping[str, Any]],
    ) -> dict[bytes, tuple[str, list[str]]]:
        table: dict[bytes, tuple[str, list[str]]] = {
            _SELECTOR_ERROR_STRING: ("Error", ["string"]),
            _SELECTOR_PANIC: ("Panic", ["uint256"]),
        }
        for entry in abi:
            if entry.get("type") == "error":
                types = [_canonical_type(i) for i in entry["inputs"]]
                selector = keccak(text=f"{entry['name']}({','.join(types)})")[:4]
                table[selector] = (str(entry["name"]), types)
        return table

    def _decode_revert(self, data: bytes) -> ContractRevert | ChainError:
        """The :class:`ContractRevert` for raw revert ``data`` (selector + ABI args)."""
        known = self._errors.get(data[:4])
        if known is None:
            return ChainError(f"reverted with unknown error data 0x{data.hex()}")
        name, types = known
        try:
            args = abi_decode(types, data[4:])
        except Exception as exc:  # eth_abi DecodingError and friends
            return ChainError(f"undecodable {name} revert data 0x{data.hex()}: {exc}")
        return ContractRevert(name, tuple(_normalise(a) for a in args))

    def _receipt_events(self, receipt: TxReceipt) -> tuple[ChainEvent, ...]:
        contract = self._contract
        found = []
        for log in receipt["logs"]:
            if contract is not None and log["address"] != contract.address:
                continue
            if not log["topics"]:
                continue
            name = self._events_by_topic.get(bytes(log["topics"][0]))
            if name is None:
                continue
            if contract is None:  # constructor events: decode with a throwaway binding
                contract = self._w3.eth.contract(
                    address=log["address"], abi=list(self._artifact.abi)
                )
            found.append(self._event(name, contract.events[name]().process_log(log)))
        return tuple(found)

    def _event(self, name: str, log: Any) -> ChainEvent:
        return ChainEvent(
            name=name,
            args={k: _normalise(v) for k, v in dict(log["args"]).items()},
            block_number=int(log["blockNumber"]),
            tx_hash=bytes(log["transactionHash"]),
            log_index=int(log["logIndex"]),
        )

    def _checkpoint(self, log_id: bytes, raw: Sequence[Any]) -> AnchoredCheckpoint:
        tree_size, timestamp, block_number, block_time, root = raw
        return AnchoredCheckpoint(
            log_id=bytes(log_id),
            tree_size=int(tree_size),
            root=bytes(root),
            timestamp=int(timestamp),
            block_number=int(block_number),
            block_time=int(block_time),
        )
