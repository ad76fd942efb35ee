"""Problems raised by the routes themselves (not by the domain), handled centrally."""

from __future__ import annotations


class ProblemException(Exception):
    """An API-level problem: ``slug`` names a problem type of :mod:`api.problems`."""

    def __init__(self, slug: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.slug = slug
        self.detail = detail
        self.headers = headers
