"""The embedded chain served as standard Ethereum JSON-RPC (ledger_node.chain.rpc_server).

Everything goes over real HTTP on 127.0.0.1: LedgerChain clients through ``from_rpc``, raw
``httpx`` posts for the wire format (checked against a real anvil node), every refused
method and every malformed request. The whole contract behaviour suite also runs through
the server (``TestContractSuiteThroughServer``).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from test_contracts import ContractBehaviour
from web3 import Web3

from ledger_node.chain.adapter import ETH_TESTER_FAUCET_KEY, Deployment, LedgerChain, Role
from ledger_node.chain.contracts import load_artifact
from ledger_node.chain.rpc_server import MAX_BATCH, ChainServer
from ledger_node.cli.chain import run_chain
from ledger_node.demo.localsite import free_ports
from ledger_node.demo.run import Party, new_party
from ledger_node.errors import ChainError, ContractRevert
from ledger_node.jsonlimits import json_nested_deeper_than

ETHER = 10**18
ABI = list(load_artifact().abi)
QUANTITY = re.compile(r"^0x(0|[1-9a-f][0-9a-f]*)$")
DATA = re.compile(r"^0x([0-9a-f]{2})*$")


# ---------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def server() -> Iterator[ChainServer]:
    """A fresh embedded chain served on a free local port for this module."""
    chain = LedgerChain.embedded()
    with ChainServer(chain) as running:
        yield running


@dataclass(frozen=True)
class Network:
    """A consortium deployed through the server; one LedgerChain client per member node."""

    deployment: Deployment
    unionpay: LedgerChain
    wechat: LedgerChain
    regulator: LedgerChain
    parties: dict[str, Party]


def node(url: str, party: Party, deployment: Deployment) -> LedgerChain:
    """A member's own client, as its node builds it with --rpc-url (its own Web3)."""
    return LedgerChain.from_rpc(url, party.account).attach(deployment)


@pytest.fixture(scope="module")
def network(server: ChainServer) -> Network:
    """Two platforms and a regulator, funded and registered through the server."""
    admin = LedgerChain.from_rpc(server.url)
    parties = {
        "unionpay": new_party("unionpay", Role.PLATFORM),
        "wechat": new_party("wechatpay", Role.PLATFORM),
        "pboc": new_party("pboc", Role.REGULATOR),
    }
    faucet = Account.from_key(ETH_TESTER_FAUCET_KEY)
    for party in parties.values():
        admin.fund(party.account.address, ETHER, faucet)
    deployer = admin.with_account(parties["unionpay"].account)
    deployment = deployer.deploy([p.as_member() for p in parties.values()], threshold=2)
    return Network(
        deployment=deployment,
        unionpay=node(server.url, parties["unionpay"], deployment),
        wechat=node(server.url, parties["wechat"], deployment),
        regulator=node(server.url, parties["pboc"], deployment),
        parties=parties,
    )


def rpc(url: str, method: str, *params: Any) -> dict[str, Any]:
    """POST one JSON-RPC call; return the whole response object (HTTP 200 asserted)."""
    response = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 7, "method": method, "params": list(params)}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["jsonrpc"] == "2.0" and answer["id"] == 7
    return answer


def result(url: str, method: str, *params: Any) -> Any:
    """The result of one call; fail with the error object if there is one."""
    answer = rpc(url, method, *params)
    assert "error" not in answer, answer
    return answer["result"]


def error(url: str, method: str, *params: Any) -> dict[str, Any]:
    """The error object of one call; fail if it succeeded."""
    answer = rpc(url, method, *params)
    assert "result" not in answer, answer
    err: dict[str, Any] = answer["error"]
    return err


def post_raw(url: str, body: bytes) -> httpx.Response:
    return httpx.post(url, content=body, headers={"Content-Type": "application/json"})


