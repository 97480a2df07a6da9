"""Celery tasks: thin interfaces that take ids and call one service.

Every task is declared with ``pneumo.celery.acks_late_task``: idempotent,
acknowledged late and re-queued when its worker dies; the prediction's lease
decides who actually runs it.
"""

from __future__ import annotations

import logging

from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError

from inference import (
    services,
    worker,  # noqa: F401  (heartbeat and model preloading)
)
from pneumo.celery import acks_late_task

logger = logging.getLogger(__name__)


@acks_late_task(
    name="inference.tasks.prediction_run",
    bind=True,
    max_retries=None,  # the prediction's attempt cap decides
)
def prediction_run_task(self, *, prediction_id: int) -> str:
    try:
        outcome = services.prediction_run(
            prediction_id=prediction_id, hostname=self.request.hostname or "", task_id=self.request.id or ""
        )
        return outcome.status
    except (OperationalError, InterfaceError) as exc:
        # The database itself is unreachable: the lease will lapse and the
        # retry (or the sweeper) takes the prediction over.
        logger.warning("prediction %s: database unavailable, retrying", prediction_id)
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
    except SoftTimeLimitExceeded:
        _failed(self, prediction_id, "The AI took longer than the time limit.")
    except Exception as exc:
        logger.exception("prediction %s failed", prediction_id)
        _failed(self, prediction_id, f"{type(exc).__name__}: {exc}")
    return "failed"


def _backoff(retries: int) -> float:
    return min(30.0, 0.5 * 2**retries)


def _failed(task, prediction_id: int, error: str) -> None:
    if services.prediction_attempt_failed(prediction_id=prediction_id, error=error):
        raise task.retry(countdown=_backoff(task.request.retries))


@acks_late_task(name="inference.tasks.predictions_sweep", ignore_result=True)
def predictions_sweep_task() -> int:
    return services.predictions_sweep()
