"""Regenerate the Merkle proof mutation vectors from the published reference data.

Every value comes from ``reference.json`` (transparency-dev/merkle's RFC 6962 test data);
this script only applies mutations to the published proofs and roots, it never computes a
hash, so the vectors do not depend on the code they test. Run from the repository root::

    .venv/bin/python tests/vectors/merkle/generate.py

Each output file is one case, named ``<kind>-<sizes>-<mutation>.json``, with ``desc`` and
``want_err`` (``null``, ``"InvalidProof"`` for a malformed proof, or
``"RootMismatchError"`` when a well-formed proof must compute another root).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MALFORMED = "InvalidProof"
MISMATCH = "RootMismatchError"
GARBAGE = b"WrongRoot".hex()  # right type, wrong length


def _flip(hex_digest: str, bit: int) -> str:
    raw = bytearray(bytes.fromhex(hex_digest))
    raw[0] ^= 1 << bit
    return raw.hex()


def _add(
    out: dict[str, dict[str, Any]],
    prefix: str,
    base: dict[str, Any],
    mutation: str,
    desc: str,
    want_err: str | None,
    **changes: Any,
) -> None:
    out[f"{prefix}-{mutation}"] = {**base, **changes, "desc": desc, "want_err": want_err}


def inclusion_cases(ref: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return ``{file stem: case}`` for every published inclusion proof and its mutations."""
    roots: dict[str, str] = ref["roots"]
    leaf_hashes: list[str] = ref["node_hashes"][0]
    out: dict[str, dict[str, Any]] = {}
    for known in ref["inclusion_proofs"]:
        index, size, proof = known["index"], known["size"], list(known["proof"])
        root = roots[str(size)]
        other_root = next(r for r in roots.values() if r != root)
        base = {
            "kind": "inclusion",
            "hash": ref["hash"],
            "index": index,
            "size": size,
            "leaf_hash": leaf_hashes[index],
            "proof": proof,
            "root": root,
        }
        add = partial(_add, out, f"inclusion-{index}-{size}", base)
        add("happy-path", f"published proof for leaf {index} of {size}", None)
        add("wrong-leaf", "hash of another leaf", MISMATCH, leaf_hash=leaf_hashes[(index + 1) % 8])
        add("wrong-leaf-length", "leaf hash of the wrong length", MALFORMED, leaf_hash=GARBAGE)
        add("wrong-root", "root of another tree size", MISMATCH, root=other_root)
        add("empty-root", "root of the empty tree", MISMATCH, root=ref["empty_root"])
        add("wrong-root-length", "root of the wrong length", MALFORMED, root=GARBAGE)
        if index > 0:
            add("wrong-index-minus-1", "index - 1", MALFORMED, index=index - 1)
        add("wrong-index-plus-1", "index + 1", MALFORMED, index=index + 1)
        add("wrong-index-xor-2", "index ^ 2", MALFORMED, index=index ^ 2)
        add("wrong-size-double", "size * 2", MALFORMED, size=size * 2)
        add("wrong-size-half", "size // 2", MALFORMED, size=size // 2)
        add("wrong-size-zero", "size 0", MALFORMED, size=0)
        add("extended", "root appended to the proof", MALFORMED, proof=[*proof, root])
        add("extended-garbage", "empty element appended", MALFORMED, proof=[*proof, ""])
        add("preceding-root", "root prepended to the proof", MALFORMED, proof=[root, *proof])
        for i in range(len(proof)):
            modified = list(proof)
            modified[i] = _flip(proof[i], 3)
            add(
                f"modified-proof-{i}-bit-3",
                f"bit 3 of proof[{i}] flipped",
                MISMATCH,
                proof=modified,
            )
        if proof:
            add("truncated", "last element removed", MALFORMED, proof=proof[:-1])
            add("empty-proof", "proof emptied", MALFORMED, proof=[])
        if len(proof) > 1:
            add(
                "reordered",
                "first two elements swapped",
                MISMATCH,
                proof=[proof[1], proof[0], *proof[2:]],
            )
            add(
                "inserted-component",
                "an element inserted after proof[0]",
                MALFORMED,
                proof=[proof[0], other_root, *proof[1:]],
            )
    return out


def consistency_cases(ref: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return ``{file stem: case}`` for every published consistency proof and its mutations."""
    roots: dict[str, str] = {"0": ref["empty_root"], **ref["roots"]}
    out: dict[str, dict[str, Any]] = {}
    known_proofs = [
        *ref["consistency_proofs"],
        # Proofs that RFC 9162 defines as empty, with published roots.
        {"size1": 0, "size2": 0, "proof": []},
        {"size1": 0, "size2": 8, "proof": []},
        {"size1": 8, "size2": 8, "proof": []},
    ]
    for known in known_proofs:
        size1, size2, proof = known["size1"], known["size2"], list(known["proof"])
        root1, root2 = roots[str(size1)], roots[str(size2)]
        other_root = next(r for r in ref["roots"].values() if r not in (root1, root2))
        base = {
            "kind": "consistency",
            "hash": ref["hash"],
            "size1": size1,
            "size2": size2,
            "root1": root1,
            "root2": root2,
            "proof": proof,
        }
        add = partial(_add, out, f"consistency-{size1}-{size2}", base)
        add("happy-path", f"published proof from {size1} to {size2}", None)
        if size1 == 0 and size2 > 0:
            add("wrong-root1", "root1 not the empty root", MISMATCH, root1=other_root)
        else:  # from the empty tree any root2 is consistent
            add("wrong-root2", "root2 of another tree size", MISMATCH, root2=other_root)
        add("wrong-root2-length", "root2 of the wrong length", MALFORMED, root2=GARBAGE)
        add("wrong-root1-length", "root1 of the wrong length", MALFORMED, root1=GARBAGE)
        add("extended-root1", "root1 appended", MALFORMED, proof=[*proof, root1])
        if size1 == size2 and size1 > 0:
            add("wrong-size2-plus-1", "size2 + 1 with an empty proof", MALFORMED, size2=size2 + 1)
        if size1 == 0 or size1 == size2:
            continue
        add("wrong-root1", "root1 of another tree size", MISMATCH, root1=other_root)
        add("swapped-roots", "root1 and root2 swapped", MISMATCH, root1=root2, root2=root1)
        add("wrong-size1-minus-1", "size1 - 1", MALFORMED, size1=size1 - 1)
        add("wrong-size1-plus-1", "size1 + 1", MALFORMED, size1=size1 + 1)
        add("wrong-size1-xor-2", "size1 ^ 2", MALFORMED, size1=size1 ^ 2)
        add("wrong-size2-double", "size2 * 2", MALFORMED, size2=size2 * 2)
        add("wrong-size2-half", "size2 // 2", MALFORMED, size2=size2 // 2)
        add("sizes-swapped", "size1 and size2 swapped", MALFORMED, size1=size2, size2=size1)
        add("empty-proof", "proof emptied", MALFORMED, proof=[])
        add("truncated", "last element removed", MALFORMED, proof=proof[:-1])
        add("extended-root2", "root2 appended", MALFORMED, proof=[*proof, root2])
        add("extended-garbage", "empty element appended", MALFORMED, proof=[*proof, ""])
        add("preceding-root1", "root1 prepended", MALFORMED, proof=[root1, *proof])
        add("preceding-proof-0", "proof[0] prepended", MALFORMED, proof=[proof[0], *proof])
        for i in range(len(proof)):
            modified = list(proof)
            modified[i] = _flip(proof[i], 4)
            add(
                f"modified-proof-{i}-bit-4",
                f"bit 4 of proof[{i}] flipped",
                MISMATCH,
                proof=modified,
            )
        if len(proof) > 1:
            add(
                "reordered",
                "first two elements swapped",
                MISMATCH,
                proof=[proof[1], proof[0], *proof[2:]],
            )
    return out


def main() -> None:
    """Rewrite every ``inclusion-*.json`` and ``consistency-*.json`` file next to this one."""
    ref = json.loads((HERE / "reference.json").read_text())
    for old in [*HERE.glob("inclusion-*.json"), *HERE.glob("consistency-*.json")]:
        old.unlink()
    cases = {**inclusion_cases(ref), **consistency_cases(ref)}
    for stem, case in sorted(cases.items()):
        (HERE / f"{stem}.json").write_text(json.dumps(case, indent=2) + "\n")
    print(f"wrote {len(cases)} vector files to {HERE}")


if __name__ == "__main__":
    main()
