"""Checkpoints: a log's signed tree head, the unit that is anchored on chain (PROTOCOL §5).

A checkpoint says "log L of platform P had ``tree_size`` leaves with root R at time T,
hashed with H". The platform signs its canonical encoding with SM2 so that anyone holding
the platform's public key (read from the chain's membership) can check it off chain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from ledger_node.crypto import gmcrypto
from ledger_node.crypto.encoding import encode_parts
from ledger_node.crypto.hashes import DIGEST_SIZE, sm3
from ledger_node.errors import InvalidCheckpoint, InvalidSignature

LogId = bytes

_HASH_NAMES: Final = ("sm3", "sha256")
_PLATFORM_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_MAX_UINT64: Final = 2**64 - 1


def log_id_for(platform: str, shard: int = 0) -> LogId:
    """Return the 32-byte id of shard ``shard`` of ``platform``'s log.

    A platform may run several logs (intake sharded across machines); the id is a tagged
    SM3 of the platform name and shard number, so it is stable and needs no registry.
    """
    if not _PLATFORM_NAME.fullmatch(platform):
        raise InvalidCheckpoint(f"platform {platform!r} must match [a-z][a-z0-9_-]{{0,31}}")
    if not 0 <= shard < 2**32:
        raise InvalidCheckpoint(f"shard {shard} must be in 0..2**32-1")
    return sm3(encode_parts("log-id", platform.encode(), shard.to_bytes(4, "big")))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log head as the platform asserts it: what gets signed and anchored."""

    platform: str
    log_id: LogId
    tree_size: int
    root: bytes
    timestamp: int  # Unix seconds (UTC) when the sealer made the checkpoint
    hash_name: str = "sm3"

    def __post_init__(self) -> None:
        problem = _checkpoint_problem(self)
        if problem:
            raise InvalidCheckpoint(problem)

    def signing_payload(self) -> bytes:
        """Return the canonical bytes the platform signs (tagged, length-prefixed)."""
        return encode_parts(
            "checkpoint",
            self.platform.encode(),
            self.log_id,
            self.tree_size.to_bytes(8, "big"),
            self.root,
            self.timestamp.to_bytes(8, "big"),
            self.hash_name.encode(),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (hex for bytes)."""
        return {
            "platform": self.platform,
            "log_id": self.log_id.hex(),
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "timestamp": self.timestamp,
            "hash": self.hash_name,
        }

    @classmethod
    def from_json(cls, data: object) -> Checkpoint:
        """Parse the :meth:`to_json` form; raise :class:`InvalidCheckpoint` when malformed."""
        keys = {"platform", "log_id", "tree_size", "root", "timestamp", "hash"}
        if not isinstance(data, dict) or set(data) != keys:
            raise InvalidCheckpoint(f"a checkpoint is an object with exactly {sorted(keys)}")
        for name in ("tree_size", "timestamp"):
            if isinstance(data[name], bool) or not isinstance(data[name], int):
                raise InvalidCheckpoint(f"{name} must be an integer")
        for name in ("platform", "log_id", "root", "hash"):
            if not isinstance(data[name], str):
                raise InvalidCheckpoint(f"{name} must be a string")
        try:
            log_id, root = bytes.fromhex(data["log_id"]), bytes.fromhex(data["root"])
        except ValueError:
            raise InvalidCheckpoint("log_id and root must be hex") from None
        return cls(data["platform"], log_id, data["tree_size"], root, data["timestamp"],
                   data["hash"])


def _checkpoint_problem(checkpoint: Checkpoint) -> str | None:
    """Return what is wrong with ``checkpoint``'s fields, or ``None``."""
    if not isinstance(checkpoint.platform, str) or not _PLATFORM_NAME.fullmatch(
        checkpoint.platform
    ):
        return f"platform {checkpoint.platform!r} is not a valid platform name"
    if len(checkpoint.log_id) != 32:
        return f"log_id must be 32 bytes, got {len(checkpoint.log_id)}"
    if not 0 < checkpoint.tree_size <= _MAX_UINT64:
        return f"tree_size must be in 1..2**64-1, got {checkpoint.tree_size}"
    if len(checkpoint.root) != DIGEST_SIZE:
        return f"root must be {DIGEST_SIZE} bytes, got {len(checkpoint.root)}"
    if not 0 <= checkpoint.timestamp <= _MAX_UINT64:
        return f"timestamp must be in 0..2**64-1, got {checkpoint.timestamp}"
    if checkpoint.hash_name not in _HASH_NAMES:
        return f"hash must be one of {_HASH_NAMES}, got {checkpoint.hash_name!r}"
    return None


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint and the platform's DER SM2 signature over its signing payload."""

    checkpoint: Checkpoint
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        """The checkpoint's JSON form followed by ``signature`` (hex DER): a proof bundle's
        ``checkpoint``, and the start of an anchored checkpoint's JSON wherever it is served."""
        return self.checkpoint.to_json() | {"signature": self.signature.hex()}


def sign_checkpoint(
    private_key: gmcrypto.SM2PrivateKey, checkpoint: Checkpoint
) -> SignedCheckpoint:
    """Return ``checkpoint`` signed with the platform's SM2 key (SM3, default user ID)."""
    return SignedCheckpoint(checkpoint, gmcrypto.sign(private_key, checkpoint.signing_payload()))


def verify_checkpoint_signature(
    public_key: gmcrypto.SM2PublicKey, signed: SignedCheckpoint
) -> None:
    """Check the platform's SM2 signature on a checkpoint.

    Raises :class:`InvalidSignature` if it is malformed or was not made by ``public_key``
    over exactly this checkpoint.
    """
    try:
        gmcrypto.verify(public_key, signed.checkpoint.signing_payload(), signed.signature)
    except InvalidSignature as exc:
        raise InvalidSignature(
            f"checkpoint signature of {signed.checkpoint.platform} "
            f"(size {signed.checkpoint.tree_size}) does not verify: {exc}"
        ) from None
