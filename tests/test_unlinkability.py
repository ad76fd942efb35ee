"""Unlinkability audit (PROTOCOL §6, P-unlinkable; issue 4).

Known people, merchants, account tokens, amounts and times are planted in real payment
records, submitted through the platform SDK (escrows sealed for the regulator) to two
platform nodes (unionpay, wechatpay) served over HTTP, whose checkpoints are anchored on a
durable embedded chain (``LedgerChain.embedded_on_disk``) served over JSON-RPC. The
regulator node fetches, verifies and decrypts both logs, traces a person across both
platforms and asks for openings (logged on chain, answered and fulfilled by the platforms).
Then every byte that leaves a platform's domain, except regulator-only data (escrows,
sealed disclosure answers), is collected, channel by channel:

* **chain database**: every key and value of the chain store (headers, bodies with every
  transaction's input, receipts with their logs, the account and storage tries of every
  block, indexes) read back from the closed SQLite file, its meta table and the file's bytes;
* **JSON-RPC**: what any chain client reads: every block with its full transactions, each
  transaction and receipt (logs: topics and data), all logs, the contract's code and its
  first 32 storage slots;
* **contract storage**: the contract's storage enumerated at every block by walking its
  storage trie in the stored state (``trie.NodeIterator`` over the py-evm trie nodes: each
  slot's hashed key and value, as stored and as a 32-byte word). JSON-RPC cannot enumerate
  mapping slots; the raw database pass covers them too;
* **chain traffic**: every JSON-RPC request and answer between all members' nodes and the
  chain server during the run (raw transactions, calls, receipts, log queries);
* **HTTP API** of both nodes: every response (status line, headers, body) a non-regulator
  gets: leaf statuses by index and by hash, proof bundles, checkpoints, consistency proofs,
  verify verdicts, health, metrics, the OpenAPI document and docs page, problem documents
  for bad requests, the member-only reads (batch evidence, the regulator's leaf range,
  disclosure requests and answers) as the public (401), the auditor and the other platform
  (403) get them, and what the platform's own SDK receives.

Text is also searched with every hex string in it decoded. The needles are every planted
value in UTF-8, GBK, hex, decimal, yuan and big-endian integer forms, their plain SM3,
SHA-256 and keccak-256 digests, and the identity keys only escrows may carry
(``tests/linkscan.py``): none may be found. Records of one party (on one platform and
across both) must share no 8-byte run of public bytes beyond the fixed structure every
leaf has. Canaries prove the audit can fail: a leaf whose match tag is the keccak of a
canary name and a disclosure request whose case id is the SM3 of a canary ID number must be
found in every channel they reach. The disclosure requests of one case carry per-request case
references, not the case id, so they do not link the records they name. See
docs/unlinkability.md.

Match tags (issue 6, docs/reconciliation.md): in a second world the planted payments go
through both SDKs with their cross-platform halves tagged, a third platform is admitted, and
every public read of the tagged leaves (statuses, bundles, the summaries endpoint) is scanned
for the clearing references, the amounts, and every tag computable without the two
platforms' pairwise key (the tag inputs and reference/amount concatenations hashed plainly
with SM3, SHA-256 and keccak-256, and HMAC-SM3 under guessable keys and under the third
platform's own pairwise keys). The two halves of a payment, and two payments of one amount,
share no 8-byte run. Positive controls: a leaf with unkeyed tags is found, and the real tags
are found when the scan is given the pairwise key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import rlp  # type: ignore[import-untyped]
from eth_utils.crypto import keccak
from fastapi.testclient import TestClient
from trie.hexary import HexaryTrie
from trie.iter import NodeIterator

from api.main import create_app
from api.server import PlatformServer
from ledger_node.chain.adapter import DisclosureRequest, LedgerChain, Role
from ledger_node.chain.embedded_store import close_chain_store
from ledger_node.chain.rpc_server import ChainServer
from ledger_node.client.sdk import (
    NodeClient,
    PlatformClient,
    RegulatorClient,
    SubmittedRecord,
    registered_platform,
)
from ledger_node.crypto.encoding import encode_parts
from ledger_node.crypto.gmcrypto import SM2PublicKey
from ledger_node.crypto.hashes import sm3
from ledger_node.demo.run import new_party
from ledger_node.http_settings import Settings
from ledger_node.log.checkpoint import log_id_for
from ledger_node.log.leaf import Leaf, leaf_data
from ledger_node.log.merkle import hasher_for
from ledger_node.platform.node import NodeConfig, PlatformNode
from ledger_node.protocol.aml import PartyKind
from ledger_node.protocol.auth import sign_batch, sign_request
from ledger_node.protocol.escrow import (
    ESCROW_SIZE,
    EscrowSealer,
    identity_key,
    is_resident_id,
    is_social_credit_code,
)
from ledger_node.protocol.pairwise import (
    CrossPlatform,
    PairwiseKey,
    Side,
    hmac_sm3,
    pairwise_key,
    record_tags,
)
from ledger_node.protocol.record import Channel, PaymentRecord
from ledger_node.regulator.node import HttpLeafSource, RegulatorConfig, RegulatorNode
from tests.api_support import Consortium, make_consortium
from tests.linkscan import (
    WINDOW,
    Haystack,
    Hit,
    Needle,
    amount_needles,
    chance_hits,
    fixed_positions,
    key_needles,
    shared_runs,
    text_needles,
    time_needles,
    value_segments,
    windows,
    yuan,
)

PLATFORMS = ("unionpay", "wechatpay")
BODY_LIMIT = 1024 * 1024
MAX_CHANCE_HITS = 1e-3  # expected false alarms of the whole audit must stay below this

# ---------------------------------------------------------------------- planted identities

_RESIDENT_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def resident_id(first17: str) -> str:
    """A GB 11643 resident identity number: ``first17`` and its MOD 11-2 check character."""
    total = sum(int(c) * w for c, w in zip(first17, _RESIDENT_WEIGHTS, strict=True))
    return first17 + "10X98765432"[total % 11]


def social_credit_code(head: str, organisation: str) -> str:
    """A GB 32100 unified social credit code from 8 head and 8 organisation-code characters."""
    org_total = sum(int(c, 36) * w  # GB 11714 values letters A..Z as 10..35
                    for c, w in zip(organisation, _ORG_WEIGHTS, strict=True))
    org_check = {10: "X", 11: "0"}.get(11 - org_total % 11, str(11 - org_total % 11))
    first17 = head + organisation + org_check
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return first17 + _USCC_CHARS[(31 - total % 31) % 31]


@dataclass(frozen=True)
class Planted:
    """A planted person or merchant: real-name identity, name, account token per platform."""

    key: str
    name: str
    identity: str
    kind: PartyKind
    tokens: Mapping[str, str]
    aliases: tuple[str, ...] = ()  # short names (a shop sign)

    def needles(self) -> list[Needle]:
        """Every form of everything this party's records could leak."""
        found = (text_needles(f"{self.key} identity", self.identity)
                 + text_needles(f"{self.key} name", self.name)
                 + key_needles(f"{self.key} identity key", identity_key(self.identity)))
        for alias in self.aliases:
            found += text_needles(f"{self.key} short name", alias)
        for platform, token in self.tokens.items():
            found += text_needles(f"{self.key} {platform} account", token)
        return found


