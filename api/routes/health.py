"""``GET /v1/health``: chain reachability, store size, last anchored checkpoint, finality and
the sealer's latest failure (with the contract's custom error when it reverted)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.deps import NodeDep, ProblemsDep
from api.routes.common import checkpoint_json
from api.schemas import Health, ProblemPublic
from ledger_node.errors import LedgerError

router = APIRouter(prefix="/v1/health", tags=["health"])


@router.get("", response_model=Health,
            responses={503: {"model": ProblemPublic, "description": "Chain unreachable"}},
            summary="Node health")
def health(request: Request, node: NodeDep, problems: ProblemsDep) -> Any:
    """200 with the log's state when the chain answers; 503 problem (with the same state
    under ``health``) when it does not. ``status`` is ``degraded`` also while anchoring
    fails (``anchoring.last_error`` says why)."""
    chain: dict[str, Any] = {"reachable": False}
    try:
        with node.chain_lock:
            chain = {
                "reachable": True,
                "chain_id": node.chain.chain_id,
                "block_number": node.chain.block_number(),
                "contract": node.deployment.address,
            }
            latest = node.chain.latest_checkpoint(node.log_id)
            chain["latest_anchored_size"] = None if latest is None else latest.tree_size
    except (LedgerError, OSError, ValueError) as exc:
        chain = {"reachable": False, "error": f"{type(exc).__name__}: {exc}"}
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
