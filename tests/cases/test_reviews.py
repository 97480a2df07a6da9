"""Reading services: claiming, releasing, signing and amending a study."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.http import Http404
from django.utils import timezone

from cases.models import Agreement, AuditEvent, FileState, Finding, Review, Study
from cases.reviews import (
    ReadingInput,
    ReviewError,
    agreement_of,
    ai_label_of,
    claims_expire,
    review_amend,
    review_sign,
    study_claim,
    study_claim_touch,
    study_release,
)
from cases.states import StudyStatus
from inference.models import AiDomain, Prediction, PredictionStatus
from tests.browser.studies import model_version_active

S = StudyStatus


@pytest.fixture
def study(demo_site, make_study, make_image):
    """A study the AI flagged (pneumonia, 0.9), waiting to be read."""
    version = model_version_active()
    study = make_study(demo_site, status=S.AWAITING_REVIEW, ai_probability=0.9, ai_flagged=True)
    image = make_image(study)
    # The prediction behind the study's result: a signed review names its version.
    Prediction.objects.create(
        image=image,
        model_version=version,
        preprocessing_version=version.preprocessing_version,
        status=PredictionStatus.SUCCEEDED,
        probability=0.9,
        threshold=0.5,
        domain=AiDomain.IN_DOMAIN,
        finished_at=timezone.now(),
    )
    return study


def _lapse(study: Study, settings) -> None:
    old = timezone.now() - timedelta(seconds=settings.PNEUMO_CLAIM_IDLE_SECONDS + 5)
    Study.objects.filter(pk=study.pk).update(claim_seen_at=old)


# --- Claims -------------------------------------------------------------------------------------


def test_it_claims_a_study_for_its_reader(study, rad) -> None:
    claimed = study_claim(study_id=study.pk, user=rad)
    assert (claimed.status, claimed.claimed_by, claimed.claim_seen_at is not None) == (S.IN_REVIEW, rad, True)
    assert AuditEvent.objects.filter(action="claim", object_id=str(study.pk), user=rad).count() == 1


def test_it_lets_the_same_reader_reopen_the_study(study, rad) -> None:
    study_claim(study_id=study.pk, user=rad)
    again = study_claim(study_id=study.pk, user=rad)
    assert again.claimed_by == rad
    assert AuditEvent.objects.filter(action="claim").count() == 1


def test_it_refuses_a_second_reader_while_the_claim_is_live(study, rad, colleague_rad) -> None:
    rad.display_name = "Dr Rae"
    rad.save()
    study_claim(study_id=study.pk, user=rad)
    with pytest.raises(ReviewError) as refused:
        study_claim(study_id=study.pk, user=colleague_rad)
    assert refused.value.code == "conflict"
    assert "In review by Dr Rae" in refused.value.message
    assert Study.objects.get(pk=study.pk).claimed_by == rad


def test_it_lets_a_colleague_take_over_a_lapsed_claim(study, rad, colleague_rad, settings) -> None:
    study_claim(study_id=study.pk, user=rad)
    _lapse(study, settings)
    taken = study_claim(study_id=study.pk, user=colleague_rad)
    assert (taken.status, taken.claimed_by) == (S.IN_REVIEW, colleague_rad)


def test_it_expires_idle_claims(study, rad, settings) -> None:
    study_claim(study_id=study.pk, user=rad)
    _lapse(study, settings)
    assert claims_expire() == 1
    study.refresh_from_db()
    assert (study.status, study.claimed_by) == (S.AWAITING_REVIEW, None)
    assert AuditEvent.objects.filter(action="claim_expired", object_id=str(study.pk)).exists()


def test_it_keeps_a_touched_claim_alive(study, rad, colleague_rad, settings) -> None:
    study_claim(study_id=study.pk, user=rad)
    _lapse(study, settings)
    assert study_claim_touch(study_id=study.pk, user=rad) is True
    assert claims_expire() == 0
    assert study_claim_touch(study_id=study.pk, user=colleague_rad) is False


def test_it_releases_a_claim(study, rad) -> None:
    study_claim(study_id=study.pk, user=rad)
    released = study_release(study_id=study.pk, user=rad)
    assert (released.status, released.claimed_by) == (S.AWAITING_REVIEW, None)
    assert AuditEvent.objects.filter(action="release").count() == 1


def test_it_refuses_to_release_a_colleagues_live_claim(study, rad, colleague_rad, admin_user) -> None:
    study_claim(study_id=study.pk, user=rad)
    with pytest.raises(ReviewError) as refused:
        study_release(study_id=study.pk, user=colleague_rad)
    assert refused.value.code == "conflict"
    assert study_release(study_id=study.pk, user=admin_user).status == S.AWAITING_REVIEW


@pytest.mark.parametrize("status", [S.RECEIVED, S.QUEUED, S.ANALYZING, S.REPORTED])
def test_it_claims_only_studies_ready_to_read(study, rad, status) -> None:
    Study.objects.filter(pk=study.pk).update(status=status)
    with pytest.raises(ReviewError) as refused:
        study_claim(study_id=study.pk, user=rad)
    assert refused.value.code == "conflict"


# --- Signing ------------------------------------------------------------------------------------


def test_it_signs_an_agreeing_finding_without_a_reason(study, rad) -> None:
    study_claim(study_id=study.pk, user=rad)
    review = review_sign(study_id=study.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA, report=" RLL. "))
    study.refresh_from_db()
    assert (review.agreement, review.reason, review.report_text, review.version) == (Agreement.AGREE, "", "RLL.", 1)
    assert (review.ai_label, review.ai_probability, review.model_version.is_active) == ("pneumonia", 0.9, True)
    assert (study.status, study.claimed_by, study.reported_at is not None) == (S.REPORTED, None, True)
    assert AuditEvent.objects.filter(action="sign", object_id=str(review.pk)).exists()


def test_it_signs_an_unclaimed_study_directly(study, rad) -> None:
    review_sign(study_id=study.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA))
    assert Study.objects.get(pk=study.pk).status == S.REPORTED


def test_it_requires_a_reason_to_overrule_the_ai(study, rad) -> None:
    with pytest.raises(ReviewError) as refused:
        review_sign(study_id=study.pk, user=rad, reading=ReadingInput(Finding.NO_PNEUMONIA))
    assert (refused.value.code, refused.value.field) == ("invalid", "reason")
    assert not Review.objects.exists()
    assert Study.objects.get(pk=study.pk).status == S.AWAITING_REVIEW


def test_it_records_the_reason_for_an_overrule(study, rad) -> None:
    review = review_sign(
        study_id=study.pk, user=rad, reading=ReadingInput(Finding.NO_PNEUMONIA, reason="false_positive")
    )
    assert (review.agreement, review.reason) == (Agreement.DISAGREE, "false_positive")


def test_it_refuses_an_unknown_finding(study, rad) -> None:
    with pytest.raises(ReviewError) as refused:
        review_sign(study_id=study.pk, user=rad, reading=ReadingInput("maybe"))
    assert refused.value.field == "finding"


@pytest.mark.parametrize(
    ("probability", "flagged", "finding", "agreement"),
    [
        (0.9, True, Finding.PNEUMONIA, Agreement.AGREE),
        (0.9, True, Finding.NO_PNEUMONIA, Agreement.DISAGREE),
        (0.2, False, Finding.NO_PNEUMONIA, Agreement.AGREE),
        (0.2, False, Finding.PNEUMONIA, Agreement.DISAGREE),
        (0.9, True, Finding.INDETERMINATE, Agreement.INDETERMINATE),
        (None, False, Finding.PNEUMONIA, Agreement.NO_AI),
    ],
)
def test_it_derives_agreement_on_the_server(study, rad, probability, flagged, finding, agreement) -> None:
    Study.objects.filter(pk=study.pk).update(ai_probability=probability, ai_flagged=flagged)
    reading = ReadingInput(finding, reason="other" if agreement == Agreement.DISAGREE else "")
    review = review_sign(study_id=study.pk, user=rad, reading=reading)
    assert review.agreement == agreement
    assert (review.model_version is None) == (probability is None)


def test_it_ignores_a_reason_when_the_reader_agrees(study, rad) -> None:
    review = review_sign(study_id=study.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA, reason="other"))
    assert review.reason == ""


def test_it_refuses_to_sign_twice(study, rad, colleague_rad) -> None:
    review_sign(study_id=study.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA))
    with pytest.raises(ReviewError) as refused:
        review_sign(study_id=study.pk, user=colleague_rad, reading=ReadingInput(Finding.PNEUMONIA))
    assert refused.value.code == "conflict"
    assert Review.objects.count() == 1


def test_it_refuses_to_sign_a_study_claimed_by_a_colleague(study, rad, colleague_rad) -> None:
    study_claim(study_id=study.pk, user=rad)
    with pytest.raises(ReviewError) as refused:
        review_sign(study_id=study.pk, user=colleague_rad, reading=ReadingInput(Finding.PNEUMONIA))
    assert refused.value.code == "conflict"


def test_it_refuses_to_sign_before_the_ai_is_done(study, rad) -> None:
    Study.objects.filter(pk=study.pk).update(status=S.ANALYZING)
    with pytest.raises(ReviewError) as refused:
        review_sign(study_id=study.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA))
    assert refused.value.code == "conflict"


def test_it_refuses_to_sign_when_an_image_file_changed(study, rad) -> None:
    study.images.update(file_state=FileState.CHANGED)
    with pytest.raises(ReviewError) as refused:
        review_sign(study_id=study.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA))
    assert refused.value.code == "conflict"


@pytest.mark.parametrize("who", ["tech", "admin_user"])
def test_it_lets_only_radiologists_claim_and_sign(request, study, who) -> None:
    user = request.getfixturevalue(who)
    for attempt in (
        lambda: study_claim(study_id=study.pk, user=user),
        lambda: review_sign(study_id=study.pk, user=user, reading=ReadingInput(Finding.PNEUMONIA)),
    ):
        with pytest.raises(ReviewError) as refused:
            attempt()
        assert refused.value.code == "forbidden"
    assert Study.objects.get(pk=study.pk).status == S.AWAITING_REVIEW


def test_it_lets_an_admin_who_is_a_radiologist_sign(study, admin_user) -> None:
    from django.contrib.auth.models import Group

    admin_user.groups.add(Group.objects.get(name="Radiologist"))
    review = review_sign(study_id=study.pk, user=admin_user, reading=ReadingInput(Finding.PNEUMONIA))
    assert review.radiologist == admin_user


def test_it_hides_another_sites_study_from_every_service(north_site, make_study, rad) -> None:
    model_version_active()
    stranger = make_study(north_site, status=S.AWAITING_REVIEW, ai_probability=0.9, ai_flagged=True)
    for attempt in (
        lambda: study_claim(study_id=stranger.pk, user=rad),
        lambda: study_release(study_id=stranger.pk, user=rad),
        lambda: review_sign(study_id=stranger.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA)),
        lambda: review_amend(
            study_id=stranger.pk,
            user=rad,
            reading=ReadingInput(Finding.PNEUMONIA),
            amendment_reason="typo",
            amends_version=1,
        ),
    ):
        with pytest.raises(Http404):
            attempt()
    assert study_claim_touch(study_id=stranger.pk, user=rad) is False


# --- Amendments ---------------------------------------------------------------------------------


def test_it_keeps_the_original_when_amending(study, rad, colleague_rad) -> None:
    original = review_sign(study_id=study.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA, report="RLL."))
    amended = review_amend(
        study_id=study.pk,
        user=colleague_rad,
        amendment_reason="Second look: atelectasis.",
        amends_version=1,
        reading=ReadingInput(Finding.NO_PNEUMONIA, reason="false_positive", report="Atelectasis only."),
    )
    original.refresh_from_db()
    assert (original.finding, original.report_text, original.version) == (Finding.PNEUMONIA, "RLL.", 1)
    assert (amended.version, amended.supersedes, amended.agreement) == (2, original, Agreement.DISAGREE)
    assert amended.amendment_reason == "Second look: atelectasis."
    assert Study.objects.get(pk=study.pk).status == S.REPORTED
    assert AuditEvent.objects.filter(action="amend", object_id=str(amended.pk)).exists()


def test_it_requires_a_reason_to_amend(study, rad) -> None:
    review_sign(study_id=study.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA))
    with pytest.raises(ReviewError) as refused:
        review_amend(
            study_id=study.pk,
            user=rad,
            reading=ReadingInput(Finding.PNEUMONIA),
            amendment_reason="  ",
            amends_version=1,
        )
    assert refused.value.field == "amendment_reason"


def test_it_amends_only_signed_studies(study, rad) -> None:
    with pytest.raises(ReviewError) as refused:
        review_amend(
            study_id=study.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA), amendment_reason="x", amends_version=1
        )
    assert refused.value.code == "conflict"


def test_it_lets_only_radiologists_amend(study, rad, tech) -> None:
    review_sign(study_id=study.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA))
    with pytest.raises(ReviewError) as refused:
        review_amend(
            study_id=study.pk,
            user=tech,
            reading=ReadingInput(Finding.PNEUMONIA),
            amendment_reason="x",
            amends_version=1,
        )
    assert refused.value.code == "forbidden"


def _amend(study: Study, user, amends_version: int | None, report: str = "") -> Review:
    return review_amend(
        study_id=study.pk,
        user=user,
        reading=ReadingInput(Finding.INDETERMINATE, report=report),
        amendment_reason="Second look",
        amends_version=amends_version,
    )


def test_it_refuses_an_amendment_of_a_version_no_longer_current(study, rad, colleague_rad) -> None:
    # Given a signed study that a colleague amended (version 2) while the reader still had version 1 open
    review_sign(study_id=study.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA))
    _amend(study, colleague_rad, 1, report="Colleague's amendment.")

    # When the reader sends an amendment of version 1
    with pytest.raises(ReviewError) as refused:
        _amend(study, rad, 1, report="Mine.")

    # Then it is refused as a conflict that names the current version, and nothing is added
    assert (refused.value.code, refused.value.current_version) == ("conflict", 2)
    assert "now at version 2" in refused.value.message
    assert list(study.reviews.order_by("version").values_list("version", "report_text")) == [
        (1, ""),
        (2, "Colleague's amendment."),
    ]
    assert AuditEvent.objects.filter(action="amend").count() == 1
    assert _amend(study, rad, 2, report="Mine, having read v2.").version == 3


@pytest.mark.parametrize("amends_version", [None, 3])
def test_it_refuses_an_amendment_that_does_not_name_the_current_version(study, rad, amends_version) -> None:
    review_sign(study_id=study.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA))
    with pytest.raises(ReviewError) as refused:
        _amend(study, rad, amends_version)
    assert refused.value.code == ("invalid" if amends_version is None else "conflict")
    assert study.reviews.count() == 1


def test_it_names_the_current_version_when_refusing_a_second_signature(study, rad, colleague_rad) -> None:
    review_sign(study_id=study.pk, user=rad, reading=ReadingInput(Finding.PNEUMONIA))
    with pytest.raises(ReviewError) as refused:
        review_sign(study_id=study.pk, user=colleague_rad, reading=ReadingInput(Finding.PNEUMONIA))
    assert (refused.value.code, refused.value.current_version) == ("conflict", 1)


# --- Pure helpers -------------------------------------------------------------------------------


def test_it_reads_the_ai_label_from_the_studys_summary(demo_site, make_study) -> None:
    assert ai_label_of(make_study(demo_site, ai_probability=0.7, ai_flagged=True)) == "pneumonia"
    assert ai_label_of(make_study(demo_site, ai_probability=0.3, ai_flagged=False)) == "normal"
    assert ai_label_of(make_study(demo_site)) == ""


def test_it_counts_indeterminate_apart_from_agreement() -> None:
    assert agreement_of(Finding.INDETERMINATE, "pneumonia") == Agreement.INDETERMINATE
    assert agreement_of(Finding.INDETERMINATE, "") == Agreement.NO_AI


def test_it_calls_any_finding_over_a_muted_result_not_validated() -> None:
    for finding in Finding.values:
        assert agreement_of(finding, "", muted=True) == Agreement.NOT_VALIDATED
    assert agreement_of(Finding.PNEUMONIA, "normal", muted=True) == Agreement.DISAGREE  # a counted result decides


def test_it_signs_over_a_muted_result_without_an_overrule_reason(demo_site, rad, make_study) -> None:
    study = make_study(demo_site, status="awaiting_review", ai_muted_probability=0.97, ai_domain="outside_domain")

    review = review_sign(study_id=study.pk, user=rad, reading=ReadingInput(finding=Finding.PNEUMONIA))

    assert review.agreement == Agreement.NOT_VALIDATED and review.reason == ""
    assert (review.ai_probability, review.ai_domain, review.ai_label) == (0.97, "outside_domain", "")
