"""Periodic housekeeping for reading: thin Celery interfaces to services."""

from __future__ import annotations

from cases.reviews import claims_expire
from pneumo.celery import acks_late_task


@acks_late_task(name="cases.tasks.claims_expire", ignore_result=True)
def claims_expire_task() -> int:
    return claims_expire()
