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


@acks_late_task(name="cases.tasks.outbox_send", ignore_result=True)
def outbox_send_task(*, item_id: int) -> str:
    from cases.dicom.outbox import outbox_send  # pynetdicom loads with the first result sent, not with the worker

    return outbox_send(item_id=item_id)


@acks_late_task(name="cases.tasks.outbox_sweep", ignore_result=True)
def outbox_sweep_task() -> int:
    from cases.dicom.outbox import outbox_sweep

    return outbox_sweep()


@acks_late_task(name="cases.tasks.retention_apply", ignore_result=True)
def retention_apply_task() -> int:
    # Each image is its own transaction, re-checked under its lock: a second delivery purges nothing twice.
    from cases.retention import retention_apply

    return retention_apply()


@acks_late_task(name="cases.tasks.drift_check", ignore_result=True)
def drift_check_task() -> int:
    # Idempotent: an alarm already open (or its episode already alarmed) is not opened again.
    from cases.drift import drift_check

    return len(drift_check())
