"""Checkpoints: canonical signing payload, SM2 signatures, and strict parsing."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from ledger_node.crypto import gmcrypto
from ledger_node.errors import InvalidCheckpoint, InvalidSignature
from ledger_node.log.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    log_id_for,
    sign_checkpoint,
    verify_checkpoint_signature,
)

KEY = gmcrypto.generate_private_key()
CHECKPOINT = Checkpoint(
    platform="unionpay",
    log_id=log_id_for("unionpay", 0),
    tree_size=10_000,
    root=bytes(range(32)),
    timestamp=1_795_748_400,
)


def test_log_ids_are_distinct_per_platform_and_shard() -> None:
    ids = {log_id_for(p, s) for p in ("unionpay", "wechatpay") for s in range(4)}
    assert len(ids) == 8
    assert all(len(i) == 32 for i in ids)
    with pytest.raises(InvalidCheckpoint, match="must match"):
        log_id_for("Union Pay")
    with pytest.raises(InvalidCheckpoint, match="shard"):
        log_id_for("unionpay", -1)


def test_signature_verifies_and_binds_every_field() -> None:
    signed = sign_checkpoint(KEY, CHECKPOINT)
    verify_checkpoint_signature(KEY.public_key(), signed)
    changes: list[dict[str, Any]] = [
        {"platform": "wechatpay"},
        {"log_id": log_id_for("unionpay", 1)},
        {"tree_size": 10_001},
        {"root": bytes(31) + b"\x01"},
        {"timestamp": 1_795_748_401},
        {"hash_name": "sha256"},
    ]
    for change in changes:
        forged = SignedCheckpoint(replace(CHECKPOINT, **change), signed.signature)
        with pytest.raises(InvalidSignature, match="does not verify"):
            verify_checkpoint_signature(KEY.public_key(), forged)


def test_signature_by_another_key_is_rejected() -> None:
    signed = sign_checkpoint(gmcrypto.generate_private_key(), CHECKPOINT)
    with pytest.raises(InvalidSignature):
        verify_checkpoint_signature(KEY.public_key(), signed)
    with pytest.raises(InvalidSignature, match="malformed"):
        verify_checkpoint_signature(KEY.public_key(), SignedCheckpoint(CHECKPOINT, b"\x30\x00"))


def test_json_round_trip() -> None:
    assert Checkpoint.from_json(CHECKPOINT.to_json()) == CHECKPOINT


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tree_size": 0}, "tree_size must be in 1.."),
        ({"tree_size": 2**64}, "tree_size must be in 1.."),
        ({"root": bytes(31)}, "root must be 32 bytes, got 31"),
        ({"log_id": bytes(33)}, "log_id must be 32 bytes"),
        ({"timestamp": -1}, "timestamp must be in"),
        ({"hash_name": "md5"}, "hash must be one of"),
        ({"platform": "Bad Name"}, "not a valid platform name"),
    ],
)
def test_invalid_checkpoints_are_rejected(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidCheckpoint, match=message):
        replace(CHECKPOINT, **change)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "exactly"),
        ({"platform": "unionpay"}, "exactly"),
        (CHECKPOINT.to_json() | {"tree_size": "10"}, "tree_size must be an integer"),
        (CHECKPOINT.to_json() | {"tree_size": True}, "tree_size must be an integer"),
        (CHECKPOINT.to_json() | {"root": 5}, "root must be a string"),
        (CHECKPOINT.to_json() | {"root": "zz"}, "must be hex"),
        (CHECKPOINT.to_json() | {"hash": "md5"}, "hash must be one of"),
    ],
)
def test_malformed_json_is_rejected(document: object, message: str) -> None:
    with pytest.raises(InvalidCheckpoint, match=message):
        Checkpoint.from_json(document)


def test_signed_json_is_the_checkpoints_then_the_signature() -> None:
    signed = sign_checkpoint(KEY, CHECKPOINT)
    document = signed.to_json()
    assert list(document) == ["platform", "log_id", "tree_size", "root", "timestamp", "hash",
                              "signature"]
    assert document == CHECKPOINT.to_json() | {"signature": signed.signature.hex()}
