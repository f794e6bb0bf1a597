"""schemathesis against ``/core/openapi.json``: every operation, generated cases, a fixed seed.

In-process through Django's WSGI handler, on the test world (two organizations,
credentials of every kind, calls in every status). Most cases carry a valid credential
and name a real conversation, so they reach the operations' own rules. Every response
must be documented (status, headers, body; for errors one of the codes the operation
lists for that status) and none may be a 500. Rate limits are raised. More: tests/README.md.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, given, seed, settings
from requests.structures import CaseInsensitiveDict
from schemathesis import APIOperation, Case, CheckFunction, GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from anyreach_listen import alerts
from anyreach_listen.conf import DEFAULTS
from anyreach_listen.models import AlertRule
from anyreach_listen.transcripts import SegmentIn, record
from tests.support.world import TEST_LISTEN_SETTINGS, World

SEED = 20261126
# Per operation and generation mode: 17 operations x 2 modes x 60 = 2,040 cases.
EXAMPLES = 60
OPERATIONS = 17
# Credentials the cases carry (secrets of the world) and whether they send the org header.
CREDENTIALS = [
    ("ak_manage", False),
    ("ak_manage", True),
    ("ak_read_sensitive", False),
    ("pat_admin", True),
    ("pat_supervisor", True),
    ("pat_supervisor_read_only", True),
    ("pat_viewer", True),
    ("ak_other_org", False),
]
# Checks left out, and why:
# - positive_data_acceptance expects a 2xx for any schema-valid request, but a
#   well-formed id that names no team is ``invalid_team`` (400), a cursor must be
#   one the API gave out, and a PAT without the organization header is
#   ``missing_organization`` (400), all as the contract says.
EXCLUDED: list[CheckFunction] = [positive_data_acceptance]


@pytest.fixture
def fuzz_settings(settings: Any) -> None:
    raised = {"RATE_LIMIT_REQUESTS": 10**9, "READ_RATE_LIMIT_REQUESTS": 10**9}
    if "FAILED_AUTH_LIMIT" in DEFAULTS:  # the per-address limit on failed bearer credentials
        raised["FAILED_AUTH_LIMIT"] = 10**9
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, **raised}


def seed_transcripts_and_rules(world: World) -> list[AlertRule]:
    """Rules of both organizations (deletes of real ids reach 200 and 404) and a transcript
    with an alert, so reads return segments and alerts."""
    rules = [
        alerts.create_rule(world.org, phrase=f"phrase {n}", team=world.team if n % 2 else None)
        for n in range(12)
    ]
    rules.append(alerts.create_rule(world.other_org, phrase="not yours"))
    alerts.create_rule(world.org, phrase="charged twice")
    for call in world.conversations.values():
        record(call, [SegmentIn("u1", "user", "I was charged twice.", True)])
    return rules


@dataclass
class Run:
    """The world's credentials and calls, and what the generated cases got."""

    world: World
    rules: list[AlertRule] = field(default_factory=list)
    cases: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)

    def exercise(self, label: str, case: Case) -> None:
        # Round robin over the n-th case of the operation (the seed fixes their order):
        # Hypothesis draws small integers far more often than others.
        pick = self.cases[label]
        self.cases[label] += 1
        headers: dict[str, str] = {}
        if pick % 10:  # nine cases in ten carry a valid credential
            name, with_org = CREDENTIALS[pick % len(CREDENTIALS)]
            headers["Authorization"] = f"Bearer {self.world.secrets[name]}"
            if with_org or name.startswith("pat_"):
                if case.headers is None:
                    case.headers = CaseInsensitiveDict()
                case.headers["X-Anyreach-Org"] = str(self.world.org.pk)
        if case.path_parameters and pick % 5:  # most name a real conversation or rule
            if "conversation_id" in case.path_parameters:
                calls = list(self.world.conversations.values())
                case.path_parameters["conversation_id"] = str(calls[pick % len(calls)].pk)
            if "rule_id" in case.path_parameters:
                case.path_parameters["rule_id"] = str(self.rules[pick % len(self.rules)].pk)
        # Reading meta revalidates the edited components: a negative case whose only invalid
        # part was replaced is then checked as the positive case it became.
        assert case.meta is not None
        try:
            response = case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)
        except BaseException as exc:  # schemathesis raises a group of failures
            if isinstance(exc, KeyboardInterrupt):
                raise
            self.failures.append(f"{label}: {exc}"[:1500])
        else:
            self.statuses[response.status_code] += 1

    def fuzz(self, operation: APIOperation, mode: GenerationMode) -> None:
        label = f"{operation.label} {mode.value}"

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @seed(SEED)
        def run(case: Case) -> None:
            self.exercise(label, case)

        run()


def test_every_operation_answers_every_generated_case_as_documented(
    fuzz_settings: None, world: World
) -> None:
    schema = schemathesis.openapi.from_wsgi("/core/openapi.json", WSGIHandler())
    # A body over 64 KB is refused by its size (413, documented) before its content is read;
    # a negative case whose only fault is a too-long string (a transcript segment's text
    # of 10,000+ characters, JSON-escaped) can be that large.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    run = Run(world, rules=seed_transcripts_and_rules(world))
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run.fuzz(operation, mode)

    cases, statuses = run.cases, run.statuses
    print(f"fuzz: {sum(cases.values())} cases, statuses {dict(sorted(statuses.items()))}")
    assert len(operations) == OPERATIONS
    assert sum(cases.values()) >= 1000, cases
    assert all(count >= EXAMPLES - 10 for count in cases.values()), cases
    assert not any(status >= 500 for status in statuses), statuses
    # The cases got past authentication and reached the operations' own answers.
    assert {200, 201, 400, 401, 403, 404, 409} <= set(statuses), statuses
    failures = run.failures
    assert not failures, f"{len(failures)} failing cases:\n\n" + "\n\n".join(failures[:8])
