"""Periodic housekeeping for reading: thin Celery interfaces to services."""

from __future__ import annotations

from celery import shared_task

from cases.reviews import claims_expire


@shared_task(name="cases.tasks.claims_expire", acks_late=True, ignore_result=True)
def claims_expire_task() -> int:
    return claims_expire()
