"""HTTP service settings, read from ``JL_*`` environment variables or passed explicitly."""

from __future__ import annotations

from typing import Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
"""The addresses a node may bind to."""


class Settings(BaseSettings):
    """Limits and knobs of the HTTP layer (the node's own settings live in ``NodeConfig``)."""

    model_config = SettingsConfigDict(env_prefix="JL_", extra="ignore")

    max_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted; larger ones get 413 before parsing.",
    )
    max_batch: int = Field(default=10_000, ge=1, le=10_000,
                           description="Most leaves in one submission.")
    clock_skew_ms: int = Field(default=30_000, ge=1_000,
                               description="Allowed distance of X-JL-Timestamp from now.")
    nonce_capacity: int = Field(default=100_000, ge=1,
                                description="Nonces remembered for replay protection.")
    membership_ttl_s: float = Field(default=2.0, ge=0.0,
                                    description="Seconds a chain membership record is cached.")
    retry_after_s: int = Field(default=1, ge=1,
                               description="Retry-After sent with 202 for pending proofs.")
    problem_base_uri: str = Field(
        default="https://jointledger.example/problems/",
        description="Prefix of the RFC 9457 problem type URIs.",
    )
