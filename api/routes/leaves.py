"""``/v1/leaves``: a leaf's status, lookup by hash, its proof bundle and its batch evidence."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import NodeDep, OwnerOrRegulatorDep, ProblemsDep, SettingsDep
from api.routes.common import DigestPath, IndexPath, problem_responses
from api.schemas import LeafStatusPublic, PendingProof, ProofBundlePublic
from ledger_node.errors import UnknownLeaf
from ledger_node.platform.node import PlatformNode

router = APIRouter(prefix="/v1/leaves", tags=["leaves"])


def _status(node: PlatformNode, index: int) -> LeafStatusPublic:
    return LeafStatusPublic.of(node.leaf_status(index), node.leaf_summary(index))


@router.get("/by-hash/{leaf_hash}", response_model=LeafStatusPublic,
            responses=problem_responses(404, 422), summary="Find a leaf by its leaf hash")
def leaf_by_hash(leaf_hash: DigestPath, node: NodeDep) -> LeafStatusPublic:
    """The status of the leaf whose RFC 9162 leaf hash is ``leaf_hash``."""
    index = node.find(bytes.fromhex(leaf_hash))
    if index is None:
        raise UnknownLeaf(f"no leaf with hash {leaf_hash.lower()} in {node.platform}'s log")
    return _status(node, index)


@router.get("/{index}", response_model=LeafStatusPublic,
            responses=problem_responses(404, 422), summary="A leaf's status")
def leaf_status(index: IndexPath, node: NodeDep) -> LeafStatusPublic:
    """Where leaf ``index`` is and whether a checkpoint covering it is anchored."""
    return _status(node, index)


@router.get(
    "/{index}/bundle",
    response_model=ProofBundlePublic,
    responses={202: {"model": PendingProof, "description": "Not anchored yet; retry later",
                     "headers": {"Retry-After": {"description": "seconds",
                                                 "schema": {"type": "integer"}}}},
               **problem_responses(404, 422)},
    summary="A leaf's proof bundle (202 while pending)",
)
def leaf_bundle(index: IndexPath, request: Request, node: NodeDep, settings: SettingsDep,
                problems: ProblemsDep) -> JSONResponse:
    """The self-contained proof bundle of leaf ``index`` against the latest anchored checkpoint.

    While no anchored checkpoint covers the leaf the answer is 202 with ``Retry-After``.
    """
    bundle = node.proof_bundle(index)
    if bundle is None:
        retry = settings.retry_after_s
        body = PendingProof(
            type=problems.type_uri("proof-pending"), title="Proof pending", status=202,
            detail=f"leaf {index} is committed but no anchored checkpoint covers it yet; "
                   f"retry after {retry} s",
            instance=request.url.path, index=index, retry_after=retry,
        )
        return JSONResponse(body.model_dump(), status_code=202,
                            headers={"Retry-After": str(retry)})
    return JSONResponse(bundle.to_json())


@router.get(
    "/{index}/evidence",
    responses=problem_responses(401, 403, 404, 422),
    summary="The signed batch a leaf arrived in (own platform or regulator, signed request)",
)
def leaf_evidence(index: IndexPath, node: NodeDep, member: OwnerOrRegulatorDep
                  ) -> dict[str, Any]:
    """Non-repudiation evidence of leaf ``index``: who signed its batch, the digest, the
    signature and when it arrived. Needs an SM2-signed request (``X-JL-*`` headers) from this
    log's own platform or a regulator.
    """
    batch = node.leaf_batch(index)  # UnknownLeaf for an index beyond the log
    return {
        "index": index,
        "batch": batch.id,
        "signer": batch.evidence.signer,
        "digest": batch.evidence.digest.hex(),
        "signature": batch.evidence.signature.hex(),
        "received_at": batch.received_at,
        "leaf_count": len(batch.indexes),
        "requested_by": member.address,
    }