def b32(label: str) -> bytes:
    return label.encode().ljust(32, b"\0")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 (below the ephemeral range: see ``free_ports``)."""
    return free_ports(1)


# ---------------------------------------------------------------------- LedgerChain over HTTP


def test_members_anchor_and_read_back_checkpoints_through_the_server(network: Network) -> None:
    log = b32("served-log")
    first = network.unionpay.anchor_checkpoint(log, 3, b32("root3"), 1_000, os.urandom(64))
    network.unionpay.anchor_checkpoint(log, 8, b32("root8"), 2_000, b"sig8")

    assert [m.name for m in network.regulator.members()] == ["unionpay", "wechatpay", "pboc"]
    assert network.regulator.checkpoint_at(log, 3).root == b32("root3")
    latest = network.regulator.latest_checkpoint(log)
    assert latest is not None and (latest.tree_size, latest.root) == (8, b32("root8"))
    history = network.regulator.checkpoints(log)  # CheckpointAnchored events via eth_getLogs
    assert [(h.tree_size, h.signature) for h in history][1] == (8, b"sig8")
    assert history[0].tx_hash == first.tx_hash
    assert network.regulator.log_owner(log) == network.parties["unionpay"].account.address


def test_custom_errors_decode_through_the_server(network: Network) -> None:
    log = b32("revert-log")
    network.unionpay.anchor_checkpoint(log, 5, b32("r"), 1, b"s")
    # eth_estimateGas reverts (a write)
    with pytest.raises(ContractRevert) as not_increasing:
        network.unionpay.anchor_checkpoint(log, 5, b32("r"), 1, b"s")
    assert not_increasing.value.name == "Checkpoint_TreeSizeNotIncreasing"
    assert not_increasing.value.error_args == (log, 5, 5)
    # eth_call reverts (a view)
    with pytest.raises(ContractRevert) as unknown:
        network.regulator.checkpoint_at(log, 6)
    assert unknown.value.name == "Checkpoint_UnknownTreeSize"
    # a revert naming addresses: another platform's log
    with pytest.raises(ContractRevert) as not_owner:
        network.wechat.anchor_checkpoint(log, 9, b32("r"), 1, b"s")
    assert not_owner.value.name == "Checkpoint_NotLogOwner"
    assert not_owner.value.error_args[1:] == (
        network.parties["unionpay"].account.address,
        network.parties["wechat"].account.address,
    )
    with pytest.raises(ContractRevert) as not_platform:
        network.regulator.anchor_checkpoint(b32("pboc-log"), 1, b32("r"), 1, b"s")
    assert not_platform.value.name == "Membership_NotPlatform"


def test_two_member_nodes_see_one_chain(server: ChainServer, network: Network) -> None:
    a_log, b_log = b32("node-a"), b32("node-b")
    outcome = network.unionpay.anchor_checkpoint(a_log, 1, b32("a1"), 1, b"a")
    assert network.wechat.checkpoint_at(a_log, 1).block_number == outcome.block_number
    network.wechat.anchor_checkpoint(b_log, 4, b32("b4"), 2, b"b")
    assert network.unionpay.checkpoint_at(b_log, 4).root == b32("b4")
    assert network.unionpay.block_number() == network.wechat.block_number()
    plain = Web3(Web3.HTTPProvider(server.url))  # an ordinary web3 client, no LedgerChain
    assert plain.eth.get_block("latest")["number"] == network.unionpay.block_number()
    assert plain.eth.get_transaction_receipt(outcome.tx_hash)["status"] == 1


def test_unfunded_readers_can_call(server: ChainServer, network: Network) -> None:
    """An auditor without ether reads the contract: eth_call runs costless, as in geth."""
    reader = LedgerChain.from_rpc(server.url, Account.create()).attach(network.deployment)
    assert reader.balance(reader.address) == 0
    assert reader.threshold() == 2
    assert len(reader.members()) == 3


def test_concurrent_clients_are_serialised(server: ChainServer, network: Network) -> None:
    """Reads from several threads while two nodes anchor: every request is answered."""
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            client = LedgerChain.from_rpc(server.url).attach(network.deployment)
            for _ in range(10):
                client.members()
                client.block_number()
        except BaseException as exc:  # reported below
            failures.append(exc)

    def anchor(chain: LedgerChain, log: bytes) -> None:
        try:
            for size in (1, 2, 3):
                chain.anchor_checkpoint(log, size, b32(f"r{size}"), size, b"s")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    threads += [
        threading.Thread(target=anchor, args=(network.unionpay, b32("conc-a"))),
        threading.Thread(target=anchor, args=(network.wechat, b32("conc-b"))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert network.regulator.checkpoint_count(b32("conc-a")) == 3
    assert network.regulator.checkpoint_count(b32("conc-b")) == 3


class TestContractSuiteThroughServer(ContractBehaviour):
    """The whole contract behaviour suite, every call and transaction over the server."""

    @pytest.fixture(scope="class")
    @classmethod
    def chain(cls, server: ChainServer) -> LedgerChain:
        return LedgerChain.from_rpc(server.url)


# ---------------------------------------------------------------------- eth_getLogs


def test_get_logs_filters(server: ChainServer, network: Network) -> None:
    log_a, log_b = b32("logs-a"), b32("logs-b")
    first = network.unionpay.anchor_checkpoint(log_a, 1, b32("a"), 1, b"a")
    network.wechat.anchor_checkpoint(log_b, 1, b32("b"), 1, b"b")
    topic_a, topic_b = "0x" + log_a.hex(), "0x" + log_b.hex()
    address = network.deployment.address
    start = hex(network.deployment.deploy_block)

    by_log = result(server.url, "eth_getLogs", {"fromBlock": start, "topics": [None, topic_a]})
    assert {entry["transactionHash"] for entry in by_log} == {"0x" + first.tx_hash.hex()}
    either = result(
        server.url,
        "eth_getLogs",
        {"fromBlock": start, "address": [address], "topics": [None, [topic_a, topic_b]]},
    )
    assert {entry["topics"][1] for entry in either} == {topic_a, topic_b}
    in_block = result(
        server.url, "eth_getLogs", {"blockHash": by_log[0]["blockHash"], "address": address}
    )
    assert {entry["blockNumber"] for entry in in_block} == {hex(first.block_number)}
    receipt = result(server.url, "eth_getTransactionReceipt", "0x" + first.tx_hash.hex())
    assert receipt["logs"] == in_block  # one transaction per block: the same log objects
    single = result(
        server.url,
        "eth_getLogs",
        {"fromBlock": hex(first.block_number), "toBlock": hex(first.block_number)},
    )
    assert single and all(e["blockNumber"] == hex(first.block_number) for e in single)
    elsewhere = "0x" + "12" * 20
    assert result(server.url, "eth_getLogs", {"fromBlock": start, "address": elsewhere}) == []
    for entry in either:
        assert entry["address"] == address.lower() and entry["removed"] is False
        assert QUANTITY.match(entry["logIndex"]) and DATA.match(entry["data"])

    backwards = {"fromBlock": hex(first.block_number), "toBlock": start}
    assert error(server.url, "eth_getLogs", backwards)["code"] == -32602
    both = {"blockHash": by_log[0]["blockHash"], "fromBlock": start}
    assert error(server.url, "eth_getLogs", both)["code"] == -32602
    assert error(server.url, "eth_getLogs", {"topics": ["0x12"]})["code"] == -32602
    assert error(server.url, "eth_getLogs", {"address": "0xnope"})["code"] == -32602
    unknown_hash = {"blockHash": "0x" + "ab" * 32}
    assert error(server.url, "eth_getLogs", unknown_hash)["code"] == -32000


# ---------------------------------------------------------------------- refusals


def test_eth_accounts_offers_no_unlocked_account(server: ChainServer) -> None:
    assert result(server.url, "eth_accounts") == []


@pytest.mark.parametrize(
    ("method", "params", "reason"),
    [
        ("eth_sendTransaction", [{"from": "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"}], "keys"),
        ("eth_sign", ["0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf", "0x00"], "keys"),
        ("eth_signTransaction", [{}], "keys"),
        ("eth_signTypedData_v4", ["0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf", {}], "keys"),
        ("personal_unlockAccount", ["0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf", ""], "keys"),
        ("personal_sendTransaction", [{}, ""], "keys"),
        ("personal_importRawKey", ["00" * 32, ""], "keys"),
        ("evm_mine", [], "mine"),
        ("evm_snapshot", [], "rewind"),
        ("evm_revert", ["0x1"], "rewind"),
        ("testing_timeTravel", [1], "clock"),
        ("debug_traceTransaction", ["0x" + "00" * 32], "public API"),
        ("admin_peers", [], "public API"),
        ("miner_start", [], "block production"),
        ("txpool_content", [], "public API"),
        ("anvil_setBalance", ["0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf", "0x1"], "rewrite"),
        ("hardhat_impersonateAccount", ["0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"], "rewrite"),
        ("eth_getProof", ["0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf", [], "latest"], None),
        ("web3_sha3", ["0x00"], None),
        ("no_such_method", [], None),
    ],
)
def test_methods_outside_the_allow_list_are_refused(
    server: ChainServer, method: str, params: list[Any], reason: str | None
) -> None:
    """In geth's words, which clients recognise (ethers falls back to polling on them),
    with the reason a method is refused as ``data`` (issue 14 changed the wording)."""
    height = result(server.url, "eth_blockNumber")
    err = error(server.url, method, *params)
    assert err["code"] == -32601
    assert err["message"] == f"the method {method} does not exist/is not available"
    if reason is None:
        assert "data" not in err
    else:
        assert reason in err["data"]
    assert result(server.url, "eth_blockNumber") == height  # nothing was mined or rewound


def test_send_raw_transaction_rejections(server: ChainServer, network: Network) -> None:
    chain_id = int(result(server.url, "eth_chainId"), 16)
    sender = network.parties["unionpay"].account  # the deployer: it has sent transactions
    base = {"to": "0x" + "12" * 20, "value": 1, "gas": 21_000, "gasPrice": 10**10}
    used = int(result(server.url, "eth_getTransactionCount", sender.address, "latest"), 16)
    assert used > 0
    stale = sender.sign_transaction({**base, "chainId": chain_id, "nonce": 0})
    err = error(server.url, "eth_sendRawTransaction", "0x" + stale.raw_transaction.hex())
    assert err["code"] == -32000 and "nonce" in err["message"].lower()
    # legacy transaction without EIP-155 chain id: replayable elsewhere, refused as geth does
    unprotected = sender.sign_transaction({**base, "nonce": used})
    err = error(server.url, "eth_sendRawTransaction", "0x" + unprotected.raw_transaction.hex())
    assert err["code"] == -32000 and "EIP-155" in err["message"]
    wrong_chain = sender.sign_transaction({**base, "chainId": chain_id + 1, "nonce": used})
    err = error(server.url, "eth_sendRawTransaction", "0x" + wrong_chain.raw_transaction.hex())
    assert err["code"] in (-32000, -32602)
    broke = Account.create().sign_transaction({**base, "chainId": chain_id, "nonce": 0})
    err = error(server.url, "eth_sendRawTransaction", "0x" + broke.raw_transaction.hex())
    assert err["code"] == -32000
    assert error(server.url, "eth_sendRawTransaction", "0xc0ffee")["code"] == -32602
    assert error(server.url, "eth_sendRawTransaction", "0x02ff")["code"] == -32602
    assert error(server.url, "eth_sendRawTransaction", "0x")["code"] == -32602
    assert error(server.url, "eth_sendRawTransaction", "beef")["code"] == -32602
    assert int(result(server.url, "eth_getTransactionCount", sender.address), 16) == used


def test_raw_transaction_signed_by_the_caller_is_accepted(
    server: ChainServer, network: Network
) -> None:
    chain_id = int(result(server.url, "eth_chainId"), 16)
    sender = network.parties["pboc"].account
    nonce = int(result(server.url, "eth_getTransactionCount", sender.address, "pending"), 16)
    price = int(result(server.url, "eth_gasPrice"), 16)
    signed = sender.sign_transaction(
        {"to": "0x" + "34" * 20, "value": 5, "gas": 21_000, "gasPrice": price,
         "chainId": chain_id, "nonce": nonce}
    )  # fmt: skip
    tx_hash = result(server.url, "eth_sendRawTransaction", "0x" + signed.raw_transaction.hex())
    assert tx_hash == "0x" + signed.hash.hex()
    receipt = result(server.url, "eth_getTransactionReceipt", tx_hash)
    assert receipt["status"] == "0x1" and receipt["type"] == "0x0"
    assert result(server.url, "eth_getBalance", "0x" + "34" * 20, "latest") == "0x5"
    tx = result(server.url, "eth_getTransactionByHash", tx_hash)
    assert tx["gasPrice"] == hex(price) and tx["to"] == "0x" + "34" * 20


# ---------------------------------------------------------------------- malformed requests


def test_malformed_requests_get_standard_errors(server: ChainServer) -> None:
    def only_error(body: bytes) -> dict[str, Any]:
        response = post_raw(server.url, body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        assert answer["jsonrpc"] == "2.0" and "result" not in answer
        return answer

    parse = only_error(b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert parse["error"]["code"] == -32700 and parse["id"] is None
    assert only_error(b"\xff\xfe")["error"]["code"] == -32700
    assert only_error(b"[" * 100_000)["error"]["code"] == -32700  # nested too deeply
    version = only_error(b'{"jsonrpc": "1.0", "id": 1, "method": "eth_chainId"}')
    assert version["error"]["code"] == -32600 and version["id"] == 1
    no_version = only_error(b'{"id": 2, "method": "eth_chainId"}')
    assert no_version["error"]["code"] == -32600
    no_method = only_error(b'{"jsonrpc": "2.0", "id": 3}')
    assert no_method["error"]["code"] == -32600 and no_method["id"] == 3
    assert only_error(b'{"jsonrpc": "2.0", "id": 4, "method": 5}')["error"]["code"] == -32600
    assert only_error(b'"eth_chainId"')["error"]["code"] == -32600
    assert only_error(b"[]")["error"]["code"] == -32600
    bad_id = b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "eth_chainId"}'
    assert only_error(bad_id)["error"]["code"] == -32600
    bool_id = b'{"jsonrpc": "2.0", "id": true, "method": "eth_chainId"}'
    assert only_error(bool_id)["error"]["code"] == -32600
    string_id = post_raw(server.url, b'{"jsonrpc": "2.0", "id": "x", "method": "eth_chainId"}')
    assert string_id.json()["id"] == "x" and "result" in string_id.json()
    not_list = b'{"jsonrpc": "2.0", "id": 5, "method": "eth_chainId", "params": {"a": 1}}'
    assert only_error(not_list)["error"]["code"] == -32602
    huge_batch = json.dumps(
        [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(MAX_BATCH + 1)]
    )
    assert only_error(huge_batch.encode())["error"]["code"] == -32600


def test_json_nesting_check() -> None:
    assert json_nested_deeper_than(b"[" * 100_000, 64)
    assert json_nested_deeper_than(b"[" * 65 + b"]" * 65, 64)
    assert not json_nested_deeper_than(b"[" * 64 + b"]" * 64, 64)
    assert not json_nested_deeper_than(b'["' + b"[" * 100 + b'"]', 64)  # inside a string
    assert json_nested_deeper_than(b'["\\\\"' + b"[" * 100, 64)  # escaped backslash
    assert not json_nested_deeper_than(b'["\\"' + b"[" * 100, 64)  # escaped quote
    assert not json_nested_deeper_than(b'["' + b"[" * 100, 64)  # unterminated string
    assert not json_nested_deeper_than(b"[]" * 1000, 64)


def test_bad_params_are_invalid_params(server: ChainServer) -> None:
    cases: list[tuple[str, list[Any]]] = [
        ("eth_getBalance", ["0x1234", "latest"]),
        ("eth_getBalance", ["0x" + "12" * 20, "yesterday"]),
        ("eth_getBalance", ["0x" + "12" * 20, 5]),
        ("eth_getBalance", []),
        ("eth_blockNumber", ["extra"]),
        ("eth_getBlockByNumber", ["latest"]),
        ("eth_getBlockByNumber", ["latest", "yes"]),
        ("eth_getBlockByHash", ["0x12", False]),
        ("eth_getTransactionReceipt", ["0x" + "zz" * 32]),
        ("eth_getStorageAt", ["0x" + "12" * 20, "slot", "latest"]),
        ("eth_call", ["not an object", "latest"]),
        ("eth_call", [{"to": "0x" + "12" * 20, "data": "0x123"}]),
        ("eth_call", [{"to": "0x" + "12" * 20, "data": "0x12", "input": "0x34"}]),
        ("eth_call", [{"to": "0x" + "12" * 20, "gasPrice": "0x1", "maxFeePerGas": "0x1"}]),
        ("eth_estimateGas", [{"to": "0x" + "12" * 20, "value": "-1"}]),
        ("eth_feeHistory", ["0x0", "latest", []]),
        ("eth_feeHistory", ["0x2", "latest", [50, 10]]),
        ("eth_getLogs", ["not a filter"]),
    ]
    for method, params in cases:
        err = error(server.url, method, *params)
        assert err["code"] == -32602, (method, params, err)
        assert err["message"], (method, params)


def test_batches_and_notifications(server: ChainServer) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "eth_chainId"},
        {"jsonrpc": "2.0", "method": "eth_blockNumber"},  # notification: no answer
        {"jsonrpc": "2.0", "id": "b", "method": "eth_sendTransaction", "params": [{}]},
        {"jsonrpc": "2.0", "id": "c", "method": "eth_getBalance", "params": ["0x1"]},
        7,
    ]
    response = post_raw(server.url, json.dumps(batch).encode())
    assert response.status_code == 200
    answers = response.json()
    assert [a.get("id") for a in answers] == ["a", "b", "c", None]
    assert answers[0]["result"] == result(server.url, "eth_chainId")
    assert [a["error"]["code"] for a in answers[1:]] == [-32601, -32602, -32600]
    only_notes = [{"jsonrpc": "2.0", "method": "eth_chainId"}, {"jsonrpc": "2.0", "method": "x"}]
    silent = post_raw(server.url, json.dumps(only_notes).encode())
    assert silent.status_code == 204 and silent.content == b""


def test_http_level_rejections(server: ChainServer) -> None:
    too_big = post_raw(server.url, b" " * (5 * 1024 * 1024 + 1))
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == -32600
    assert "limit" in too_big.json()["error"]["message"]
    get = httpx.get(server.url)
    assert get.status_code == 405 and get.headers["allow"] == "POST"
    assert get.json()["error"]["code"] == -32600

    def chunks() -> Iterator[bytes]:
        yield b'{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}'

    chunked = httpx.post(server.url, content=chunks())
    assert chunked.status_code == 411
    assert result(server.url, "eth_chainId")  # still serving
    as_curl = httpx.post(  # curl -d sends a form content type; Ethereum tools don't care
        server.url,
        content=b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert as_curl.status_code == 200 and QUANTITY.match(as_curl.json()["result"])


def test_small_body_limit_is_configurable() -> None:
    with ChainServer(LedgerChain.embedded(), max_body_bytes=64) as small:
        assert post_raw(small.url, b"[" + b" " * 100 + b"]").status_code == 413
        assert result(small.url, "eth_chainId")


# ---------------------------------------------------------------------- wire format vs anvil


def _anchor_on(chain: LedgerChain) -> tuple[str, int]:
    """Deploy on ``chain`` and anchor once; return the anchoring tx hash and its block."""
    platform = new_party("unionpay", Role.PLATFORM)
    chain.fund(platform.account.address, ETHER)
    deployer = chain.with_account(platform.account)
    deployer.deploy([platform.as_member()], threshold=1)
    outcome = deployer.anchor_checkpoint(b32("wire"), 2, b32("root"), 1, b"sig")
    return "0x" + outcome.tx_hash.hex(), outcome.block_number


ANVIL_ONLY = {"blockTimestamp", "blobGasPrice", "baseFeePerBlobGas", "blobGasUsedRatio"}
"""Fields anvil adds beyond the execution-API spec (newer, optional ones)."""

DATA_FIELDS = {
    "hash", "parentHash", "sha3Uncles", "miner", "stateRoot", "transactionsRoot",
    "receiptsRoot", "logsBloom", "extraData", "mixHash", "withdrawalsRoot",
    "parentBeaconBlockRoot", "requestsHash", "blockHash", "transactionHash", "from", "to",
    "input", "address", "data", "topics", "contractAddress", "transactions",
}  # fmt: skip
"""Fields that are byte strings (DATA); every other 0x-string is a QUANTITY."""


def _same_shape(ours: Any, theirs: Any, where: str, key: str = "", block: bool = False) -> None:
    """Same field names (bar ANVIL_ONLY) and the same DATA / QUANTITY forms as anvil's."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        missing = set(theirs) - set(ours) - ANVIL_ONLY
        assert not missing, f"{where}: fields missing from our answer: {sorted(missing)}"
        extra = set(ours) - set(theirs)
        assert not extra, f"{where}: fields anvil does not send: {sorted(extra)}"
        is_block = "miner" in theirs
        for name in set(theirs) & set(ours):
            _same_shape(ours[name], theirs[name], f"{where}.{name}", name, is_block)
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), (where, ours, theirs)
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _same_shape(a, b, f"{where}[{i}]", key, block)
    elif isinstance(theirs, str) and theirs.startswith("0x"):
        assert isinstance(ours, str), (where, ours)
        if key in DATA_FIELDS or (key == "nonce" and block):
            assert DATA.match(ours) and DATA.match(theirs), (where, ours, theirs)
            if key != "extraData" and key != "input" and key != "data":
                assert len(ours) == len(theirs), (where, ours, theirs)
        else:
            assert QUANTITY.match(ours) and QUANTITY.match(theirs), (where, ours, theirs)
    else:
        assert type(ours) is type(theirs), (where, ours, theirs)


