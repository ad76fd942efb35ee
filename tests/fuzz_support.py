"""Schema-driven fuzzing of one of the project's FastAPI apps (schemathesis over the app's own
OpenAPI document): whatever the generated request, valid or not, no 5xx, and every error is
an RFC 9457 problem document."""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode


def fuzz_without_server_errors(app: FastAPI, *, min_operations: int,
                               examples: int = 6) -> tuple[list[int], int]:
    """Send ``examples`` valid and ``examples`` invalid requests per operation; assert no
    5xx and problem documents for every error; return (statuses, operations)."""
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= min_operations
    calls: list[int] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case: Any) -> None:
                response = case.call()
                calls.append(response.status_code)
                assert response.status_code < 500, (case.method, case.path, response.text)
                if response.status_code >= 400:
                    content_type = response.headers.get("content-type", [""])
                    assert content_type[0].startswith("application/problem+json"), content_type
                    document = response.json()
                    assert {"type", "title", "status", "detail", "instance"} <= set(document)
                    assert document["status"] == response.status_code

            try:
                check()
            except Unsatisfiable:  # no invalid request exists for a parameterless GET
                assert mode is GenerationMode.NEGATIVE and not operation.path_parameters
    assert any(status >= 400 for status in calls) and any(status < 300 for status in calls)
    return calls, len(operations)
