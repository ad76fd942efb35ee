"""Shared pieces of the routers: documented problem responses, hex path parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from api.problems import PROBLEM_MEDIA_TYPE
from api.schemas import ProblemPublic
from ledger_node.platform.store import StoredCheckpoint


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem documents with these statuses."""
    descriptions = {400: "Malformed request", 401: "Not authenticated", 403: "Forbidden",
                    404: "Not found", 413: "Body too large", 422: "Invalid input",
                    503: "Chain unavailable"}
    return {
        status: {"model": ProblemPublic, "description": descriptions.get(status, "Problem"),
                 "content": {PROBLEM_MEDIA_TYPE: {}}}
        for status in statuses
    }


DigestPath = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{64}$",
                                 description="32 bytes as 64 hex digits")]
IndexPath = Annotated[int, Path(ge=0, le=2**63 - 1, description="leaf index in the log")]


def checkpoint_json(stored: StoredCheckpoint, final_size: int | None = None
                    ) -> dict[str, Any]:
    """The public JSON of an anchored checkpoint (``0x`` transaction hash); with
    ``final_size`` (the node's largest final size) it says whether it is final."""
    document = stored.checkpoint.to_json() | {
        "signature": stored.signature.hex(),
        "tx_hash": None if stored.tx_hash is None else "0x" + stored.tx_hash.hex(),
        "block_number": stored.block_number,
    }
    if final_size is not None:
        document["final"] = stored.anchored and stored.tree_size <= final_size
    return document
