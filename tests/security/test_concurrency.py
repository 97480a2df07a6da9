"""Two people acting on one study at the same moment: the row lock lets exactly one of them through.

PostgreSQL only: SQLite serialises writers (IMMEDIATE transactions), so there
is no race to lose there. Each thread has its own database connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from cases.api.tokens import token_create
from cases.models import AuditEvent, Review, Study, User
from cases.reviews import ReadingInput, ReviewError, review_amend, review_sign
from cases.states import StudyStatus

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="races need a server database: SQLite serialises writers, so none can be lost (CI runs PostgreSQL)",
    ),
]
ROUNDS = 5  # fresh studies, so that the two threads meet in the lock more than once


def at_once(*calls: Callable[[], object]) -> list[object]:
    """Run the calls in threads released together; each result, or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except Exception as error:
            results[index] = error
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (a deadlock?)"
    return results


def sign(user: User, study: Study) -> Callable[[], Review]:
    return lambda: review_sign(study_id=study.pk, user=user, reading=ReadingInput(finding="no_pneumonia"))


def test_it_lets_exactly_one_of_two_radiologists_sign_the_same_study(demo_site, rad, colleague_rad, make_study):
    for _ in range(ROUNDS):
        # Given a study awaiting review
        study = make_study(demo_site, status=StudyStatus.AWAITING_REVIEW)

        # When two radiologists sign it at the same moment
        results = at_once(sign(rad, study), sign(colleague_rad, study))

        # Then one review is signed and the other radiologist is told of the conflict
        signed = [r for r in results if isinstance(r, Review)]
        refused = [r for r in results if isinstance(r, ReviewError)]
        assert len(signed) == 1 and len(refused) == 1, results
        assert refused[0].code == "conflict"
        assert Review.objects.filter(study=study).count() == 1
        study.refresh_from_db()
        assert study.status == StudyStatus.REPORTED and study.reviews.get().radiologist == signed[0].radiologist
        assert AuditEvent.objects.filter(action="sign", detail__study_id=study.pk).count() == 1


def amend(user: User, study: Study) -> Callable[[], Review]:
    return lambda: review_amend(
        study_id=study.pk,
        user=user,
        reading=ReadingInput(finding="indeterminate", report=f"Amended by {user.username}"),
        amendment_reason="Second look",
        amends_version=1,
    )


def test_it_lets_exactly_one_of_two_radiologists_amend_the_same_version(demo_site, rad, colleague_rad, make_study):
    for _ in range(ROUNDS):
        # Given a signed study (version 1)
        study = make_study(demo_site, status=StudyStatus.AWAITING_REVIEW)
        review_sign(study_id=study.pk, user=rad, reading=ReadingInput(finding="no_pneumonia"))

        # When two radiologists amend version 1 at the same moment
        results = at_once(amend(rad, study), amend(colleague_rad, study))

        # Then one amendment becomes version 2 and the other is refused, told version 2 is current
        amended = [r for r in results if isinstance(r, Review)]
        refused = [r for r in results if isinstance(r, ReviewError)]
        assert len(amended) == 1 and len(refused) == 1, results
        assert (refused[0].code, refused[0].current_version) == ("conflict", 2)
        assert list(study.reviews.order_by("version").values_list("version", flat=True)) == [1, 2]
        assert study.reviews.get(version=2).radiologist == amended[0].radiologist
        assert AuditEvent.objects.filter(action="amend", detail__study_id=study.pk).count() == 1


def test_it_lets_exactly_one_of_two_api_clients_claim_the_same_study(demo_site, rad, colleague_rad, make_study):
    tokens = {user.pk: token_create(user=user)[0] for user in (rad, colleague_rad)}

    def claim(user: User, study: Study) -> Callable[[], int]:
        def call() -> int:
            client = APIClient(raise_request_exception=False)  # a 500 shows as one, in its own thread
            client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[user.pk]}")
            return client.post(reverse("api:study-claim", args=[study.pk])).status_code

        return call

    for _ in range(ROUNDS):
        # Given a study awaiting review
        study = make_study(demo_site, status=StudyStatus.AWAITING_REVIEW)

        # When two radiologists' API clients claim it at the same moment
        statuses = at_once(claim(rad, study), claim(colleague_rad, study))

        # Then one holds the claim and the other gets 409
        assert sorted(statuses) == [200, 409], statuses
        study.refresh_from_db()
        assert study.status == StudyStatus.IN_REVIEW and study.claimed_by_id in (rad.pk, colleague_rad.pk)
        assert AuditEvent.objects.filter(action="claim", object_id=str(study.pk)).count() == 1
