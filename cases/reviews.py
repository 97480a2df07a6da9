"""Reading and signing (services): claim, release, sign and amend a study.

Every step locks the study's row, so two radiologists never sign the same
study at once; the server, not the client, derives agreement with the AI.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from cases.ai_modes import study_ai_shadowed
from cases.audit import audit_record
from cases.models import Agreement, FileState, Finding, OverruleReason, Review, Study, User
from cases.selectors import studies_for_user, user_can_read_worklist, user_can_review, user_is_admin
from cases.services import study_transition
from cases.states import StudyStatus
from inference.display import study_is_muted
from inference.models import AiLabel

logger = logging.getLogger(__name__)

S = StudyStatus


class ReviewError(Exception):
    """A refused reading action; ``code`` maps to an HTTP status at the edges."""

    def __init__(
        self, message: str, code: str = "invalid", field: str | None = None, *, current_version: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code  # invalid | conflict | forbidden
        self.field = field
        # A signature or amendment that came too late: the version now on record, for the reader to see.
        self.current_version = current_version


@dataclass(frozen=True)
class ReadingInput:
    finding: str
    reason: str = ""
    report: str = ""


def _locked_study(study_id: int, user: User) -> Study:
    """The study, row-locked, if the user may read it (404 otherwise, as everywhere)."""
    from django.shortcuts import get_object_or_404

    # No joins under the lock: after waiting for it, PostgreSQL re-reads the locked row but not the joined
    # ones, so a select_related claimed_by would be the stale NULL of before the other claim.
    return get_object_or_404(studies_for_user(user=user).select_related(None).select_for_update(), pk=study_id)


def _require_radiologist(user: User) -> None:
    if not user_can_review(user=user):
        raise ReviewError("Only radiologists can read and sign studies.", "forbidden")


def claim_is_live(study: Study) -> bool:
    if study.status != S.IN_REVIEW or study.claimed_by_id is None or study.claim_seen_at is None:
        return False
    return study.claim_seen_at >= timezone.now() - timedelta(seconds=settings.PNEUMO_CLAIM_IDLE_SECONDS)


def _claimed_by_other(study: Study, user: User) -> bool:
    return claim_is_live(study) and study.claimed_by_id != user.pk


def _conflict(study: Study) -> ReviewError:
    return ReviewError(f"In review by {study.claimed_by.signature_name}.", "conflict")


def study_claim(*, study_id: int, user: User, request: HttpRequest | None = None) -> Study:
    """Open a study for reading: it becomes ``in_review`` by ``user`` for everyone else."""
    _require_radiologist(user)
    with transaction.atomic():
        study = _locked_study(study_id, user)
        if study.status not in (S.AWAITING_REVIEW, S.IN_REVIEW):
            raise ReviewError(f"A {study.get_status_display().lower()} study cannot be claimed.", "conflict")
        if _claimed_by_other(study, user):
            raise _conflict(study)
        now = timezone.now()
        if study.status == S.IN_REVIEW and study.claimed_by_id != user.pk:
            study_transition(study=study, target=S.AWAITING_REVIEW)  # a lapsed claim is taken over
        study_transition(study=study, target=S.IN_REVIEW)
        fresh = study.claimed_by_id != user.pk
        study.claimed_by, study.claim_seen_at = user, now
        study.claimed_at = now if fresh or study.claimed_at is None else study.claimed_at
        study.save(update_fields=["claimed_by", "claimed_at", "claim_seen_at", "updated_at"])
        if fresh:
            audit_record(action="claim", user=user, obj=study, request=request)
    return study


def study_claim_touch(*, study_id: int, user: User) -> bool:
    """The reader is still at work: keep the claim alive."""
    return bool(
        Study.objects.filter(pk=study_id, status=S.IN_REVIEW, claimed_by=user).update(claim_seen_at=timezone.now())
    )


def _claim_clear(study: Study) -> None:
    study.claimed_by = study.claimed_at = study.claim_seen_at = None
    study.save(update_fields=["claimed_by", "claimed_at", "claim_seen_at", "updated_at"])


def study_release(*, study_id: int, user: User, request: HttpRequest | None = None) -> Study:
    """Give a claimed study back to the worklist (cancel): its reader, or an admin."""
    if not user_can_read_worklist(user=user):
        raise ReviewError("Only radiologists and admins can release a study.", "forbidden")
    with transaction.atomic():
        study = _locked_study(study_id, user)
        if study.status != S.IN_REVIEW:
            return study
        if study.claimed_by_id != user.pk and not user_is_admin(user=user) and claim_is_live(study):
            raise _conflict(study)
        study_transition(study=study, target=S.AWAITING_REVIEW)
        _claim_clear(study)
        audit_record(action="release", user=user, obj=study, request=request)
    return study


def claims_expire() -> int:
    """Release claims whose reader has been idle longer than the claim timeout."""
    cutoff = timezone.now() - timedelta(seconds=settings.PNEUMO_CLAIM_IDLE_SECONDS)
    ids = list(Study.objects.filter(status=S.IN_REVIEW, claim_seen_at__lt=cutoff).values_list("pk", flat=True))
    for study_id in ids:
        with transaction.atomic():
            study = Study.objects.select_for_update().get(pk=study_id)
            if study.status == S.IN_REVIEW and not claim_is_live(study):
                study_transition(study=study, target=S.AWAITING_REVIEW)
                _claim_clear(study)
                audit_record(action="claim_expired", obj=study)
    return len(ids)


def ai_label_of(study: Study) -> str:
    """``pneumonia`` / ``normal`` from the active model's result, or "" when there is none."""
    if study.ai_probability is None:
        return ""
    return AiLabel.PNEUMONIA if study.ai_flagged else AiLabel.NORMAL