PERSONS = (
    Planted("P1", "张伟强", resident_id("11010519850314253"), PartyKind.PERSON,
            {"unionpay": "6217000010085123456", "wechatpay": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}),
    Planted("P2", "王秀英", resident_id("31011519920708472"), PartyKind.PERSON,
            {"unionpay": "6228480402564890018", "wechatpay": "oX3kT0w9Lq2Yz8VbN4cRfGhJ1sEe"}),
    Planted("P3", "欧阳娜娜", resident_id("44030619780921018"), PartyKind.PERSON,
            {"unionpay": "6214830100746251937", "wechatpay": "oAbC7dEfG8hIjK9lMnO0pQrS1tUv"}),
    # A foreign resident known by name and passport (no resident ID): kind given explicitly.
    Planted("P4", "李玛丽", "李玛丽/GBR/533401962", PartyKind.PERSON,
            {"unionpay": "6259650871234509876", "wechatpay": "oZy6Xw5Vu4Ts3Rq2Po1Nm0Lk9Jih"}),
)
MERCHANTS = (
    Planted("M1", "稻香村食品有限责任公司", social_credit_code("91110000", "10110737"),
            PartyKind.INSTITUTION,
            {"unionpay": "商户898110048161234·稻香村王府井店",
             "wechatpay": "wxmch-1230000109-稻香村"}, ("稻香村",)),
    Planted("M2", "杭州西湖龙井茶业有限公司", social_credit_code("91330100", "MA2H7K3Q"),
            PartyKind.INSTITUTION,
            {"unionpay": "商户898330152904711·龙井茶业", "wechatpay": "wxmch-1486203957-西湖龙井"},
            ("龙井茶业", "西湖龙井")),
    Planted("M3", "深圳华强北电子市场管理有限公司", social_credit_code("91440300", "19247053"),
            PartyKind.INSTITUTION,
            {"unionpay": "商户898440358117206·华强北", "wechatpay": "wxmch-1604830251-华强北"},
            ("华强北",)),
)
CANARY = Planted("CANARY", "赵金丝雀", resident_id("12010119700101999"), PartyKind.PERSON,
                 {"wechatpay": "oCanary0000000000000000000000"})
CANARY_AMOUNT = 7_777_777_777_777


def _by_key() -> dict[str, Planted]:
    return {p.key: p for p in PERSONS + MERCHANTS}


# Payments: (payer, payee, platform of the payer's half, platform of the payee's half).
# Same platform twice: an ordinary payment; two platforms: a cross-platform payment whose
# two halves, one per platform, share a clearing reference.
PAYMENTS = (
    *((p.key, m, platform, platform)
      for p in PERSONS
      for m, platform in (("M1", "unionpay"), ("M2", "unionpay"),
                          ("M3", "wechatpay"), ("M1", "wechatpay"))),
    ("P1", "M2", "unionpay", "wechatpay"),
    ("P2", "M3", "wechatpay", "unionpay"),
    ("P4", "M1", "unionpay", "wechatpay"),
    ("P3", "P4", "unionpay", "unionpay"),  # person-to-person transfers
    ("P2", "P1", "wechatpay", "wechatpay"),
)


@dataclass(frozen=True)
class PlantedRecord:
    """One record (one platform's half of a payment) and the parties behind it."""

    payment: int
    record: PaymentRecord
    payer: str
    payee: str


def planted_amount(rng: random.Random, used: set[int]) -> int:
    """A distinctive amount in fen: 10 decimal digits and >= 2^32 (see docs/unlinkability.md).

    Short amounts would match random hex and random bytes by chance; these forms all carry
    >= 40 bits, so a chance match in megabytes of public data stays far below 1e-3.
    """
    while True:
        amount = rng.randrange(2**32, 10**10)
        if amount not in used:
            used.add(amount)
            return amount


def planted_records(seed: int = 20250314) -> list[PlantedRecord]:
    """The records of :data:`PAYMENTS`: one per platform involved, distinctive fields."""
    rng = random.Random(seed)
    parties = _by_key()
    start = datetime(2025, 3, 14, 1, 0, tzinfo=UTC)
    used: set[int] = set()
    planted = []
    for number, (payer, payee, payer_side, payee_side) in enumerate(PAYMENTS):
        amount = planted_amount(rng, used)
        when = start + timedelta(microseconds=rng.randrange(86_400 * 10**6))
        reference = f"NUCC{rng.randrange(10**20):020d}"
        channel = Channel.TRANSFER if payee.startswith("P") else Channel.QR
        for platform in dict.fromkeys((payer_side, payee_side)):
            prefix = "UP" if platform == "unionpay" else "WX"
            record = PaymentRecord(
                platform=platform,
                local_tx_id=f"{prefix}{rng.randrange(10**18):018d}",
                payer_identity=parties[payer].identity,
                payer_account=parties[payer].tokens[payer_side],
                payee_identity=parties[payee].identity,
                payee_account=parties[payee].tokens[payee_side],
                amount_fen=amount,
                currency="CNY",
                time=when,
                channel=channel,
                cross_border=False,
                clearing_ref=reference,
            )
            planted.append(PlantedRecord(number, record, payer, payee))
    return planted


def all_needles(records: list[PlantedRecord]) -> list[Needle]:
    """Every form of every planted value, each byte string once."""
    found: list[Needle] = []
    for party in PERSONS + MERCHANTS:
        found += party.needles()
    for item in records:
        r = item.record
        found += text_needles(f"payment {item.payment} {r.platform} tx id", r.local_tx_id)
        found += text_needles(f"payment {item.payment} clearing ref", r.clearing_ref)
        found += amount_needles(f"payment {item.payment} amount", r.amount_fen)
        found += time_needles(f"payment {item.payment} time", r.time)
    found += text_needles("P4 passport number", "533401962")
    unique: dict[bytes, Needle] = {}
    for needle in found:
        unique.setdefault(needle.data, needle)
    return list(unique.values())


def canary_needles() -> list[Needle]:
    """The canary's needles (it is planted into public data on purpose)."""
    return CANARY.needles() + amount_needles("canary amount", CANARY_AMOUNT)


# ---------------------------------------------------------------------- the world


@dataclass
class Recorder:
    """Every HTTP response the test received, as raw bytes, labelled by who asked."""

    responses: list[tuple[str, bytes]] = field(default_factory=list)

    def client(self, base_url: str, platform: str, viewer: str) -> httpx.Client:
        """An HTTP client of ``platform``'s node whose every response is recorded."""

        def record(response: httpx.Response) -> None:
            response.read()
            request = response.request
            head = f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in response.headers.multi_items())
            label = (f"api {platform} as {viewer}: {request.method} "
                     f"{request.url.raw_path.decode()} -> {response.status_code}")
            self.responses.append((label, head.encode() + b"\r\n" + response.content))

        return httpx.Client(base_url=base_url, timeout=60.0,
                            event_hooks={"response": [record]})


@dataclass
class PublicRecord:
    """What anyone sees of one planted record: its leaf's public values and encodings."""

    planted: PlantedRecord
    index: int
    commitment: bytes
    leaf_hash: bytes
    escrow_digest: bytes
    bundle_leaf: bytes  # the bundle's "leaf" object, as served

    @property
    def values(self) -> list[bytes]:
        """The per-record public values (everything else in its encodings is structure)."""
        return [self.commitment, self.escrow_digest, self.leaf_hash]

    @property
    def encodings(self) -> tuple[bytes, bytes]:
        """The leaf's bytes (what the tree hashes) and the bundle's leaf object."""
        return leaf_data(self.commitment, self.escrow_digest, None, None), self.bundle_leaf


CHANNELS = ("chain database", "JSON-RPC", "contract storage", "chain traffic", "HTTP API")


@dataclass
class World:
    """Everything the audit scans (one haystack per channel), and how to interpret it."""

    records: list[PlantedRecord]
    public: list[PublicRecord]
    needles: list[Needle]
    haystacks: dict[str, Haystack]
    counts: dict[str, int]
    seconds: float
    cases: dict[str, list[DisclosureRequest]]  # the regulator's disclosure requests, by case


def _kinds(record: PaymentRecord) -> tuple[PartyKind, PartyKind]:
    by_identity = {p.identity: p.kind for p in PERSONS + MERCHANTS + (CANARY,)}
    return by_identity[record.payer_identity], by_identity[record.payee_identity]


