"""The Merkle code against the published RFC 6962 reference data and its mutation vectors.

``tests/vectors/merkle/reference.json`` holds transparency-dev/merkle's published tree
(leaves, node hashes, roots for sizes 0..8, known proofs); every other file there is one
mutation of a published proof (see ``generate.py``), run here one test per file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledger_node.errors import InvalidProof, RootMismatchError
from ledger_node.log.merkle import (
    SHA256_HASHER,
    MerkleLog,
    consistency_proof,
    hasher_for,
    inclusion_proof,
    root_from_consistency_proof,
    root_from_inclusion_proof,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent / "vectors" / "merkle"
REFERENCE: dict[str, Any] = json.loads((VECTORS / "reference.json").read_text())
LEAVES = [bytes.fromhex(x) for x in REFERENCE["leaves"]]
ERRORS: dict[str, type[InvalidProof]] = {
    "InvalidProof": InvalidProof,
    "RootMismatchError": RootMismatchError,
}
CASE_FILES = sorted(
    [*VECTORS.glob("inclusion-*.json"), *VECTORS.glob("consistency-*.json")],
    key=lambda p: p.stem,
)


def _h(value: str) -> bytes:
    return bytes.fromhex(value)


def _run(case: dict[str, Any]) -> None:
    hasher = hasher_for(case["hash"])
    proof = [_h(p) for p in case["proof"]]
    if case["kind"] == "inclusion":
        verify_inclusion(
            hasher, case["index"], case["size"], _h(case["leaf_hash"]), proof, _h(case["root"])
        )
    else:
        verify_consistency(
            hasher, case["size1"], case["size2"], proof, _h(case["root1"]), _h(case["root2"])
        )


def test_vector_files_present() -> None:
    names = {p.stem for p in CASE_FILES}
    assert len(CASE_FILES) > 150
    for stem in (
        "inclusion-5-8-happy-path",
        "inclusion-5-8-wrong-leaf",
        "inclusion-5-8-modified-proof-2-bit-3",
        "inclusion-5-8-reordered",
        "consistency-6-8-swapped-roots",
        "consistency-2-5-empty-proof",
        "consistency-6-7-truncated",
    ):
        assert stem in names


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.stem)
def test_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    assert case["desc"]
    want = case["want_err"]
    if want is None:
        _run(case)
    else:
        with pytest.raises(ERRORS[want]):
            _run(case)


def test_generator_output_is_committed_state() -> None:
    """The vector files are exactly what generate.py writes from reference.json."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("merkle_vector_gen", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    cases = {**gen.inclusion_cases(REFERENCE), **gen.consistency_cases(REFERENCE)}
    assert sorted(cases) == [p.stem for p in CASE_FILES]
    for path in CASE_FILES:
        assert json.loads(path.read_text()) == cases[path.stem]


@pytest.mark.parametrize("size", range(0, 9))
def test_reference_roots(size: int) -> None:
    want = _h(REFERENCE["empty_root"] if size == 0 else REFERENCE["roots"][str(size)])
    assert tree_root(SHA256_HASHER, LEAVES[:size]) == want
    assert MerkleLog.from_leaves(SHA256_HASHER, LEAVES).root(size) == want
    log = MerkleLog(SHA256_HASHER)
    for leaf in LEAVES[:size]:
        log.append(leaf)
    assert log.root() == want


def test_reference_node_hashes() -> None:
    """Every published complete-subtree hash is what the log stores at that level."""
    log = MerkleLog.from_leaves(SHA256_HASHER, LEAVES)
    store = log._store
    for level, nodes in enumerate(REFERENCE["node_hashes"]):
        assert store.count(level) == len(nodes)
        for i, node in enumerate(nodes):
            assert store.get(level, i) == _h(node)


@pytest.mark.parametrize(
    "known", REFERENCE["inclusion_proofs"], ids=lambda k: f"{k['index']}-{k['size']}"
)
def test_reference_inclusion_proofs_generated(known: dict[str, Any]) -> None:
    index, size = known["index"], known["size"]
    want = [_h(p) for p in known["proof"]]
    got = inclusion_proof(SHA256_HASHER, LEAVES, index, size)
    assert list(got.path) == want
    assert (got.index, got.size) == (index, size)
    leaf_hash = _h(REFERENCE["node_hashes"][0][index])
    root = root_from_inclusion_proof(SHA256_HASHER, index, size, leaf_hash, want)
    assert root == _h(REFERENCE["roots"][str(size)])


@pytest.mark.parametrize(
    "known", REFERENCE["consistency_proofs"], ids=lambda k: f"{k['size1']}-{k['size2']}"
)
def test_reference_consistency_proofs_generated(known: dict[str, Any]) -> None:
    size1, size2 = known["size1"], known["size2"]
    want = [_h(p) for p in known["proof"]]
    got = consistency_proof(SHA256_HASHER, LEAVES, size1, size2)
    assert list(got.path) == want
    root1 = _h(REFERENCE["roots"][str(size1)])
    root2 = root_from_consistency_proof(SHA256_HASHER, size1, size2, want, root1)
    assert root2 == _h(REFERENCE["roots"][str(size2)])
