"""``GET /v1/health``: chain reachability (from the node's background probe, with its age),
store size, last anchored checkpoint, finality and the sealer's latest failure (with the
contract's custom error when it reverted)."""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request

from api.deps import NodeDep, ProblemsDep
from api.routes.common import checkpoint_json
from api.schemas import Health, ProblemPublic

router = APIRouter(prefix="/v1/health", tags=["health"])


FRESH_PROBE_WAIT_S: Final = 1.0
"""How long health waits for a fresh chain probe before answering from the latest one."""


@router.get("", response_model=Health,
            responses={503: {"model": ProblemPublic, "description": "Chain unreachable"}},
            summary="Node health")
def health(request: Request, node: NodeDep, problems: ProblemsDep) -> Any:
    """200 with the log's state when the chain answers; 503 problem (with the same state
    under ``health``) when it does not. ``status`` is ``degraded`` also while anchoring
    fails (``anchoring.last_error`` says why).

    The chain is judged from the node's background probe (``chain.checked_at``,
    ``chain.age_s``): health asks for a fresh one and waits for it at most
    :data:`FRESH_PROBE_WAIT_S`, never behind a probe stuck in the RPC client's retries.
    """
    status = node.chain_status(wait=FRESH_PROBE_WAIT_S)
    chain: dict[str, Any] = {"reachable": status.reachable}
    if status.probe is not None:
        chain.update({
            "chain_id": status.probe.chain_id,
            "block_number": status.probe.block_number,
            "contract": node.deployment.address,
            "latest_anchored_size": status.probe.latest_anchored_size,
        })
    else:
        chain["error"] = status.error
    chain.update({
        "checked_at": status.checked_at,
        "age_s": None if status.age_s is None else round(status.age_s, 3),
        "last_answered_at": status.last_answered_at,
    })
    last = node.latest_checkpoint()
    sealer = node.sealer_status()
    document = {
        "status": "ok" if chain["reachable"] and not sealer.failing else "degraded",
        "platform": node.platform,
        "log_id": node.log_id.hex(),
        "hash": node.hash_name,
        "store_size": node.size(),
        "chain": chain,
        "last_anchored": None if last is None else checkpoint_json(last, sealer.final_size),
        "final_size": sealer.final_size,
        "anchoring": {
            "failing": sealer.failing,
            "failures": sealer.anchoring_failures,
            "last_error": sealer.last_error,
            "confirmations": sealer.confirmations,
            "final_size": sealer.final_size,
            "checked_head": sealer.checked_head,
            "lost_anchorings": sealer.lost_anchorings,
        },
    }
    if not chain["reachable"]:
        return problems.response("chain-unavailable", f"the chain does not answer: "
                                 f"{chain.get('error')}", request.url.path, health=document)
    return document