def _compact(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


class Platform:
    """One platform's running node and HTTP API on the shared chain."""

    def __init__(self, name: str, consortium: Consortium, chain_url: str, store: Path,
                 recorder: Recorder) -> None:
        self.name = name
        self.stopped = False
        self.party = getattr(consortium, name)
        chain = LedgerChain.from_rpc(chain_url, self.party.account).attach(
            consortium.deployment)
        self.node = PlatformNode(NodeConfig(platform=name, store_path=store, seal_interval=0.05),
                                 chain, self.party.sm2_key)
        self.node.start()
        self.server = PlatformServer(create_app(self.node, Settings(max_body_bytes=BODY_LIMIT)))
        self.server.start()
        self.sdk = PlatformClient(
            self.server.url, name, self.party.account.address, self.party.sm2_key,
            http=recorder.client(self.server.url, name, f"{name} (own SDK)"),
            chunk_size=4, regulator_key=consortium.pboc.sm2_key.public_key())
        self.public = recorder.client(self.server.url, name, "the public")
        self.reader = NodeClient(self.server.url, http=self.public)

    def stop(self) -> None:
        """Stop the API, then the node (which seals what is pending); idempotent."""
        if not self.stopped:
            self.stopped = True
            self.server.stop()
            self.node.stop()


def _signed_get(client: httpx.Client, party: Any, platform: str, path: str) -> httpx.Response:
    headers = sign_request(party.sm2_key, party.account.address, "GET", path, b"",
                           audience=log_id_for(platform))
    return client.get(path, headers=headers)


def _probe_api(platform: Platform, other: Platform, consortium: Consortium, size: int,
               anchored_sizes: list[int]) -> None:
    """Every public read, the member-only read as others get it, and bad requests."""
    public, name = platform.public, platform.name

    def post(path: str, content: bytes) -> httpx.Response:
        return public.post(path, content=content, headers={"content-type": "application/json"})

    bundles = []
    for index in range(size):
        status = public.get(f"/v1/leaves/{index}")
        assert status.status_code == 200
        assert public.get(f"/v1/leaves/by-hash/{status.json()['leaf_hash']}").status_code == 200
        bundle = public.get(f"/v1/leaves/{index}/bundle")
        assert bundle.status_code == 200
        bundles.append(bundle.json())
    for bundle in bundles:
        verdict = post("/v1/verify", _compact({"bundle": bundle}))
        assert verdict.status_code == 200 and verdict.json()["valid"], verdict.text
    tampered = dict(bundles[0], index=bundles[0]["index"] + 1)
    assert not post("/v1/verify", _compact({"bundle": tampered})).json()["valid"]
    assert public.get("/v1/checkpoints", params={"after": 0, "limit": 1000}).status_code == 200
    for first, second in [*zip(anchored_sizes, anchored_sizes[1:], strict=False),
                          (anchored_sizes[0], anchored_sizes[-1])]:
        answer = public.get("/v1/consistency", params={"from": first, "to": second})
        assert answer.status_code == 200
    for path in ("/v1/health", "/metrics", "/openapi.json", "/docs"):
        assert public.get(path).status_code == 200, path
    last = anchored_sizes[-1]
    problems = {
        f"/v1/leaves/{size + 1000}": 404, "/v1/leaves/-1": 422, "/v1/leaves/abc": 422,
        f"/v1/leaves/{size + 1000}/bundle": 404, "/v1/leaves/by-hash/zz": 422,
        f"/v1/leaves/by-hash/{os.urandom(32).hex()}": 404, "/v1/checkpoints?limit=0": 422,
        f"/v1/consistency?from={last}&to=1": 422,
        f"/v1/consistency?from={last + 1}&to={last + 2}": 404,
        "/v1/no-such-route": 404,
    }
    for path, expected in problems.items():
        assert public.get(path).status_code == expected, path
    assert public.delete("/v1/health").status_code == 405
    log, other_log = log_id_for(name).hex(), log_id_for(other.name).hex()
    assert post("/v1/verify", b"{").status_code == 400
    assert post("/v1/verify", b'{"bundle": {}}').status_code == 422
    assert post("/v1/verify", b"x" * (BODY_LIMIT + 1)).status_code == 413
    junk = Leaf(os.urandom(32))
    foreign = {"leaves": [junk.to_json()], "signer": other.party.account.address,
               "signature": sign_batch(other.party.sm2_key, log_id_for(name), [junk]).hex()}
    assert post(f"/v1/logs/{other_log}/leaves", _compact(foreign)).status_code == 404
    assert post(f"/v1/logs/{log}/leaves", _compact(foreign)).status_code == 403
    assert post(f"/v1/logs/{log}/leaves", b'{"leaves": [{"commitment": "xyz"}], '
                b'"signer": "0x0", "signature": ""}').status_code == 422
    member_only = ("/v1/leaves/0/evidence", f"/v1/logs/{log}/leaves?start=0&end={size}",
                   "/v1/disclosures", "/v1/disclosures/1/response")
    for path in member_only:  # the owner's and the regulator's: nobody else's
        assert public.get(path).status_code == 401, path
        for viewer in (consortium.auditor, other.party):
            assert _signed_get(public, viewer, name, path).status_code == 403, path
    assert platform.sdk.evidence(0)["index"] == 0  # the owner's own view (in its domain)


def _rpc(server: ChainServer, method: str, *params: Any) -> tuple[bytes, Any]:
    body = _compact({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    answer = server.rpc.handle(body)
    assert answer is not None
    document = json.loads(answer)
    assert "result" in document, document
    return answer, document["result"]


def _scan_json_rpc(server: ChainServer, contract: str, haystack: Haystack
                   ) -> tuple[list[str], int]:
    """Read every block, transaction, receipt and log over JSON-RPC.

    Returns each block's state root and the number of calls made.
    """
    calls = 0

    def call(method: str, *params: Any) -> Any:
        nonlocal calls
        answer, result = _rpc(server, method, *params)
        haystack.add(f"json-rpc {method} {json.dumps(params)[:80]}", answer, text=True)
        calls += 1
        return result

    head = int(call("eth_blockNumber"), 16)
    roots = []
    for number in range(head + 1):
        block = call("eth_getBlockByNumber", hex(number), True)
        roots.append(block["stateRoot"])
        for tx in block["transactions"]:
            call("eth_getTransactionByHash", tx["hash"])
            call("eth_getTransactionReceipt", tx["hash"])
    call("eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest"})
    call("eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest", "address": contract})
    call("eth_getCode", contract, "latest")
    for slot in range(32):
        call("eth_getStorageAt", contract, hex(slot), "latest")
    return roots, calls


def _scan_storage(kv: Mapping[bytes, bytes], contract: str, roots: list[str],
                  haystack: Haystack) -> int:
    """Enumerate the contract's storage trie at every block; return the slots seen."""
    account_key = keccak(bytes.fromhex(contract[2:]))
    seen_roots: set[bytes] = set()
    slots = 0
    for number, root in enumerate(roots):
        state = HexaryTrie(kv, bytes.fromhex(root[2:]))
        encoded = state.get(account_key)
        if not encoded:
            continue  # before the deployment
        _nonce, _balance, storage_root, _code_hash = rlp.decode(encoded)
        if storage_root in seen_roots:
            continue
        seen_roots.add(storage_root)
        for slot_key, value in NodeIterator(HexaryTrie(kv, storage_root)).items():
            label = f"storage block {number} slot {slot_key.hex()}"
            for part in (slot_key, value, rlp.decode(value).rjust(32, b"\0")):
                haystack.add(label, part, text=False)
            slots += 1
    return slots


def _read_chain_db(path: Path, haystack: Haystack) -> dict[bytes, bytes]:
    """Every key and value of the closed chain store, its meta table and its file bytes."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        kv = {bytes(k): bytes(v) for k, v in db.execute("SELECT key, value FROM kv")}
        meta = [(str(n), bytes(v)) for n, v in db.execute("SELECT name, value FROM meta")]
    finally:
        db.close()
    for key, value in kv.items():
        haystack.add("chain-db kv key", key, text=False)
        haystack.add("chain-db kv value", value, text=False)
    for name, value in meta:
        haystack.add(f"chain-db meta {name}", value, text=False)
    haystack.add("chain-db file bytes", path.read_bytes(), text=False)
    return kv


def _wait_anchored(platform: Platform, size: int) -> list[int]:
    """Wait until a checkpoint covering ``size`` leaves is anchored; the anchored sizes."""
    deadline = time.monotonic() + 30
    while True:
        sizes = [c["tree_size"] for c in platform.reader.checkpoints(limit=1000)]
        if sizes and sizes[-1] >= size:
            return sizes
        assert time.monotonic() < deadline, f"{platform.name} not anchored: {sizes}"
        time.sleep(0.05)


class ChainTap:
    """Records every JSON-RPC request and answer the chain server handles while on."""

    def __init__(self, server: ChainServer) -> None:
        self.exchanges: list[tuple[bytes, bytes]] = []
        self.on = True
        rpc = server.rpc
        handle = rpc.handle

        def tapped(body: bytes) -> bytes | None:
            answer = handle(body)
            if self.on:
                self.exchanges.append((body, answer or b""))
            return answer

        rpc.handle = tapped  # type: ignore[method-assign]  # the server calls rpc.handle

    def into(self, haystack: Haystack) -> None:
        """Add every recorded request and answer, labelled by its method."""
        for body, answer in self.exchanges:
            try:
                request = json.loads(body)
                method = (request[0] if isinstance(request, list) else request)["method"]
            except (ValueError, KeyError, IndexError, TypeError):
                method = "?"
            haystack.add(f"chain traffic {method} request", body, text=True)
            haystack.add(f"chain traffic {method} answer", answer, text=True)


def _submit(platforms: dict[str, Platform], records: list[PlantedRecord]
            ) -> dict[str, list[SubmittedRecord]]:
    """Each platform submits its records through its SDK (escrows sealed), in two rounds
    with an anchored checkpoint after each, so that consistency proofs exist."""
    submitted: dict[str, list[SubmittedRecord]] = {name: [] for name in platforms}
    for round_ in range(2):
        for name, platform in platforms.items():
            mine = [p.record for p in records if p.record.platform == name]
            half = mine[:len(mine) // 2] if round_ == 0 else mine[len(mine) // 2:]
            submitted[name] += platform.sdk.submit_records(half, kinds=_kinds)
        for platform in platforms.values():
            _wait_anchored(platform, platform.node.size())
    return submitted


def _canary(wechat: Platform, regulator_key: SM2PublicKey) -> SubmittedRecord:
    """A leaky leaf on purpose: its match and amount tags are made from plain values."""
    record = PaymentRecord(
        platform="wechatpay", local_tx_id="WX-CANARY", payer_identity=CANARY.identity,
        payer_account=CANARY.tokens["wechatpay"], payee_identity=MERCHANTS[0].identity,
        payee_account=MERCHANTS[0].tokens["wechatpay"], amount_fen=CANARY_AMOUNT,
        currency="CNY", time=datetime(2025, 3, 14, tzinfo=UTC), channel=Channel.QR,
        cross_border=False)
    prepared = wechat.sdk.prepare(record, match_tag=bytes(keccak(CANARY.name.encode())),
                                  amount_tag=CANARY_AMOUNT.to_bytes(8, "big") + os.urandom(24),
                                  sealer=EscrowSealer(regulator_key), kinds=_kinds(record))
    return wechat.sdk.submit_prepared([prepared])[0]


def _public_records(platforms: dict[str, Platform], records: list[PlantedRecord],
                    submitted: dict[str, list[SubmittedRecord]]) -> list[PublicRecord]:
    public = []
    for name, platform in platforms.items():
        for item in submitted[name]:
            index = item.receipt.index
            bundle = platform.reader.bundle_json(index, timeout=30)
            status = platform.reader.leaf_status(index)
            planted = next(p for p in records if p.record is item.prepared.record)
            public.append(PublicRecord(
                planted, index, bytes.fromhex(status["leaf"]["commitment"]),
                bytes.fromhex(status["leaf_hash"]),
                bytes.fromhex(status["leaf"]["escrow_digest"]), _compact(bundle["leaf"])))
            assert status["leaf"]["match_tag"] is None
            assert len(platform.node.leaf(index).escrow) == ESCROW_SIZE  # sealed, never served
    return public


def _regulator(consortium: Consortium, platforms: dict[str, Platform], store: Path
               ) -> tuple[RegulatorNode, list[RegulatorClient]]:
    """pboc's regulator node, synced: it has fetched, verified and decrypted both logs.

    Its requests carry escrows (regulator-only): they go over clients that are not recorded.
    """
    pboc = consortium.pboc
    clients = {name: RegulatorClient(p.server.url, pboc.account.address, pboc.sm2_key,
                                     p.node.log_id, retries=0)
               for name, p in platforms.items()}
    regulator = RegulatorNode(RegulatorConfig(name="pboc", store_path=store),
                              consortium.chain, [pboc.sm2_key],
                              {name: HttpLeafSource(c) for name, c in clients.items()})
    try:
        assert regulator.sync() == sum(p.node.size() for p in platforms.values())
    except BaseException:
        regulator.stop()
        raise
    return regulator, list(clients.values())


def _disclose(regulator: RegulatorNode, consortium: Consortium,
              platforms: dict[str, Platform], submitted: dict[str, list[SubmittedRecord]]
              ) -> dict[str, list[DisclosureRequest]]:
    """The regulator traces P1 on both platforms and asks for openings under two cases, a
    one-record case and a case holding P1's record on each platform; the platforms answer
    through their SDKs (fulfilled on chain) and the regulator verifies the answers."""
    traced = regulator.trace_identity(identity_key(PERSONS[0].identity))
    on = {name: [t.record for t in traced if t.record.platform == name] for name in PLATFORMS}
    assert all(on.values())  # traceable for the regulator on both platforms
    plans = {"one record": [on["unionpay"][-1]],
             "P1 on both platforms": [on["unionpay"][0], on["wechatpay"][0]]}
    openings = {s.prepared.leaf.commitment: s for items in submitted.values() for s in items}
    deployment = consortium.deployment
    cases: dict[str, list[DisclosureRequest]] = {}
    for case, records in plans.items():
        case_id = os.urandom(32)  # random, as a case number should be; shared by the case
        for record in records:
            request_id = regulator.request_disclosure(record.commitment, case_id)
            item = openings[record.commitment]
            platforms[record.platform].sdk.answer_disclosure(
                request_id, item.prepared.opening, consortium.pboc.sm2_key.public_key(),
                chain_id=deployment.chain_id, contract=deployment.address,
                index=item.receipt.index)
            collected = regulator.collect_disclosure(request_id)
            assert collected is not None and not collected.escrow_mismatches
            cases.setdefault(case, []).append(consortium.chain.disclosure_request(request_id))
    return cases


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Plant, submit, anchor, disclose; collect every public byte; then stop everything."""
    started = time.perf_counter()
    directory = tmp_path_factory.mktemp("unlinkability")
    chain_path = directory / "chain.sqlite"
    embedded = LedgerChain.embedded_on_disk(chain_path)
    chain_server = ChainServer(embedded)
    tap = ChainTap(chain_server)
    chain_server.start()
    recorder = Recorder()
    platforms: dict[str, Platform] = {}
    try:
        consortium = make_consortium(LedgerChain.from_rpc(chain_server.url))
        for name in PLATFORMS:
            platforms[name] = Platform(name, consortium, chain_server.url,
                                       directory / f"{name}.db", recorder)
        records = planted_records()
        submitted = _submit(platforms, records)
        canary = _canary(platforms["wechatpay"], consortium.pboc.sm2_key.public_key())
        sizes = {name: p.node.size() for name, p in platforms.items()}
        anchored = {name: _wait_anchored(p, sizes[name]) for name, p in platforms.items()}
        public = _public_records(platforms, records, submitted)

        regulator, regulator_clients = _regulator(consortium, platforms, directory / "pboc.db")
        try:
            cases = _disclose(regulator, consortium, platforms, submitted)
        finally:
            regulator.stop()
            for client in regulator_clients:
                client.close()
        consortium.chain.request_disclosure(  # leaky on purpose: a case id made from an ID
            platforms["wechatpay"].node.platform_address, canary.prepared.leaf.commitment,
            sm3(CANARY.identity.encode()))

        for name, platform in platforms.items():
            other = platforms["wechatpay" if name == "unionpay" else "unionpay"]
            _probe_api(platform, other, consortium, sizes[name], anchored[name])
        for platform in platforms.values():
            platform.stop()
        tap.on = False

        haystacks = {name: Haystack() for name in CHANNELS}
        tap.into(haystacks["chain traffic"])
        contract = consortium.deployment.address
        roots, rpc_calls = _scan_json_rpc(chain_server, contract, haystacks["JSON-RPC"])
        chain_server.stop()
        close_chain_store(embedded.w3)
        assert not Path(f"{chain_path}-wal").exists()  # everything is in the file now
        kv = _read_chain_db(chain_path, haystacks["chain database"])
        slots = _scan_storage(kv, contract, roots, haystacks["contract storage"])
        for label, raw in recorder.responses:
            haystacks["HTTP API"].add(label, raw, text=True)
        counts = {"blocks": len(roots), "kv entries": len(kv), "storage slots": slots,
                  "chain exchanges": len(tap.exchanges), "json-rpc calls": rpc_calls,
                  "api responses": len(recorder.responses),
                  "public api responses": sum(" as the public:" in label
                                              for label, _ in recorder.responses),
                  "records": len(records), "leaves": sum(sizes.values()),
                  "checkpoints": sum(len(a) for a in anchored.values())}
        yield World(records, public, all_needles(records), haystacks, counts,
                    time.perf_counter() - started, cases)
    finally:
        for platform in platforms.values():
            platform.stop()
        chain_server.stop()
        close_chain_store(embedded.w3)


# ---------------------------------------------------------------------- the scanner works


def test_planted_identities_are_valid_and_distinct() -> None:
    assert all(is_resident_id(p.identity) for p in PERSONS[:3] + (CANARY,))
    assert all(is_social_credit_code(m.identity) for m in MERCHANTS)
    records = planted_records()
    assert len(records) == sum(2 if a != b else 1 for _, _, a, b in PAYMENTS)
    halves = [r for r in records if r.payment == len(PAYMENTS) - 5]
    assert {r.record.platform for r in halves} == set(PLATFORMS)
    assert len({r.record.clearing_ref for r in halves}) == 1
    amounts = {r.record.amount_fen for r in records}
    assert len(amounts) == len(PAYMENTS) and min(amounts) >= 2**32


@pytest.mark.parametrize("form", [
    "utf8", "gbk", "hex(utf8)", "HEX(utf8)", "hex(gbk)", "sm3(utf8)", "hex(sm3(utf8))",
    "HEX(sha256(utf8))", "sha256(gbk)", "keccak256(utf8)", "hex(keccak256(utf8))",
    "base64(utf8)", "base64(sm3(utf8))", "json-escaped", "url-encoded",
])
def test_scanner_finds_a_name_in_each_form(form: str) -> None:
    needles = {n.form: n for n in text_needles("name", "欧阳娜娜")}
    needle = needles[form]
    haystack = Haystack()
    haystack.add("noise", os.urandom(4096), text=False)
    haystack.add("leaky", os.urandom(100) + needle.data + os.urandom(100), text=False)
    hits = haystack.scan(needles.values())
    assert [(h.needle.form, h.source, h.offset) for h in hits] == [(form, "leaky", 100)]


@pytest.mark.parametrize("form", ["decimal", "yuan", "yuan-grouped", "u64be", "u32be",
                                  "hex(u64be)", "sm3(decimal)", "keccak256(u64be)"])
def test_scanner_finds_an_amount_in_each_form(form: str) -> None:
    fen = 2_345_678_901
    needles = {n.form: n for n in amount_needles("amount", fen)}
    assert needles["yuan"].data == b"23456789.01" == yuan(fen).encode()
    assert needles["yuan-grouped"].data == b"23,456,789.01"
    haystack = Haystack()
    haystack.add("leaky", b'{"x": "' + needles[form].data.hex().encode() + b'"}', text=True)
    haystack.add("plain", b"[" + needles[form].data + b"]", text=False)
    hits = {(h.needle.form, h.source) for h in haystack.scan(needles.values())}
    assert (form, "plain") in hits
    assert (form, "leaky [hex-decoded]") in hits  # a value printed as hex is seen decoded


def test_scanner_finds_hex_digests_in_json_in_both_forms() -> None:
    digest = sm3("王秀英".encode())
    leaf = Leaf(os.urandom(32), match_tag=digest, amount_tag=os.urandom(32))
    haystack = Haystack()
    haystack.add("leaf json", _compact(leaf.to_json()), text=True)
    hits = {(h.needle.form, h.source) for h in haystack.scan(text_needles("P2", "王秀英"))}
    assert ("hex(sm3(utf8))", "leaf json") in hits
    assert ("sm3(utf8)", "leaf json [hex-decoded]") in hits
    odd = Haystack()
    odd.add("0x-prefixed, odd run", b'"0' + digest.hex().upper().encode() + b'"', text=True)
    assert {h.needle.form for h in odd.scan(text_needles("P2", "王秀英"))} == {
        "HEX(sm3(utf8))", "sm3(utf8)"}


def test_scanner_finds_every_field_of_a_plaintext_record() -> None:
    record = planted_records()[0].record
    haystack = Haystack()
    haystack.add("plaintext record", _compact(record.to_json()), text=True)
    hits = haystack.scan(all_needles(planted_records()))
    owners = {h.needle.owner for h in hits}
    assert {"P1 identity", "P1 unionpay account", "M1 identity", "M1 unionpay account",
            "M1 short name", "payment 0 amount", "payment 0 time", "payment 0 clearing ref",
            "payment 0 unionpay tx id"} <= owners
    assert not {o for o in owners if o.startswith(("P2", "P3", "P4", "M2", "M3"))}


def test_scanner_finds_escaped_text_in_json_and_urls() -> None:
    record = planted_records()[0].record
    haystack = Haystack()
    haystack.add("ascii-only JSON", json.dumps(record.to_json()).encode(), text=True)
    haystack.add("query", b"GET /v1/x?payee=" + quote(MERCHANTS[0].aliases[0]).encode(),
                 text=True)
    assert json.dumps(record.to_json()).isascii()
    hits = {(h.needle.owner, h.needle.form, h.source) for h in haystack.scan(
        all_needles(planted_records()))}
    assert ("M1 unionpay account", "json-escaped", "ascii-only JSON") in hits
    assert ("M1 short name", "url-encoded", "query") in hits


def test_scanner_reports_only_matches_inside_one_part() -> None:
    needle = Needle("x", "raw", b"ABCDEFGH")
    haystack = Haystack()
    haystack.add("a", b"....ABCD", text=False)
    haystack.add("b", b"EFGH....", text=False)
    assert haystack.scan([needle]) == []
    haystack.add("c", b"ABCDEFGHABCDEFGH", text=False)
    assert [h.offset for h in haystack.scan([needle])] == [0, 8]
    assert str(Hit(needle, "c", 0)) == "x as raw in c at offset 0"


def test_chance_model_flags_short_needles() -> None:
    haystack = Haystack()
    haystack.add("binary", bytes(1_000_000), text=False)
    short, long = Needle("a", "u32be", b"\0\0\x12\x34"), Needle("b", "sm3", os.urandom(32))
    assert chance_hits([short], haystack) > 1.0
    assert chance_hits([long], haystack) < 1e-60


def test_shared_runs_finds_a_common_8_byte_run_and_ignores_structure() -> None:
    common = os.urandom(WINDOW)
    first = [os.urandom(20) + common + os.urandom(20)]
    second = [os.urandom(5) + common]
    assert shared_runs(first, second) == {common}
    assert shared_runs(first, [common[:-1] + bytes([common[-1] ^ 1])]) == set()  # 7 bytes
    assert shared_runs(first, second, structure=windows([common])) == set()


def test_fixed_structure_is_what_unrelated_leaves_share() -> None:
    binary, text = _control_encodings()
    fixed = fixed_positions(binary)
    commitment, escrow_digest = os.urandom(32), os.urandom(32)
    data = leaf_data(commitment, escrow_digest, None, None)
    assert value_segments(data, fixed) == [commitment, escrow_digest]
    assert len(fixed) == len(data) - 64  # tag and length prefixes
    leaky = data + b"\x01"  # a longer encoding is not the same structure
    with pytest.raises(ValueError):
        fixed_positions([data, leaky])
    # Two leaves of one person whose match tag was that person's identity key: linked.
    tagged = [leaf_data(*(os.urandom(32) for _ in range(4))) for _ in range(8)]
    fixed = fixed_positions(tagged)
    key = identity_key(PERSONS[0].identity)
    a, b = (leaf_data(os.urandom(32), os.urandom(32), key, os.urandom(32)) for _ in range(2))
    assert shared_runs(value_segments(a, fixed), value_segments(b, fixed)) == windows([key])


# ---------------------------------------------------------------------- the audit


def _report(hits: list[Hit]) -> str:
    shown = "\n  ".join(str(h) for h in hits[:20])
    return f"{len(hits)} planted values found in public data:\n  {shown}"


def _where(hits: list[Hit], needle: str) -> set[str]:
    return {h.source for h in hits if str(h.needle) == needle}


def test_canaries_are_found_in_every_channel_they_reach(world: World) -> None:
    """The leaky canary leaf and disclosure are caught: the audit can fail, everywhere."""
    canaries = canary_needles()
    hits = {name: haystack.scan(canaries) for name, haystack in world.haystacks.items()}
    case_id = "CANARY identity as sm3(utf8)"  # the case id of the leaky disclosure request
    assert _where(hits["chain database"], case_id) == {"chain-db kv value",
                                                       "chain-db file bytes"}
    assert any(s.startswith("storage block") for s in _where(hits["contract storage"], case_id))
    rpc = _where(hits["JSON-RPC"], case_id)
    for method in ("eth_getBlockByNumber", "eth_getTransactionByHash",
                   "eth_getTransactionReceipt", "eth_getLogs"):
        assert any(s.startswith(f"json-rpc {method}") for s in rpc), method
    assert all(s.endswith("[hex-decoded]") for s in rpc)  # JSON-RPC shows it as hex only
    traffic = _where(hits["chain traffic"], case_id)  # the regulator's raw transaction
    assert "chain traffic eth_sendRawTransaction request [hex-decoded]" in traffic
    for needle in ("CANARY name as hex(keccak256(utf8))", "CANARY name as keccak256(utf8)",
                   "canary amount as hex(u64be)", "canary amount as u64be"):
        served = _where(hits["HTTP API"], needle)  # the leaky match and amount tags
        for route in (r"GET /v1/leaves/\d+ -> 200", r"GET /v1/leaves/by-hash/\w+ -> 200",
                      r"GET /v1/leaves/\d+/bundle -> 200"):
            assert any(re.search(f"^api wechatpay as the public: {route}", s) for s in served), (
                needle, route)
        assert not any("api unionpay" in s for s in served)


@pytest.mark.parametrize("channel", CHANNELS)
def test_no_planted_value_is_in_public_data(world: World, channel: str) -> None:
    haystack = world.haystacks[channel]
    assert haystack.parts, channel
    hits = haystack.scan(world.needles)
    assert not hits, _report(hits)


def test_the_audit_cannot_pass_by_chance_alone(world: World) -> None:
    expected = sum(chance_hits(world.needles, h) for h in world.haystacks.values())
    assert expected < MAX_CHANCE_HITS


def _control_encodings(count: int = 8) -> tuple[list[bytes], list[bytes]]:
    """The leaf bytes and bundle leaf objects of ``count`` unrelated random leaves."""
    binary, text = [], []
    for _ in range(count):
        commitment, escrow_digest = os.urandom(32), sm3(os.urandom(ESCROW_SIZE))
        binary.append(leaf_data(commitment, escrow_digest, None, None))
        text.append(_compact({"commitment": commitment.hex(),
                              "escrow_digest": escrow_digest.hex(),
                              "match_tag": None, "amount_tag": None}))
    return binary, text


def test_records_of_one_person_share_no_8_byte_run(world: World) -> None:
    """Beyond fixed structure, two records of one person (or two halves of one payment)
    share no 8-byte run of public bytes.

    Fixed structure is the byte positions every leaf's encoding shares whatever its values
    (measured on unrelated random leaves): the leaf tag and length prefixes, the JSON keys
    and nulls. Each served encoding must hold nothing beyond it but the leaf's own values;
    those values (commitment, escrow digest, leaf hash) must share no 8-byte run.
    """
    hasher = hasher_for("sm3")
    binary, text = _control_encodings()
    fixed_binary, fixed_text = fixed_positions(binary), fixed_positions(text)
    for item in world.public:
        leaf_bytes, leaf_json = item.encodings
        assert hasher.hash_leaf(leaf_bytes) == item.leaf_hash
        assert (len(leaf_bytes), len(leaf_json)) == (len(binary[0]), len(text[0]))
        assert value_segments(leaf_bytes, fixed_binary) == item.values[:2]
        assert [bytes.fromhex(v.decode()) for v in value_segments(leaf_json, fixed_text)] == (
            item.values[:2])

    by_party: dict[str, list[PublicRecord]] = {}
    for item in world.public:
        for key in {item.planted.payer, item.planted.payee}:
            by_party.setdefault(key, []).append(item)
    pairs = cross = 0
    for key, items in by_party.items():
        for a, b in combinations(items, 2):
            shared = shared_runs(a.values, b.values)
            platforms = (a.planted.record.platform, b.planted.record.platform)
            assert not shared, (f"{key}: {platforms[0]}#{a.index} and {platforms[1]}#{b.index}"
                                f" share {sorted(s.hex() for s in shared)[:5]}")
            pairs += 1
            cross += platforms[0] != platforms[1]
    halves = [(a, b) for a, b in combinations(world.public, 2)
              if a.planted.payment == b.planted.payment]
    assert len(halves) == 3
    assert not any(shared_runs(a.values, b.values) for a, b in halves)
    assert cross > 10 and pairs > 50
    world.counts["same-party pairs"] = pairs
    world.counts["cross-platform pairs"] = cross
    world.counts["fixed bytes"] = len(fixed_binary)
    world.counts["fixed chars"] = len(fixed_text)


def _request_values(request: DisclosureRequest) -> list[bytes]:
    """What the chain shows of one disclosure request beyond the regulator and platform
    addresses (the same for every request to that platform): commitment, case id and the
    digest of the sealed answer."""
    return [request.commitment, request.case_id, request.response_digest]


def test_disclosures_are_traced_on_chain_and_separate_cases_are_unlinked(world: World) -> None:
    single = world.cases["one record"][0]
    first, second = world.cases["P1 on both platforms"]
    assert single.fulfilled and first.fulfilled and second.fulfilled
    assert single.regulator == first.regulator == second.regulator
    assert first.platform != second.platform
    assert not shared_runs(_request_values(single), _request_values(first))


def test_disclosure_requests_of_one_case_do_not_link_their_records(world: World) -> None:
    """The on-chain trace of two disclosure requests of one case (P1's record on each
    platform) shares no 8-byte run: commitment, case reference and response digest differ
    (before the fix, every request of a case carried the same case id)."""
    first, second = world.cases["P1 on both platforms"]
    shared = shared_runs(_request_values(first), _request_values(second))
    assert not shared, f"the two requests share {len(shared)} 8-byte runs (the case id)"


def test_summary(world: World) -> None:
    """Print what was scanned (``pytest -s``); the counts also guard the audit's reach."""
    owners = {n.owner for n in world.needles}
    counts = world.counts
    print(f"\nunlinkability audit: {counts['records']} planted records ({counts['leaves']} "
          f"leaves incl. 1 canary) on 2 platforms, {counts['blocks']} blocks; "
          f"built and collected in {world.seconds:.1f} s")
    print(f"  needles: {len(world.needles)} byte strings: {len(owners)} planted values x "
          "their forms (UTF-8, GBK, hex, base64, JSON/URL escapes, decimal, yuan, u32/u64, "
          "SM3/SHA-256/keccak-256 digests)")
    for name, haystack in world.haystacks.items():
        print(f"  {name:16s}: {len(haystack.parts):6d} parts, text {haystack.text_bytes:9,d} "
              f"B, binary {haystack.binary_bytes:10,d} B (incl. hex-decoded text)")
    print(f"  chain store: {counts['kv entries']} key/value entries; contract storage: "
          f"{counts['storage slots']} slot values over all blocks; chain traffic: "
          f"{counts['chain exchanges']} JSON-RPC requests and answers; JSON-RPC pass: "
          f"{counts['json-rpc calls']} calls; "
          f"{counts['checkpoints']} checkpoints anchored")
    print(f"  HTTP API: {counts['api responses']} responses, {counts['public api responses']} "
          "of them to the public")
    if "same-party pairs" in counts:
        print(f"  8-byte runs: {counts['same-party pairs']} same-party record pairs "
              f"({counts['cross-platform pairs']} across platforms) + 3 payment halves; "
              f"fixed structure {counts['fixed bytes']} B of the leaf bytes, "
              f"{counts['fixed chars']} B of the JSON leaf object")
    expected = sum(chance_hits(world.needles, h) for h in world.haystacks.values())
    print(f"  expected matches from chance alone: {expected:.1e}")
    assert counts["public api responses"] > 4 * counts["leaves"]
    assert counts["kv entries"] > counts["blocks"] and counts["storage slots"] > 0
    assert len(owners) > 100


# ---------------------------------------------------------------------- match tags (issue 6)
#
# The leaves of cross-platform payments carry match and amount tags (docs/reconciliation.md).
# A separate, smaller world: the planted payments submitted with their tags through both
# platforms' SDKs, a third platform (alipay) admitted by governance, and everything the
# public reads of the tagged leaves (statuses, proof bundles, the bulk summaries endpoint).

TAG_CANARY_REF = "NUCC-CANARY-000000000042"
TAG_CANARY_AMOUNT = 6_666_666_666_666


def _sides(item: PlantedRecord) -> CrossPlatform | None:
    """The half of its payment a planted record is (None within one platform)."""
    _, _, payer_side, payee_side = PAYMENTS[item.payment]
    if payer_side == payee_side:
        return None
    if item.record.platform == payer_side:
        return CrossPlatform(payee_side, Side.PAYER)
    return CrossPlatform(payer_side, Side.PAYEE)


def same_amount_records() -> list[PlantedRecord]:
    """Two more cross-platform payments of one amount at one time, distinct references:
    their tags must still share nothing."""
    base = planted_records()
    template = next(p for p in base if _sides(p) is not None)
    extra = []
    for n, reference in enumerate(("NUCC77770000000000000001", "NUCC77770000000000000002")):
        for platform in PLATFORMS:
            record = dataclasses.replace(
                template.record, platform=platform, clearing_ref=reference,
                local_tx_id=f"{platform[:2].upper()}SAME{n}", amount_fen=8_888_888_888,
                payer_account=_by_key()[template.payer].tokens["unionpay"],
                payee_account=_by_key()[template.payee].tokens["wechatpay"])
            extra.append(PlantedRecord(len(PAYMENTS) + n, record, template.payer,
                                       template.payee))
    return extra


def _extra_side(item: PlantedRecord) -> CrossPlatform | None:
    if item.payment < len(PAYMENTS):
        return _sides(item)
    return (CrossPlatform("wechatpay", Side.PAYER) if item.record.platform == "unionpay"
            else CrossPlatform("unionpay", Side.PAYEE))


def unkeyed_tag_needles(owner: str, side: Side, reference: str, amount: int,
                        currency: str, keys: Mapping[str, bytes]) -> list[Needle]:
    """What a tag would be if it were not keyed with the pairwise key: the tag inputs hashed
    plainly, concatenations of reference and amount hashed, and HMAC-SM3 under keys anyone
    (or a third platform) can compute."""
    ref = reference.encode()
    match_input = encode_parts("match-tag", side.value.encode(), ref)
    amount_input = encode_parts("amount-tag", side.value.encode(), ref,
                                amount.to_bytes(8, "big"), currency.encode())
    forms: list[tuple[str, bytes]] = [("match input", match_input),
                                      ("amount input", amount_input)]
    for joined in (ref + str(amount).encode(), ref + amount.to_bytes(8, "big"),
                   f"{reference}|{amount}".encode(), f"{reference}{yuan(amount)}".encode(),
                   side.value.encode() + ref):
        forms.append(("concatenation", joined))
    found: list[Needle] = []
    for form, data in forms:
        found += [Needle(owner, f"{digest} of {form}", value)
                  for digest, value in (("sm3", sm3(data)),
                                        ("sha256", hashlib.sha256(data).digest()),
                                        ("keccak256", bytes(keccak(data))))]
        for key_name, key in keys.items():
            found.append(Needle(owner, f"hmac-sm3[{key_name}] of {form}",
                                hmac_sm3(key, data)))
    return found + [Needle(n.owner, f"hex({n.form})", n.data.hex().encode()) for n in found]


@dataclass
class TaggedWorld:
    """The tagged leaves' public bytes, the needles and who could compute which keys."""

    records: list[PlantedRecord]
    public: dict[tuple[str, int], list[bytes]]  # (platform, index) -> public values
    index_of: dict[int, tuple[str, int]]  # id(record) -> (platform, index)
    haystack: Haystack
    guessable: dict[str, bytes]  # keys a third party can compute
    pairwise: PairwiseKey  # the key unionpay and wechatpay share (not public)
    canary: tuple[str, int]


@pytest.fixture(scope="module")
def tagged_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaggedWorld]:
    directory = tmp_path_factory.mktemp("unlinkability-tags")
    consortium = make_consortium(LedgerChain.embedded())
    alipay = new_party("alipay", Role.PLATFORM)
    proposal, _ = consortium.chain.propose_add_member(alipay.account.address, Role.PLATFORM,
                                                      "alipay", alipay.sm2_key.public_key().raw)
    consortium.as_party(consortium.unionpay).approve(proposal)
    nodes: dict[str, PlatformNode] = {}
    try:
        for name in PLATFORMS:
            party = getattr(consortium, name)
            nodes[name] = PlatformNode(NodeConfig(platform=name, store_path=directory
                                                  / f"{name}.db", seal_interval=0.05),
                                       consortium.as_party(party), party.sm2_key)
            nodes[name].start()
        http = {name: httpx.Client(transport=TestClient(create_app(node))._transport,
                                   base_url="http://testserver")
                for name, node in nodes.items()}
        records = planted_records() + same_amount_records()
        index_of: dict[int, tuple[str, int]] = {}
        clients = {}
        for name in PLATFORMS:
            party = getattr(consortium, name)
            clients[name] = PlatformClient(
                "http://testserver", name, party.account.address, party.sm2_key, http=http[name],
                regulator_key=consortium.pboc.sm2_key.public_key(),
                counterparties=lambda n: registered_platform(consortium.chain, n))
            mine = [p for p in records if p.record.platform == name]
            sides = {id(p.record): _extra_side(p) for p in mine}
            for item, planted in zip(clients[name].submit_records(
                    [p.record for p in mine], kinds=_kinds,
                    cross_platform=lambda r, sides=sides: sides[id(r)]),  # type: ignore[misc]
                    mine, strict=True):
                index_of[id(planted)] = (name, item.receipt.index)
        # The canary: a leaf whose tags are the unkeyed hashes of its tag inputs.
        canary_record = dataclasses.replace(records[0].record, platform="wechatpay",
                                            local_tx_id="WX-TAG-CANARY",
                                            clearing_ref=TAG_CANARY_REF,
                                            amount_fen=TAG_CANARY_AMOUNT)
        leaky = clients["wechatpay"].prepare(
            canary_record, kinds=_kinds(canary_record),
            match_tag=sm3(encode_parts("match-tag", b"payee", TAG_CANARY_REF.encode())),
            amount_tag=sm3(encode_parts("amount-tag", b"payee", TAG_CANARY_REF.encode(),
                                        TAG_CANARY_AMOUNT.to_bytes(8, "big"), b"CNY")))
        canary = ("wechatpay", clients["wechatpay"].submit_prepared([leaky])[0].receipt.index)
        for node in nodes.values():
            deadline = time.monotonic() + 30
            while (node.latest_checkpoint() is None
                   or node.latest_checkpoint().tree_size < node.size()):  # type: ignore[union-attr]
                assert time.monotonic() < deadline
                time.sleep(0.02)

        haystack = Haystack()
        public: dict[tuple[str, int], list[bytes]] = {}
        for name, client in http.items():
            size = nodes[name].size()
            for index in range(size):
                for path in (f"/v1/leaves/{index}", f"/v1/leaves/{index}/bundle"):
                    answer = client.get(path)
                    assert answer.status_code == 200
                    haystack.add(f"api {name} as the public: GET {path}", answer.content,
                                 text=True)
                leaf = answer.json()["leaf"]
                public[(name, index)] = [bytes.fromhex(leaf[k]) for k in (
                    "commitment", "escrow_digest", "match_tag", "amount_tag") if leaf[k]] + [
                    bytes.fromhex(client.get(f"/v1/leaves/{index}").json()["leaf_hash"])]
            summaries = client.get(f"/v1/logs/{nodes[name].log_id.hex()}/summaries",
                                   params={"start": 0, "end": size})
            assert summaries.status_code == 200
            haystack.add(f"api {name} as the public: summaries", summaries.content, text=True)

        def address_bytes(party: Any) -> bytes:
            return bytes.fromhex(party.account.address[2:])

        union, wechat = consortium.unionpay, consortium.wechatpay
        guessable = {
            "empty key": b"", "zero key": bytes(32),
            "sm3 of both addresses": sm3(address_bytes(union) + address_bytes(wechat)),
            "sm3 of both public keys": sm3(union.sm2_key.public_key().raw
                                           + wechat.sm2_key.public_key().raw),
            "sum of public keys' x": (union.sm2_key.public_key().x
                                      + wechat.sm2_key.public_key().x).to_bytes(33, "big"),
            "alipay with unionpay": pairwise_key(alipay.sm2_key, alipay.account.address,
                                                 union.account.address,
                                                 union.sm2_key.public_key()).secret,
            "alipay with wechatpay": pairwise_key(alipay.sm2_key, alipay.account.address,
                                                  wechat.account.address,
                                                  wechat.sm2_key.public_key()).secret,
        }
        shared = clients["unionpay"].pairwise_key("wechatpay")
        assert shared.secret == clients["wechatpay"].pairwise_key("unionpay").secret
        yield TaggedWorld(records, public, index_of, haystack, guessable, shared, canary)
    finally:
        for node in nodes.values():
            node.stop()


