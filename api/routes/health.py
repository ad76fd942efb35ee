"""``GET /v1/health``: chain reachability (from the node's background probe, with its age),
store size, last anchored checkpoint, finality, the sealer's latest failure (with the
contract's custom error when it reverted) and whether intake is halted (a store behind the
chain, or damaged)."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import NodeDep, ProblemsDep
from api.problems import problem_extensions, problem_slug_for
from api.schemas import (
    AnchoringHealth,
    ChainHealth,
    CheckpointPublic,
    CryptoPublic,
    Health,
    ProblemPublic,
)
from ledger_node.crypto.gmcrypto import crypto_backends

router = APIRouter(prefix="/v1/health", tags=["health"])


FRESH_PROBE_WAIT_S: Final = 1.0
"""How long health waits for a fresh chain probe before answering from the latest one."""


@router.get("", response_model=Health,
            responses={503: {"model": ProblemPublic, "description": "Chain unreachable, or "
                              "intake halted (store-behind-chain, store-damaged)"}},
            summary="Node health")
def health(request: Request, node: NodeDep, problems: ProblemsDep) -> Health | JSONResponse:
    """200 with the log's state when the chain answers; 503 problem (with the same state
    under ``health``) when it does not. ``status`` is ``degraded`` also while anchoring
    fails (``anchoring.last_error`` says why). While intake is halted the answer is 503
    ``store-behind-chain`` (with ``chain_size`` and ``store_size``) or ``store-damaged``
    (with the damaged leaf's ``index``), whatever the chain does.

    The chain is judged from the node's background probe (``chain.checked_at``,
    ``chain.age_s``): health asks for a fresh one and waits for it at most
    :data:`FRESH_PROBE_WAIT_S`, never behind a probe stuck in the RPC client's retries.
    """
    chain = ChainHealth.of(node.chain_status(wait=FRESH_PROBE_WAIT_S), node.deployment.address)
    last = node.latest_checkpoint()
    sealer = node.sealer_status()
    halted = node.intake_halted()
    document = Health(
        status="ok" if chain.reachable and not sealer.failing and halted is None
        else "degraded",
        platform=node.platform,
        log_id=node.log_id.hex(),
        hash=node.hash_name,
        store_size=node.size(),
        chain=chain,
        last_anchored=None if last is None else CheckpointPublic.of(last, sealer.final_size),
        final_size=sealer.final_size,
        anchoring=AnchoringHealth.of(sealer),
        crypto=CryptoPublic(**crypto_backends()),
        intake_halted=None if halted is None else str(halted),
    )
    if halted is not None:
        return problems.response(problem_slug_for(halted), str(halted), request.url.path,
                                 health=document.model_dump(mode="json", exclude_unset=True),
                                 **problem_extensions(halted))
    if not chain.reachable:
        # The problem carries the fields that apply (exclude_unset), as it always has: an
        # unreachable chain has no chain_id, block_number, contract or anchored size.
        return problems.response("chain-unavailable", f"the chain does not answer: "
                                 f"{chain.error}", request.url.path,
                                 health=document.model_dump(mode="json", exclude_unset=True))
    return document
