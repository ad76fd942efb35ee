"""Unit tests of LedgerChain's chain-independent parts: revert decoding and file handling."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from eth_abi.abi import encode
from eth_tester.exceptions import TransactionFailed
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import ContractCustomError

from ledger_node.chain.adapter import Deployment, LedgerChain, Role, _revert_data
from ledger_node.crypto.gmcrypto import generate_private_key
from ledger_node.errors import ChainError, ContractRevert, DeploymentError
from tests.api_support import make_consortium

OWNER = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
CALLER = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
NOT_LOG_OWNER = keccak(text="Checkpoint_NotLogOwner(bytes32,address,address)")[:4] + encode(
    ["bytes32", "address", "address"], [b"\x01" * 32, OWNER, CALLER]
)


@pytest.fixture
def offline() -> LedgerChain:
    """A LedgerChain that never reaches a node (decoding needs only the ABI)."""
    return LedgerChain(Web3())


def test_revert_data_from_json_rpc_error() -> None:
    exc = ContractCustomError("0x" + NOT_LOG_OWNER.hex(), data="0x" + NOT_LOG_OWNER.hex())
    assert _revert_data(exc) == NOT_LOG_OWNER


def test_revert_data_from_eth_tester_message_and_chained() -> None:
    inner = TransactionFailed(f"execution reverted: {NOT_LOG_OWNER!r}")
    try:
        try:
            raise inner
        except TransactionFailed as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        assert _revert_data(outer) == NOT_LOG_OWNER
    assert _revert_data(RuntimeError("no data here")) is None


def test_bytes_in_other_exceptions_are_not_revert_data() -> None:
    """py-evm's KeyError of a missing trie node carries a 32-byte hash: once taken for
    revert data, it surfaced as "reverted with unknown error data"."""
    node_hash = keccak(text="a trie node")
    assert _revert_data(KeyError(node_hash)) is None
    assert _revert_data(ValueError(f"missing node {node_hash!r}")) is None
    try:
        try:
            raise KeyError(node_hash)
        except KeyError as exc:
            raise RuntimeError("while sending") from exc
    except RuntimeError as outer:
        assert _revert_data(outer) is None
    assert _revert_data(TransactionFailed(NOT_LOG_OWNER)) == NOT_LOG_OWNER


def test_custom_error_is_decoded_with_checksummed_args(offline: LedgerChain) -> None:
    error = offline._decode_revert(NOT_LOG_OWNER)
    assert isinstance(error, ContractRevert)
    assert error.name == "Checkpoint_NotLogOwner"
    assert error.error_args == (b"\x01" * 32, OWNER, CALLER)


def test_builtin_errors_and_unknown_selectors(offline: LedgerChain) -> None:
    reason = bytes.fromhex("08c379a0") + encode(["string"], ["no"])
    decoded = offline._decode_revert(reason)
    assert isinstance(decoded, ContractRevert)
    assert (decoded.name, decoded.error_args) == ("Error", ("no",))
    panic = offline._decode_revert(bytes.fromhex("4e487b71") + encode(["uint256"], [0x11]))
    assert isinstance(panic, ContractRevert)
    assert (panic.name, panic.error_args) == ("Panic", (0x11,))
    unknown = offline._decode_revert(b"\xde\xad\xbe\xef")
    assert type(unknown) is ChainError
    truncated = offline._decode_revert(NOT_LOG_OWNER[:20])
    assert type(truncated) is ChainError


def test_unreachable_rpc_node_is_a_chain_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ChainError, match="does not answer"):
        LedgerChain.from_rpc(f"http://127.0.0.1:{port}", request_timeout=2)


def test_malformed_deployment_file(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    path.write_text('{"chainId": 1}')
    with pytest.raises(DeploymentError, match="malformed"):
        Deployment.load(path)


def test_reads_need_a_deployment(offline: LedgerChain) -> None:
    with pytest.raises(ChainError, match="no JointLedger deployment"):
        offline.threshold()


def test_key_history_follows_rotations_and_re_admissions() -> None:
    """Every key a member had registered: at admission, after each rotation and after a
    re-admission with a new key (which emits MemberAdded, not KeyRotated)."""
    c = make_consortium(LedgerChain.embedded())
    union = c.as_party(c.unionpay)
    address = c.wechatpay.account.address
    first = c.chain.member(address).public_key
    assert [p.public_key for p in c.chain.key_history(c.chain.member(address))] == [first]
    rotated, readmitted = (generate_private_key().public_key().raw for _ in range(2))
    proposal, _ = c.chain.propose_rotate_key(address, rotated)
    union.approve(proposal)
    proposal, _ = c.chain.propose_remove_member(address)
    union.approve(proposal)
    proposal, _ = c.chain.propose_add_member(address, Role.PLATFORM, "wechatpay", readmitted)
    union.approve(proposal)
    history = c.chain.key_history(c.chain.member(address))
    assert [p.public_key for p in history] == [first, rotated, readmitted]
    assert history[0].since is None and history[-1].until is None
    assert all(a.until == b.since and b.since is not None
               for a, b in zip(history, history[1:], strict=False))
