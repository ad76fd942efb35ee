"""HTTP service settings, read from ``JL_*`` environment variables or passed explicitly.

Every limit of the HTTP layer is here (OWASP API4:2023, unrestricted resource consumption):
how many connections are served at once, how large and how slow a request head may be, how
slow a body, how long a handler may take and how often one member may call the expensive
endpoints. Both node config files read them from their ``[http]`` table
(:data:`SETTINGS_KEYS`), range-checked by the fields below; ``api.serving`` turns them into
uvicorn's configuration, ``api.middleware`` and ``api.ratelimit`` enforce the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledger_node.errors import InvalidConfig


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
    max_connections: int = Field(
        default=256, ge=1, le=100_000,
        description="Connections (and requests in flight) served at once; a request that "
                    "arrives while this many are open is answered 503 at once (uvicorn's "
                    "limit_concurrency) instead of queueing.",
    )
    max_header_bytes: int = Field(
        default=16_384, ge=1_024, le=1_048_576,
        description="Largest request head (request line and headers) buffered; a larger one "
                    "is answered 400 and the connection closed (h11's max incomplete event "
                    "size).",
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0.0, le=600.0,
        description="Seconds a client has to send a whole request head, from the moment the "
                    "connection opens (or the first byte of a later request on it); a slower "
                    "one is answered 408 and the connection closed.",
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0.0, le=3_600.0,
        description="Seconds a client has to send a whole request body once the server "
                    "reads it; a slower one is answered 408 request-timeout and the "
                    "connection closed.",
    )
    keep_alive_s: int = Field(
        default=5, ge=1, le=600,
        description="Seconds an idle keep-alive connection stays open between requests.",
    )
    request_timeout_s: float = Field(
        default=60.0, gt=0.0, le=3_600.0,
        description="Seconds a handler has to answer; a slower one is answered 503 "
                    "handler-timeout (its thread is not killed: see docs/api.md).",
    )
    member_rate_per_s: float = Field(
        default=10.0, gt=0.0, le=100_000.0,
        description="Expensive signed requests (leaf ranges, reconciliation, traces, case "
                    "files, ...) one member may make per second, sustained; over it 429.",
    )
    member_burst: int = Field(
        default=50, ge=1, le=1_000_000,
        description="Expensive signed requests one member may make back to back before "
                    "member_rate_per_s applies (the token bucket's size).",
    )


SETTINGS_KEYS: Final = frozenset({
    "max_body_bytes", "clock_skew_ms", "membership_ttl_s", "nonce_capacity", "retry_after_s",
    "max_connections", "max_header_bytes", "header_timeout_s", "body_timeout_s",
    "keep_alive_s", "request_timeout_s", "member_rate_per_s", "member_burst",
})
"""The :class:`Settings` fields a node config file's ``[http]`` table may set."""


def settings_from_table(http: Mapping[str, Any]) -> Settings:
    """The :class:`Settings` of a config file's ``[http]`` table (keys other than those of
    :data:`SETTINGS_KEYS` are ignored: the caller reads them).

    Raises :class:`InvalidConfig` naming the first key out of range or of the wrong type,
    ``http.header_timeout_s: Input should be greater than 0``.
    """
    values = {key: value for key, value in http.items() if key in SETTINGS_KEYS}
    try:
        return Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first.get("loc", ())) or "?"
        raise InvalidConfig(f"http.{key}: {first.get('msg', 'invalid value')} (got "
                            f"{values.get(key)!r})") from None