def agreement_of(finding: str, ai_label: str, *, muted: bool = False) -> str:
    if not ai_label:
        return Agreement.NOT_VALIDATED if muted else Agreement.NO_AI
    if finding == Finding.INDETERMINATE:
        return Agreement.INDETERMINATE
    agrees = (finding == Finding.PNEUMONIA) == (ai_label == AiLabel.PNEUMONIA)
    return Agreement.AGREE if agrees else Agreement.DISAGREE


def _validate(reading: ReadingInput, agreement: str, *, blind: bool = False) -> str:
    if reading.finding not in Finding.values:
        raise ReviewError("Choose a finding: pneumonia, no pneumonia or indeterminate.", field="finding")
    # A reader who was not shown the AI (shadow mode) overrules nothing.
    if agreement != Agreement.DISAGREE or blind:
        return ""
    if reading.reason not in OverruleReason.values:
        raise ReviewError("Your finding overrules the AI: give a reason.", field="reason")
    return reading.reason


def _files_intact(study: Study) -> None:
    # A file the retention policy deleted is gone on purpose: its report may still be amended.
    if study.images.exclude(file_state__in=(FileState.OK, FileState.PURGED)).exists():
        raise ReviewError(
            "An image file of this study changed or went missing; an admin must resolve it first.", "conflict"
        )


def _ai_compared(study: Study) -> tuple[Study, bool]:
    """The study as its reading is compared with the AI, and whether the reader was blind to the AI.

    A reader is shown the study's AI summary; in shadow mode it is kept empty for them until signing
    (``cases.ai_modes``), so the blind reading is compared with the AI's stored result instead.
    """
    if not study_ai_shadowed(study):
        return study, False
    from inference.services import study_ai_result

    ai = study_ai_result(study=study)
    compared = copy.copy(study)
    compared.ai_probability, compared.ai_flagged = ai.probability, ai.flagged
    compared.ai_muted_probability, compared.ai_domain = ai.muted_probability, ai.domain
    return compared, True