@pytest.mark.anvil
def test_wire_format_matches_anvil(server: ChainServer, anvil_url: str) -> None:
    ours_tx, ours_block = _anchor_on(LedgerChain.from_rpc(server.url))
    anvil_tx, anvil_block = _anchor_on(LedgerChain.from_rpc(anvil_url))
    pairs = [
        ("eth_blockNumber", [], []),
        ("eth_getBlockByNumber", [hex(ours_block), False], [hex(anvil_block), False]),
        ("eth_getBlockByNumber", [hex(ours_block), True], [hex(anvil_block), True]),
        ("eth_getTransactionByHash", [ours_tx], [anvil_tx]),
        ("eth_getTransactionReceipt", [ours_tx], [anvil_tx]),
        ("eth_getLogs", [{"fromBlock": hex(ours_block)}], [{"fromBlock": hex(anvil_block)}]),
        ("eth_feeHistory", ["0x2", "latest", [25, 75]], ["0x2", "latest", [25, 75]]),
        ("eth_gasPrice", [], []),
        ("eth_maxPriorityFeePerGas", [], []),
        ("net_version", [], []),
        ("net_listening", [], []),
        ("eth_syncing", [], []),
        ("eth_getBlockByNumber", ["0xffffff", False], ["0xffffff", False]),
        ("eth_getTransactionReceipt", ["0x" + "00" * 32], ["0x" + "00" * 32]),
    ]
    for method, ours_params, anvil_params in pairs:
        ours = result(server.url, method, *ours_params)
        theirs = result(anvil_url, method, *anvil_params)
        _same_shape(ours, theirs, method)
    receipt = result(server.url, "eth_getTransactionReceipt", ours_tx)
    assert receipt["status"] == "0x1" and receipt["logs"]
    assert int(receipt["logsBloom"], 16) != 0
    block = result(server.url, "eth_getBlockByNumber", hex(ours_block), False)
    assert int(block["logsBloom"], 16) & int(receipt["logsBloom"], 16) == int(
        receipt["logsBloom"], 16
    )
    assert result(server.url, "net_version") == str(int(result(server.url, "eth_chainId"), 16))


