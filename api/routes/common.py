"""Shared pieces of the routers: documented problem responses, hex path parameters."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import Path

from api.problems import PROBLEM_MEDIA_TYPE
from api.schemas import ProblemPublic


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem documents with these statuses."""
    descriptions = {400: "Malformed request", 401: "Not authenticated", 403: "Forbidden",
                    404: "Not found", 413: "Body too large", 422: "Invalid input",
                    429: "Too many requests from this member (Retry-After says when to "
                         "retry)",
                    503: "Chain unavailable"}
    return {
        status: {"model": ProblemPublic, "description": descriptions.get(status, "Problem"),
                 "content": {PROBLEM_MEDIA_TYPE: {}}}
        for status in statuses
    }


DigestPath = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{64}$",
                                 description="32 bytes as 64 hex digits")]
MAX_STORED_INT: Final = 2**63 - 1
"""The largest integer the stores hold (SQLite's INTEGER): every integer input is bounded by
it, so a larger one is a 422 problem, never an overflow in the store."""

IndexPath = Annotated[int, Path(ge=0, le=MAX_STORED_INT, description="leaf index in the log")]
RequestIdPath = Annotated[int, Path(ge=1, le=MAX_STORED_INT, description="request id on chain")]