def _review_create(study: Study, user: User, reading: ReadingInput, **extra) -> Review:
    from inference.selectors import study_ai_prediction

    mode = study.site.ai_mode
    study, blind = _ai_compared(study)
    ai_label, muted = ai_label_of(study), study_is_muted(study)
    # The version of the prediction behind what the reader was shown, not whatever is active now.
    shown = study_ai_prediction(study=study, user=None) if ai_label or muted else None
    agreement = agreement_of(reading.finding, ai_label, muted=muted)
    # A muted result keeps its probability and domain on the review, as the reader saw them.
    return Review.objects.create(
        study=study,
        radiologist=user,
        finding=reading.finding,
        ai_label=ai_label,
        ai_probability=study.ai_muted_probability if muted else study.ai_probability,
        ai_domain=study.ai_domain if ai_label or muted else None,
        model_version=shown.model_version if shown is not None else None,
        agreement=agreement,
        reason=_validate(reading, agreement, blind=blind),
        ai_mode=mode,
        report_text=reading.report.strip(),
        signed_at=timezone.now(),
        **extra,
    )


def review_sign(*, study_id: int, user: User, reading: ReadingInput, request: HttpRequest | None = None) -> Review:
    """Sign the final finding: the study becomes ``reported`` and the review is frozen."""
    _require_radiologist(user)
    with transaction.atomic():
        study = _locked_study(study_id, user)
        if study.status == S.REPORTED:
            current = study.reviews.order_by("-version").first()
            raise ReviewError(
                "This study is already signed; amend it instead.",
                "conflict",
                current_version=current.version if current else None,
            )
        if study.status not in (S.AWAITING_REVIEW, S.IN_REVIEW):
            raise ReviewError("The AI has not finished with this study yet.", "conflict")
        if _claimed_by_other(study, user):
            raise _conflict(study)
        _files_intact(study)
        shadowed = study_ai_shadowed(study)
        review = _review_create(study, user, reading)
        if study.status == S.AWAITING_REVIEW:
            study_transition(study=study, target=S.IN_REVIEW)
        study_transition(study=study, target=S.REPORTED)
        _claim_clear(study)
        if shadowed:  # signed: its AI is shown and counted from now on
            from inference.services import study_ai_refresh

            study_ai_refresh(study_id=study.pk)
        audit_record(
            action="sign",
            user=user,
            obj=review,
            site=study.site,
            request=request,
            study_id=study.pk,
            agreement=review.agreement,
        )
        transaction.on_commit(lambda: _report_send(review.pk))
    return review


def _amends_current(previous: Review, amends_version: int | None) -> None:
    """An amendment replaces the version its reader saw: one written over a newer version never read is stale."""
    if amends_version is None:
        raise ReviewError("Say which version this amends: reload the page and amend again.", field="amends_version")
    if amends_version != previous.version:
        raise ReviewError(
            f"This report is now at version {previous.version} (signed by {previous.radiologist.signature_name}), "
            f"not the version {amends_version} you amended: read it, then amend it if it still needs it.",
            "conflict",
            current_version=previous.version,
        )


def review_amend(
    *,
    study_id: int,
    user: User,
    reading: ReadingInput,
    amendment_reason: str,
    amends_version: int | None,
    request: HttpRequest | None = None,
) -> Review:
    """Add a new signed version over ``amends_version``, the current one; the earlier ones stay readable."""
    _require_radiologist(user)
    if not amendment_reason.strip():
        raise ReviewError("Say why the report is amended.", field="amendment_reason")
    with transaction.atomic():
        study = _locked_study(study_id, user)
        previous = study.reviews.order_by("-version").first()
        if study.status != S.REPORTED or previous is None:
            raise ReviewError("Only a signed study can be amended.", "conflict")
        _amends_current(previous, amends_version)
        _files_intact(study)
        review = _review_create(
            study,
            user,
            reading,
            version=previous.version + 1,
            amendment_reason=amendment_reason.strip(),
            supersedes=previous,
        )
        audit_record(
            action="amend",
            user=user,
            obj=review,
            site=study.site,
            request=request,
            study_id=study.pk,
            version=review.version,
        )
        transaction.on_commit(lambda: _report_send(review.pk))
    return review


def _report_send(review_id: int) -> None:
    """The signed report SR goes to the site's PACS (cases.dicom.outbox); the signature stands whatever happens."""
    from cases.dicom.outbox import outbox_queue_for_review

    try:
        outbox_queue_for_review(Review.objects.select_related("study__site", "radiologist").get(pk=review_id))
    except Exception:
        logger.exception("could not queue the report SR of review %s", review_id)
