"""The cases app's Celery tasks: thin interfaces to services, found by ``autodiscover_tasks``."""

from __future__ import annotations

# The webhook notice task is declared beside its service; importing it here registers it with
# every worker whatever else the worker happens to import.
from cases.notices import site_notice_send_task  # noqa: F401
from cases.reviews import claims_expire
from pneumo.celery import acks_late_task


@acks_late_task(name="cases.tasks.claims_expire", ignore_result=True)
def claims_expire_task() -> int:
    return claims_expire()
