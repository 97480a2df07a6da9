"""A site's AI mode (live, shadow, off): the one rule for who sees the AI, and the service that changes it.

* ``live``: today's behaviour.
* ``shadow``: predictions run and are stored, but until a study is signed
  nobody but an admin sees a trace of them. The rule is enforced where the AI
  is written for readers, so that no page, API route, DICOMweb or FHIR
  response, worklist order, filter or alert can show what is not there:
  ``inference.services.study_ai_refresh`` keeps a shadowed study's AI summary
  empty (no probability, no flag, no AI status or reason), the prediction
  selectors hide a shadowed study's predictions from everyone but admins, and
  no AI result object goes to a result destination. Once signed, the study's
  summary is written and the comparison shown and counted; the reading was
  made blind, so it asked for no overrule reason.
* ``off``: studies are never predicted (``inference.services.predictions_request``).

Switching a site's mode refreshes its unsigned studies at once: switching to
live shows their stored results (and sends their result objects); switching
to shadow hides them.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest

from cases.audit import audit_record
from cases.models import Site, Study, User
from cases.selectors import user_is_admin
from cases.states import StudyStatus
from inference.models import AiMode

AI_OFF_REASON = "No AI result: the AI is off at this site."


class AiModeError(ValueError):
    pass


def study_ai_shadowed(study: Study) -> bool:
    """The study's AI is hidden from readers: its site runs in shadow and it is not signed yet."""
    return study.site.ai_mode == AiMode.SHADOW and study.status != StudyStatus.REPORTED


def study_ai_hidden_from(*, user: User | None, study: Study) -> bool:
    """Whether ``user`` may not see any trace of the study's AI (everyone but admins, for a shadowed study).

    ``user=None`` is the system itself, never a reader: signing compares the blind reading with the stored
    AI and records its model version, so that the comparison is counted.
    """
    if user is None:
        return False
    return study_ai_shadowed(study) and not user_is_admin(user=user)


def shadowed_studies_q(prefix: str = "") -> Q:
    """``study_ai_shadowed`` as a filter; ``prefix`` leads from the queried model to the study ("image__study__")."""
    return Q(**{f"{prefix}site__ai_mode": AiMode.SHADOW}) & ~Q(**{f"{prefix}status": StudyStatus.REPORTED})


def site_ai_mode_set(*, site: Site, mode: str, user: User, request: HttpRequest | None = None) -> Site:
    """Change a site's AI mode (audited) and make its unsigned studies follow at once."""
    from inference.services import study_ai_refresh

    if mode not in AiMode.values:
        raise AiModeError(f"Unknown AI mode {mode!r}: choose one of {', '.join(AiMode.values)}.")
    previous = site.ai_mode
    if mode == previous:
        return site
    with transaction.atomic():
        Site.objects.filter(pk=site.pk).update(ai_mode=mode)
        audit_record(action="site_ai_mode", user=user, obj=site, site=site, request=request, mode=mode, was=previous)
        unsigned = Study.objects.filter(site=site).exclude(status=StudyStatus.REPORTED).order_by("pk")
        for study_id in unsigned.values_list("pk", flat=True):
            study_ai_refresh(study_id=study_id)
        if previous == AiMode.SHADOW:
            transaction.on_commit(lambda: _results_send_unsigned(site.pk))
    site.refresh_from_db()
    return site


def _results_send_unsigned(site_id: int) -> None:
    """A site out of shadow sends the result objects its unsigned studies' stored results never sent."""
    from cases.dicom.outbox import outbox_queue_for_prediction
    from inference.models import Prediction, PredictionStatus

    rows = (
        Prediction.objects.filter(image__site_id=site_id, status=PredictionStatus.SUCCEEDED, ai_mode=AiMode.SHADOW)
        .exclude(image__study__status=StudyStatus.REPORTED)
        .select_related("image__study__site", "model_version")
    )
    for prediction in rows:
        outbox_queue_for_prediction(prediction)
