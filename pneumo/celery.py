"""The Celery app, and the one decorator every Pneumo task is declared with.

The app is configured from Django settings (``CELERY_*``) and finds each app's
``tasks`` module itself.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

from celery import Celery, shared_task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pneumo.settings")
# Celery's Django fixup runs the system checks when a worker starts and ignores
# what they find; they import every URL, view and the API schema (about half a
# second before the first result) that a worker never uses. `manage.py migrate`
# (run before `make run` starts anything) and `manage.py check` run them.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("pneumo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def acks_late_task(*, name: str, bind: bool = False, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Declare a Celery task that may safely run more than once, as every Pneumo task must.

    The message is acknowledged only after the task ran (``acks_late``) and is
    re-queued when its worker process dies (``reject_on_worker_lost``), so a
    task may run twice and must be idempotent (a lease or a conditional update
    decides who does the work). The soft and hard time limits come from the
    settings. Parameters are keyword-only ids, so callers name what they pass:
    ``prediction_run_task.delay(prediction_id=7)``.
    """
    from django.conf import settings

    def decorate(fun: Callable[..., Any]) -> Any:
        return shared_task(
            name=name,
            bind=bind,
            acks_late=True,
            reject_on_worker_lost=True,
            soft_time_limit=settings.PNEUMO_TASK_SOFT_TIME_LIMIT,
            time_limit=settings.PNEUMO_TASK_TIME_LIMIT,
            **options,
        )(_keyword_only_ids(fun, bound=bind))

    return decorate


def _keyword_only_ids(fun: Callable[..., Any], *, bound: bool) -> Callable[..., Any]:
    """``fun``, also accepting its ids by position when a message of the previous release sends them so.

    Producers still see the keyword-only signature (Celery checks ``delay``
    arguments against it), so only messages already queued use the fallback.
    Remove the fallback in the release after the one that made ids keyword-only.
    """
    signature = inspect.signature(fun)
    params = list(signature.parameters.values())[1 if bound else 0 :]
    if any(param.kind is not inspect.Parameter.KEYWORD_ONLY for param in params):
        raise TypeError(f"{fun.__qualname__}: a task's parameters must be keyword-only ids")
    names = [param.name for param in params]
    skip = 1 if bound else 0

    @functools.wraps(fun)
    def run(*args: Any, **kwargs: Any) -> Any:
        legacy = args[skip:]
        if len(legacy) > len(names) or set(names[: len(legacy)]) & kwargs.keys():
            raise TypeError(f"{fun.__qualname__} takes keyword-only ids {names}, got {args!r} {kwargs!r}")
        return fun(*args[:skip], **dict(zip(names, legacy, strict=False)), **kwargs)

    run.__signature__ = signature  # type: ignore[attr-defined]
    return run
