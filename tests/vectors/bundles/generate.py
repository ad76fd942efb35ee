"""Regenerate the proof-bundle vectors for key-only verification (no chain needed).

A fixed platform key (scalar 0x1234…), a seeded log and one honest bundle per log shape
(SM3 and SHA-256, with and without match tags, a one-leaf tree); every other vector applies
one mutation to an honest document. Run from the repository root::

    .venv/bin/python tests/vectors/bundles/generate.py

Each output file is one case, named ``<shape>-<mutation>.json``, with ``desc``,
``checkpoint_key`` (the raw 64-byte SM2 public key x‖y, hex), ``bundle`` and what must
happen: ``want_parse_error`` (the field ``InvalidBundle`` names, or ``null``) and
``want_failed_check`` (the first check that fails in key-only mode, or ``null`` when the
verdict must be valid). SM2 signatures are randomised, so a rerun rewrites the signature
bytes of every file; the verdicts stay the same.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger_node.crypto import gmcrypto
from ledger_node.log import merkle
from ledger_node.log.checkpoint import Checkpoint, log_id_for, sign_checkpoint
from ledger_node.log.leaf import Leaf
from ledger_node.protocol.bundle import ChainAnchor, build_bundle

HERE = Path(__file__).resolve().parent
PLATFORM_KEY = gmcrypto.SM2PrivateKey.from_bytes(bytes.fromhex("12345678" * 8))
OTHER_KEY = gmcrypto.SM2PrivateKey.from_bytes(bytes.fromhex("87654321" * 8))
ANCHOR = ChainAnchor(
    chain_id=131277322940537,
    contract="0x2def75a2294B2F755fc2CEe05f896C11eF44A21d",
    deploy_block=4,
    abi_sha256="8bdf5a493550a86c98fbdd3d5b8b8ab5def5b8d42a3d1ad4ba8494c5488fe7d0",
    tx_hash=bytes.fromhex("3f42c19e73e64982e38543d1011d971b3a93b7dacec9a216011ea60be9a7d5c7"),
    block_number=6,
)
TIMESTAMP = 1795753121

Document = dict[str, Any]
Edit = Callable[[Document], None]


def honest(hash_name: str, size: int, index: int, tags: bool, seed: int) -> Document:
    """An honest bundle document of leaf ``index`` in a seeded ``size``-leaf log."""
    rng = random.Random(seed)
    leaves = [
        Leaf(rng.randbytes(32), escrow=rng.randbytes(40),
             match_tag=rng.randbytes(32) if tags else None,
             amount_tag=rng.randbytes(32) if tags else None)
        for _ in range(size)
    ]
    log = merkle.MerkleLog(merkle.hasher_for(hash_name))
    log.extend(leaf.leaf_data() for leaf in leaves)
    checkpoint = Checkpoint("unionpay", log_id_for("unionpay"), size, log.root(), TIMESTAMP,
                            hash_name)
    signed = sign_checkpoint(PLATFORM_KEY, checkpoint)
    return build_bundle(leaves[index], index, signed, ANCHOR, log=log).to_json()


def flip(hex_digest: str, byte: int = 0, bit: int = 0) -> str:
    raw = bytearray(bytes.fromhex(hex_digest))
    raw[byte] ^= 1 << bit
    return raw.hex()


def resign(document: Document, **changes: Any) -> None:
    """Change checkpoint fields and sign again with the platform key (a consistent lie)."""
    cp = {**document["checkpoint"], **changes}
    checkpoint = Checkpoint(cp["platform"], bytes.fromhex(cp["log_id"]), cp["tree_size"],
                            bytes.fromhex(cp["root"]), cp["timestamp"], cp["hash"])
    cp["signature"] = sign_checkpoint(PLATFORM_KEY, checkpoint).signature.hex()
    document["checkpoint"] = cp


def sign_with_other_key(document: Document) -> None:
    cp = document["checkpoint"]
    checkpoint = Checkpoint(cp["platform"], bytes.fromhex(cp["log_id"]), cp["tree_size"],
                            bytes.fromhex(cp["root"]), cp["timestamp"], cp["hash"])
    cp["signature"] = sign_checkpoint(OTHER_KEY, checkpoint).signature.hex()


def set_(path: str, value: Any) -> Edit:
    def edit(document: Document) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return edit


# (mutation name, description, edit, want_parse_error, want_failed_check)
MUTATIONS: list[tuple[str, str, Edit, str | None, str | None]] = [
    ("wrong-leaf-commitment", "one bit of the leaf's commitment flipped",
     lambda d: set_("leaf.commitment", flip(d["leaf"]["commitment"]))(d), None, "inclusion"),
    ("wrong-escrow-digest", "one bit of the escrow digest flipped",
     lambda d: set_("leaf.escrow_digest", flip(d["leaf"]["escrow_digest"], 31, 7))(d), None,
     "inclusion"),
    ("modified-proof-0-bit-3", "bit 3 of the first path hash flipped",
     lambda d: set_("path.0", flip(d["path"][0], 0, 3))(d), None, "inclusion"),
    ("truncated-proof", "the last path hash removed",
     lambda d: d["path"].pop(), None, "structure"),
    ("extended-proof", "a path hash appended",
     lambda d: d["path"].append(d["path"][0]), None, "structure"),
    ("modified-root", "checkpoint root changed, old signature kept",
     lambda d: set_("checkpoint.root", flip(d["checkpoint"]["root"]))(d), None, "inclusion"),
    ("resigned-root", "checkpoint root changed and re-signed: the path no longer reaches it",
     lambda d: resign(d, root=flip(d["checkpoint"]["root"])), None, "inclusion"),
    ("wrong-index", "index moved to the neighbouring leaf",
     lambda d: set_("index", d["index"] ^ 1)(d), None, "inclusion"),
    ("index-out-of-tree", "index equal to the tree size",
     lambda d: set_("index", d["tree_size"])(d), None, "structure"),
    ("wrong-tree-size", "bundle tree size differs from the checkpoint's",
     lambda d: set_("tree_size", d["tree_size"] + 1)(d), None, "structure"),
    ("hash-names-disagree", "bundle says one hash, checkpoint another",
     lambda d: set_("hash", "sha256" if d["hash"] == "sm3" else "sm3")(d), None, "structure"),
    ("modified-timestamp", "checkpoint timestamp changed, old signature kept",
     lambda d: set_("checkpoint.timestamp", TIMESTAMP + 1)(d), None, "signature"),
    ("modified-platform", "checkpoint platform renamed, old signature kept",
     set_("checkpoint.platform", "wechatpay"), None, "signature"),
    ("modified-signature", "one bit of the signature's r flipped",
     lambda d: set_("checkpoint.signature", flip(d["checkpoint"]["signature"], 10, 1))(d),
     None, "signature"),
    ("signature-by-another-key", "checkpoint signed with another member's key",
     sign_with_other_key, None, "signature"),
    ("format-v2", "an unknown format version", set_("format", "jointledger/proof-bundle/v2"),
     "format", None),
    ("unknown-hash", "hash md5", set_("hash", "md5"), "hash", None),
    ("short-path-element", "a path hash of 31 bytes",
     lambda d: set_("path.0", d["path"][0][:62])(d) if d["path"] else None, "path[0]", None),
    ("tx-hash-without-0x", "anchor tx_hash without its 0x",
     lambda d: set_("anchor.tx_hash", d["anchor"]["tx_hash"][2:])(d), "anchor.tx_hash", None),
    ("unknown-field", "an extra top-level field", set_("node", "unionpay-1"), "node", None),
]

SHAPES: dict[str, tuple[str, int, int, bool, int]] = {
    # name: (hash, size, index, match tags, seed)
    "sm3": ("sm3", 13, 6, False, 1),
    "sm3-tags": ("sm3", 8, 3, True, 2),
    "sha256": ("sha256", 21, 9, False, 3),
}


def main() -> None:
    key = PLATFORM_KEY.public_key().raw.hex()
    for path in HERE.glob("*.json"):
        path.unlink()
    cases: dict[str, Document] = {}
    single = honest("sm3", 1, 0, False, 4)
    cases["sm3-single-leaf-happy-path"] = {
        "desc": "a one-leaf tree: empty path, the root is the leaf hash",
        "bundle": single, "want_parse_error": None, "want_failed_check": None}
    for shape, args in SHAPES.items():
        base = honest(*args)
        cases[f"{shape}-happy-path"] = {"desc": f"an honest {args[0]} bundle", "bundle": base,
                                        "want_parse_error": None, "want_failed_check": None}
        for name, desc, edit, parse_error, failed_check in MUTATIONS:
            document = copy.deepcopy(base)
            edit(document)
            cases[f"{shape}-{name}"] = {"desc": desc, "bundle": document,
                                        "want_parse_error": parse_error,
                                        "want_failed_check": failed_check}
    for name, case in sorted(cases.items()):
        body = {"desc": case["desc"], "checkpoint_key": key, **case}
        (HERE / f"{name}.json").write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} vectors to {HERE}")


if __name__ == "__main__":
    main()
