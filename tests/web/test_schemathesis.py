"""Property-based run of the OpenAPI schema (schemathesis): no input gives a 5xx, and
responses match the schema. Bounded: a few examples per operation, in process (ASGI)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from skypost import Skypost
from skypost.config import load_settings
from skypost.web import create_app
from skypost.web.tokens import create_token
from tests.conftest import TEST_KEY

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
EXAMPLES = {schemathesis.GenerationMode.POSITIVE: 25, schemathesis.GenerationMode.NEGATIVE: 12}


class FakeClient:
    """Stands in for Bluesky when the fuzzer adds accounts: every login works, nothing leaves the machine."""

    def __init__(self, *, on_session: Any, **_: Any):
        self.on_session = on_session

    def login(self) -> str:
        self.on_session("fake-session")
        return "did:plc:fuzz"

    def close(self) -> None:
        pass


@pytest.fixture
def fuzz_app(sqlite_url):
    settings_ = load_settings(env={}, config_file=None, database_url=sqlite_url, secret_key=TEST_KEY,
                              allow_private_urls=True)
    app = Skypost(settings_, client_factory=FakeClient)
    yield app
    app.close()


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda m: m.value)
def test_no_input_makes_the_api_fail(fuzz_app, mode):
    token = create_token(fuzz_app.db, "fuzz", now=time.time())
    auth = {"Authorization": f"Bearer {token}"}
    asgi = create_app(fuzz_app)
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", asgi, headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    exercised = 0
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES[mode], deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call(headers=auth)
            assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text)
            # whether valid-looking input is accepted depends on state (unknown accounts, logins):
            # the checks are that nothing breaks and every answer is the documented one
            case.validate_response(response, checks=CHECKS, headers=auth)

        try:
            run()
        except Unsatisfiable:  # negative mode: an operation without inputs has nothing to get wrong
            assert mode is schemathesis.GenerationMode.NEGATIVE
            continue
        exercised += 1
    assert exercised >= (15 if mode is schemathesis.GenerationMode.POSITIVE else 8)
