"""Notices to a site's alert webhook (``Site.alert_webhook_url``): a small JSON POST, never patient data.

A service decides that something happened (today: the AI flagged a stat or
urgent study) and queues a notice on commit; a task POSTs it, retrying with
backoff while the receiver is down or answers 5xx. Later alarms (model drift,
...) call ``site_notice_queue`` with their own event name and ids.

A notice names the site by code and the study by its Pneumo id: never a name,
patient ID, birth date, accession number or DICOM UID. The receiver follows
the link path to Pneumo, where access control applies, to see more.
"""

from __future__ import annotations

import json
import logging
import re
from functools import cache
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from cases.audit import audit_record
from cases.models import Priority, Site, Study
from pneumo.celery import acks_late_task

if TYPE_CHECKING:
    import urllib.request

logger = logging.getLogger(__name__)

STUDY_FLAGGED = "study_flagged"
ALERT_PRIORITIES = frozenset({Priority.STAT, Priority.URGENT})
TIMEOUT_SECONDS = 5.0
MAX_RETRIES = 6
# Words of keys that would carry patient data: refused whatever event adds them.
_PHI_WORDS = frozenset({"patient", "patientid", "name", "birth", "dob", "accession", "uid", "mrn", "sex", "age"})
_SCALAR = (str, int, float, bool, type(None))


class NoticeNotDelivered(Exception):
    """The receiver could not be reached or answered 5xx/429: worth another try."""


class NoticeRefused(Exception):
    """The receiver answered another error, or the site has no webhook: another try would not help."""


def _checked(payload: dict[str, Any]) -> dict[str, Any]:
    for key, value in payload.items():
        words = set(re.split(r"[^a-z]+", key.lower()))
        if words & _PHI_WORDS or key.lower().startswith("patient") or not isinstance(value, _SCALAR):
            raise ValueError(f"A site notice carries ids and codes only, not {key!r}")
    return payload


def site_notice_queue(*, site: Site, event: str, payload: dict[str, Any]) -> bool:
    """Queue ``event`` for the site's webhook once the transaction commits; False when the site has none."""
    if not site.alert_webhook_url:
        return False
    body = {"event": event, "site": site.code, "occurred_at": timezone.now().isoformat(), **_checked(payload)}
    site_id = site.pk
    transaction.on_commit(lambda: _publish(site_id=site_id, event=event, payload=body))
    return True


def _publish(*, site_id: int, event: str, payload: dict[str, Any]) -> None:
    try:
        site_notice_send_task.delay(site_id=site_id, event=event, payload=payload)
    except Exception as exc:  # noqa: BLE001 - any broker error: the study still shows on the worklist
        logger.warning("could not queue the %s notice of site %s (%s)", event, site_id, type(exc).__name__)


def study_flagged_notice_queue(*, study: Study) -> bool:
    """What the webhook promises: a notice when the AI flags a stat or urgent study.

    Only a result that counts flags a study (``inference.display``): a muted one never sends a notice.
    """
    if not study.ai_flagged or study.priority not in ALERT_PRIORITIES or not study.site.alert_webhook_url:
        return False
    payload = {
        "study_id": study.pk,
        "priority": study.priority,
        "link": reverse("study_detail", args=[study.pk]),
    }
    return site_notice_queue(site=study.site, event=STUDY_FLAGGED, payload=payload)


@cache
def _opener() -> urllib.request.OpenerDirector:
    # Imported on the first notice, not when a worker starts (http.client and email cost ~40 ms).
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # A redirect would turn the POST into a GET elsewhere: report it as the receiver's error instead.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(NoRedirect)


def _post(url: str, body: bytes) -> int:
    import urllib.error
    import urllib.request

    if not url.lower().startswith(("http://", "https://")):
        raise NoticeRefused("the alert webhook is not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "Pneumo"}
    )
    try:
        with _opener().open(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise NoticeNotDelivered(f"HTTP {exc.code}") from None
        raise NoticeRefused(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise NoticeNotDelivered(type(exc).__name__) from None


def site_notice_send(*, site_id: int, event: str, payload: dict[str, Any]) -> int:
    """POST one notice to the site's current webhook; returns the HTTP status. Raises on failure."""
    site = Site.objects.get(pk=site_id)
    if not site.alert_webhook_url:
        raise NoticeRefused("the site no longer has an alert webhook")
    status = _post(site.alert_webhook_url, json.dumps(_checked(payload), sort_keys=True).encode())
    audit_record(action="site_notice", site=site, event=event, outcome="sent", http_status=status)
    return status


def _retry_countdown(retries: int) -> float:
    return min(300.0, 2.0 * 2**retries)  # 2 s, 4 s, ... about four minutes in all


@acks_late_task(name="cases.notices.site_notice_send", bind=True, max_retries=MAX_RETRIES)
def site_notice_send_task(self, *, site_id: int, event: str, payload: dict[str, Any]) -> str:
    try:
        site_notice_send(site_id=site_id, event=event, payload=payload)
    except NoticeNotDelivered as exc:
        if self.request.retries < MAX_RETRIES:
            logger.info("%s notice of site %s not delivered (%s); retrying", event, site_id, exc)
            raise self.retry(countdown=_retry_countdown(self.request.retries)) from None
        return _given_up(site_id, event, str(exc))
    except (NoticeRefused, Site.DoesNotExist) as exc:
        return _given_up(site_id, event, str(exc) or type(exc).__name__)
    return "sent"


def _given_up(site_id: int, event: str, why: str) -> str:
    logger.warning("%s notice of site %s given up: %s", event, site_id, why)
    site = Site.objects.filter(pk=site_id).first()
    audit_record(action="site_notice", site=site, event=event, outcome="given_up", why=why[:200])
    return "given_up"
