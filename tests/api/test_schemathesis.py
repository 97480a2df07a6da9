"""Schemathesis over every operation of the published schema, in-process against the WSGI app.

Every default check runs (server errors, status codes, content types, response
schemas, positive data accepted, negative data rejected, ...) on the examples,
coverage and fuzzing phases, in both positive and negative generation modes, so
that the schema says what the server does and the server does what the schema
says. Path ids are generated too (non-integers included), with the world's
objects at the small ids the coverage phase tries first.
"""

from __future__ import annotations

import os
import re

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings

from cases.api.tokens import token_create
from inference.registry import PACKAGED_MODEL_NAME

MAX_EXAMPLES = int(os.environ.get("PNEUMO_SCHEMATHESIS_EXAMPLES", "10"))
# Reading and signing are a radiologist's; everything else runs as an admin, who sees every site.
RADIOLOGIST_PATHS = re.compile(r"/studies/\{id\}/(claim|release|review|amend|predictions)/$")


@pytest.fixture
def wsgi_app():
    """Django's WSGI application, kept from closing the test's database connection after each request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def tokens(world, admin_user, rad) -> dict[str, str]:
    # The packaged model's name is what the registry writes: its dots must fit the schema.
    world.version.name = PACKAGED_MODEL_NAME
    world.version.save(update_fields=["name"])
    return {"admin": token_create(user=admin_user)[0], "rad": token_create(user=rad)[0]}


# An upload whose every file is refused is 400 (the body says why, file by file): whether bytes are a
# usable X-ray is beyond what a schema can say, and generated files never are one. The same holds for
# an admin, who sees every site, giving no site. Every other check still holds for uploads.
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-path": "/api/v1/studies/",
                "include-method": "POST",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429"]}
                },
            }
        ]
    }
)
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application(), config=CONFIG)


@schema.parametrize()
@hypothesis_settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: report what was found, quickly
    suppress_health_check=list(HealthCheck),
)
def test_it_conforms_to_its_schema_under_generated_requests(case, tokens, admin_user, wsgi_app) -> None:
    if case.method == "DELETE":  # revoking the token in use: a token of its own each time
        token = token_create(user=admin_user)[0]
    else:
        token = tokens["rad" if RADIOLOGIST_PATHS.search(case.path) else "admin"]
    case.call_and_validate(headers={"Authorization": f"Token {token}"})
