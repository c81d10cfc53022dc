"""Schemathesis drives every operation of the OpenAPI schema with generated inputs: no 500s, responses match."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import response_schema_conformance

from integrand.viewer import create_app
from tests.test_viewer_data import build_results_dir


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("schema")
    app = create_app(build_results_dir(base / "results", base / "outside"))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_api_never_fails(api_schema: Any) -> None:
    """Every operation, strategies generated from its schema (schemathesis' pytest plugin does not load on pytest 9)."""
    tried = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        tried.append(operation.path)

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            response = case.call()
            assert response.status_code < 500, (case.path, case.path_parameters, case.query, response.text[:300])
            case.validate_response(response, checks=[response_schema_conformance])

        check()
    assert len(tried) == 7


def test_schema_documents_every_api_route(api_schema: Any) -> None:
    paths = set(api_schema.raw_schema["paths"])
    assert paths == {
        "/api/results",
        "/api/results/{path}",
        "/api/corpora",
        "/api/corpus/documents",
        "/api/corpus/document",
        "/api/corpus/cues",
        "/api/reports",
    }
    assert all(set(ops) == {"get"} for ops in api_schema.raw_schema["paths"].values())  # read-only API
