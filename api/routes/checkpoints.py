"""``/v1/checkpoints`` and ``/v1/consistency``: the log's anchored history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import NodeDep
from api.routes.common import MAX_STORED_INT, problem_responses
from api.schemas import CheckpointList, CheckpointPublic, ConsistencyPublic
from ledger_node.errors import InvalidCheckpoint

router = APIRouter(prefix="/v1", tags=["checkpoints"])

Size = Annotated[int, Query(ge=0, le=MAX_STORED_INT)]


@router.get("/checkpoints", response_model=CheckpointList,
            responses=problem_responses(422), summary="Anchored checkpoints, oldest first")
def list_checkpoints(
    node: NodeDep,
    after: Annotated[int, Query(ge=0, le=MAX_STORED_INT,
                                description="only checkpoints larger than this size")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CheckpointList:
    """This log's checkpoints anchored on chain with their signatures and transactions."""
    selected = node.checkpoints(after=after, limit=limit)
    final = node.sealer_status().final_size
    return CheckpointList(log_id=node.log_id.hex(),
                          checkpoints=[CheckpointPublic.of(c, final) for c in selected])


@router.get("/consistency", response_model=ConsistencyPublic, response_model_by_alias=True,
            responses=problem_responses(404, 422),
            summary="Consistency proof between two anchored sizes")
def consistency(
    node: NodeDep,
    size1: Annotated[int, Query(alias="from", ge=1, le=MAX_STORED_INT)],
    size2: Annotated[int, Query(alias="to", ge=1, le=MAX_STORED_INT)],
) -> ConsistencyPublic:
    """The RFC 9162 proof that the log at ``to`` extends the log at ``from``.

    Both sizes must be anchored checkpoints' (404 ``unknown-checkpoint`` otherwise) and
    ``from <= to`` (422).
    """
    if size1 > size2:
        raise InvalidCheckpoint(f"from ({size1}) must not be larger than to ({size2})")
    proof = node.consistency_proof(size1, size2)
    return ConsistencyPublic.of(node.log_id, node.hash_name, proof,
                                node.checkpoint(size1).root, node.checkpoint(size2).root)
