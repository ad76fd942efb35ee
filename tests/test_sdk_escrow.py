"""The SDK seals each record's AML escrow for the regulator: one SM2 wrap per submitted batch."""

from __future__ import annotations

import random

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ledger_node.client.sdk import PlatformClient
from ledger_node.demo.run import sample_records
from ledger_node.errors import InvalidIdentity
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.aml import PartyKind
from ledger_node.protocol.escrow import EscrowOpener, EscrowPayload, identity_key
from tests.api_support import Consortium

KINDS = (PartyKind.PERSON, PartyKind.INSTITUTION)


def client_for(consortium: Consortium, node: PlatformNode, sent: list[bytes]) -> PlatformClient:
    app = TestClient(create_app(node))

    def record(request: httpx.Request) -> None:
        sent.append(request.read())

    http = httpx.Client(transport=app._transport, base_url="http://testserver",
                        event_hooks={"request": [record]})
    return PlatformClient("http://testserver", "unionpay", consortium.unionpay.account.address,
                          consortium.unionpay.sm2_key, http=http, chunk_size=4,
                          regulator_key=consortium.pboc.sm2_key.public_key())


def test_escrows_open_for_the_regulator_one_key_per_batch(consortium: Consortium,
                                                          node: PlatformNode) -> None:
    sent: list[bytes] = []
    client = client_for(consortium, node, sent)
    records = sample_records("unionpay", 10, random.Random(8))
    submitted = client.submit_records(records, kinds=lambda record: KINDS)

    opener = EscrowOpener.from_keys(consortium.pboc.sm2_key)
    for item in submitted:
        leaf = node.leaf(item.receipt.index)
        payload = opener.open(leaf.escrow, leaf.commitment)
        assert payload == EscrowPayload.from_record(item.prepared.record, payer_kind=KINDS[0],
                                                    payee_kind=KINDS[1])
        assert payload.payer_key == identity_key(item.prepared.record.payer_identity)
    assert opener.sm2_decryptions == 3  # chunks of 4, 4 and 2: one unwrap per batch
    wrapped = {node.leaf(s.receipt.index).escrow[17:129] for s in submitted}
    assert len(wrapped) == 3

    wire = b"".join(sent)
    for record in records:
        for secret in (record.payer_identity, record.payer_account, record.local_tx_id):
            assert secret.encode() not in wire


def test_identities_that_are_not_id_numbers_need_explicit_kinds(consortium: Consortium,
                                                                node: PlatformNode) -> None:
    client = client_for(consortium, node, [])
    size = node.size()
    with pytest.raises(InvalidIdentity, match="neither a resident ID nor a unified social"):
        client.submit_records(sample_records("unionpay", 2, random.Random(9)))
    assert node.size() == size  # nothing was sent


def test_without_a_regulator_key_no_escrow_is_made(consortium: Consortium,
                                                   node: PlatformNode) -> None:
    app = TestClient(create_app(node))
    client = PlatformClient("http://testserver", "unionpay", consortium.unionpay.account.address,
                            consortium.unionpay.sm2_key, http=app)
    submitted = client.submit_records(sample_records("unionpay", 2, random.Random(10)))
    assert all(node.leaf(s.receipt.index).escrow == b"" for s in submitted)