def _tag_needles(world: TaggedWorld, keys: Mapping[str, bytes]) -> list[Needle]:
    found: list[Needle] = []
    for item in world.records:
        cross = _extra_side(item)
        if cross is None:
            continue
        r = item.record
        for side in Side:  # a third party does not know the side either: both
            found += unkeyed_tag_needles(f"payment {item.payment} {r.platform} tags", side,
                                         r.clearing_ref, r.amount_fen, r.currency, keys)
        found += text_needles(f"payment {item.payment} clearing ref", r.clearing_ref)
        found += amount_needles(f"payment {item.payment} amount", r.amount_fen)
    return found


def test_tagged_leaves_reveal_no_reference_amount_or_unkeyed_tag(
        tagged_world: TaggedWorld) -> None:
    """Neither the public nor a third platform (with its own pairwise keys) finds a clearing
    reference, an amount, or any tag computable without the two platforms' pairwise key."""
    needles = _tag_needles(tagged_world, tagged_world.guessable) + all_needles(
        [r for r in tagged_world.records if r.payment < len(PAYMENTS)])
    hits = tagged_world.haystack.scan(needles)
    assert not hits, _report(hits)
    assert len(needles) > 1000 and len(tagged_world.haystack.parts) > 100
    assert chance_hits(needles, tagged_world.haystack) < MAX_CHANCE_HITS


