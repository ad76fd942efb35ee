"""Problems raised by the routes themselves (not by the domain), handled centrally."""

from __future__ import annotations

from typing import Any


class ProblemException(Exception):
    """An API-level problem: ``slug`` names a problem type of :mod:`api.problems`.

    ``extensions`` are extra members of the problem document (RFC 9457 §3.2), e.g. the
    log's ``size`` when a range reaches past it.
    """

    def __init__(self, slug: str, detail: str, headers: dict[str, str] | None = None,
                 extensions: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.slug = slug
        self.detail = detail
        self.headers = headers
        self.extensions = extensions if extensions is not None else {}