@pytest.mark.anvil
def test_revert_errors_match_anvil(server: ChainServer, anvil_url: str) -> None:
    """The same custom-error revert, by eth_call and eth_estimateGas, on both nodes."""
    errors: dict[str, list[dict[str, Any]]] = {}
    for url in (server.url, anvil_url):
        chain = LedgerChain.from_rpc(url)
        platform = new_party("unionpay", Role.PLATFORM)
        chain.fund(platform.account.address, ETHER)
        deployment = chain.with_account(platform.account).deploy(
            [platform.as_member()], threshold=1
        )
        contract = chain.w3.eth.contract(address=deployment.address, abi=ABI)
        data = contract.functions.checkpointAt(b32("none"), 3)._encode_transaction_data()
        call = {"to": deployment.address, "data": data}
        missing = {"to": deployment.address, "data": "0xdeadbeef"}  # no such function
        errors[url] = [
            error(url, "eth_call", call, "latest"),
            error(url, "eth_estimateGas", call),
            error(url, "eth_call", missing, "latest"),
        ]
    ours, theirs = errors[server.url], errors[anvil_url]
    for mine, anvil in zip(ours, theirs, strict=True):
        assert mine["code"] == anvil["code"] == 3
        assert mine["message"] == "execution reverted"
        assert anvil["message"].startswith(mine["message"])
        assert mine.get("data", "0x") == anvil.get("data", "0x")
    selector = "0x" + keccak(text="Checkpoint_UnknownTreeSize(bytes32,uint64)")[:4].hex()
    assert ours[0]["data"].startswith(selector)