def test_the_tag_scan_can_fail(tagged_world: TaggedWorld) -> None:
    """Positive controls: the canary's unkeyed tags are found, and the real tags are found
    when the scan is given the pairwise key only the two platforms hold."""
    canary = unkeyed_tag_needles("CANARY", Side.PAYEE, TAG_CANARY_REF, TAG_CANARY_AMOUNT,
                                 "CNY", {})
    found = {h.needle.form for h in tagged_world.haystack.scan(canary)}
    assert {"sm3 of match input", "sm3 of amount input", "hex(sm3 of match input)"} <= found
    with_key = _tag_needles(tagged_world, {"the pairwise key": tagged_world.pairwise.secret})
    keyed_forms = {h.needle.form for h in tagged_world.haystack.scan(with_key)}
    assert {"hmac-sm3[the pairwise key] of match input",
            "hmac-sm3[the pairwise key] of amount input"} <= keyed_forms


def test_every_cross_platform_half_carries_tags(tagged_world: TaggedWorld) -> None:
    for item in tagged_world.records:
        values = tagged_world.public[tagged_world.index_of[id(item)]]
        assert len(values) == (5 if _extra_side(item) is not None else 3)
        if _extra_side(item) is not None:  # the tags are the SDK's, under the pairwise key
            side = _extra_side(item)
            assert side is not None
            assert values[2:4] == list(record_tags(tagged_world.pairwise, side.side,
                                                   item.record))


def test_the_two_halves_of_a_payment_share_no_8_byte_run(tagged_world: TaggedWorld) -> None:
    """The halves' public values (commitment, escrow digest, match tag, amount tag, leaf
    hash) share no 8-byte run: equal tags in both logs would pair them for everyone. Nor do
    two payments of one amount at one time, or any two tagged leaves."""
    by_payment: dict[int, list[list[bytes]]] = {}
    for item in tagged_world.records:
        if _extra_side(item) is not None:
            by_payment.setdefault(item.payment, []).append(
                tagged_world.public[tagged_world.index_of[id(item)]])
    halves = [pair for pair in by_payment.values() if len(pair) == 2]
    assert len(halves) == 5  # 3 planted cross-platform payments + 2 of one amount
    for first, second in halves:
        assert not shared_runs(first, second)
    tagged = [v for pair in halves for v in pair]
    for a, b in combinations(tagged, 2):
        assert not shared_runs(a, b)
