"""Shared pieces of the routers: documented problem responses, hex path parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from api.problems import PROBLEM_MEDIA_TYPE
from api.schemas import ProblemPublic


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