# ---------------------------------------------------------------------- reads and encodings


def test_read_methods(server: ChainServer, network: Network) -> None:
    url = server.url
    address = network.deployment.address
    head = int(result(url, "eth_blockNumber"), 16)
    assert result(url, "net_listening") is True and result(url, "eth_syncing") is False
    assert "JointLedger" in result(url, "web3_clientVersion")
    code = result(url, "eth_getCode", address, "latest")
    assert DATA.match(code) and len(code) > 1000
    assert result(url, "eth_getCode", address, "0x0") == "0x"  # not deployed yet at genesis
    slot = result(url, "eth_getStorageAt", address, "0x0", "latest")
    assert DATA.match(slot) and len(slot) == 66
    balance = result(url, "eth_getBalance", network.parties["pboc"].account.address, "latest")
    assert QUANTITY.match(balance) and int(balance, 16) > 0
    assert result(url, "eth_getBalance", address, {"blockNumber": hex(head)}) == "0x0"
    block = result(url, "eth_getBlockByNumber", hex(head), False)
    assert result(url, "eth_getBlockByHash", block["hash"], False) == block
    by_hash = result(url, "eth_getBalance", address, {"blockHash": block["hash"]})
    assert by_hash == "0x0"
    assert result(url, "eth_getBlockByHash", "0x" + "00" * 32, False) is None
    assert result(url, "eth_getTransactionByHash", "0x" + "00" * 32) is None
    assert error(url, "eth_getBalance", address, hex(head + 100))["code"] == -32000
    assert error(url, "eth_call", {"to": address}, hex(head + 100))["code"] == -32000
    history = result(url, "eth_feeHistory", "0x3", "latest")
    assert history["oldestBlock"] == hex(head - 2)
    assert len(history["baseFeePerGas"]) == 4 and len(history["gasUsedRatio"]) == 3
    assert "reward" not in history
    tip = int(result(url, "eth_maxPriorityFeePerGas"), 16)
    assert int(result(url, "eth_gasPrice"), 16) > tip > 0
    funded = network.parties["pboc"].account.address
    transfer = {"to": "0x" + "12" * 20, "value": "0x1", "from": funded}
    assert int(result(url, "eth_estimateGas", transfer), 16) >= 21_000
    broke = {**transfer, "from": address}  # the contract holds no ether to send
    assert error(url, "eth_estimateGas", broke)["code"] == -32000


# ---------------------------------------------------------------------- lifecycle


def test_constructor_rejections() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ChainServer(LedgerChain.embedded(), host="0.0.0.0")
    with pytest.raises(TypeError, match="in-process only"):
        ChainServer(LedgerChain(Web3(Web3.HTTPProvider("http://127.0.0.1:9"))))


def test_stop_closes_the_port_and_open_connections() -> None:
    server = ChainServer(LedgerChain.embedded())
    server.start()
    with pytest.raises(RuntimeError):
        server.start()
    with httpx.Client() as keep_alive:
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}
        assert keep_alive.post(server.url, json=body).status_code == 200
        server.stop()
        server.stop()  # idempotent
        with pytest.raises(httpx.TransportError):
            keep_alive.post(server.url, json=body)
    with pytest.raises(ChainError):
        LedgerChain.from_rpc(server.url, request_timeout=2)
    with pytest.raises(RuntimeError):
        server.start()


def test_jointledger_chain_prints_url_chain_id_and_faucet_key() -> None:
    lines: list[str] = []
    stop = threading.Event()
    port = free_port()
    thread = threading.Thread(
        target=run_chain,
        args=("127.0.0.1", port),
        kwargs={"echo": lines.append, "stop": stop},
    )
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            if lines:
                break
            stop.wait(0.05)
        client = LedgerChain.from_rpc(url)
        faucet = client.dev_faucet()
        assert faucet.key.hex().endswith("01")
        text = "\n".join(lines)
        assert url in text and str(client.chain_id) in text and ETH_TESTER_FAUCET_KEY in text
    finally:
        stop.set()
        thread.join()
    assert "stopped" in lines[-1]


def test_the_server_holds_the_embedded_providers_own_lock() -> None:
    """In-process users of the chain and the server's clients are served one at a time."""
    chain = LedgerChain.embedded()
    with ChainServer(chain) as server:
        assert server.lock is chain.embedded_tester()[1]
