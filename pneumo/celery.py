"""The Celery app, and the one decorator every Pneumo task is declared with.

The app is configured from Django settings (``CELERY_*``) and finds each app's
``tasks`` module itself. While a worker imports them, the garbage collector waits.
"""

from __future__ import annotations

import functools
import gc
import inspect
import os
from collections.abc import Callable
from typing import Any

from celery import Celery, shared_task, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pneumo.settings")
# Celery's Django fixup runs the system checks when a worker starts and ignores
# what they find; they import every URL, view and the API schema (about half a
# second before the first result) that a worker never uses. `manage.py migrate`
# (run before `make run` starts anything) and `manage.py check` run them.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")
_collector_was_enabled = gc.isenabled()


@signals.import_modules.connect  # before the app exists: its Django fixup's django.setup() comes next
def _collector_pause(**kwargs: Any) -> None:
    """No cyclic garbage collection while a worker (or beat) imports Django, the apps and the tasks.

    What they import lives as long as the process, yet the collector would walk the growing heap
    again and again: a full collection and some 150 young ones, 30 to 100 ms of a new worker's
    first result on this 2-core machine, for a few dozen objects freed.
    """
    global _collector_was_enabled
    _collector_was_enabled = gc.isenabled()
    gc.disable()


app = Celery("pneumo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.import_modules.connect  # after the tasks' import (autodiscover_tasks connected before)
def _collector_resume(**kwargs: Any) -> None:
    """Freeze what was imported out of the collector's sight, then collect as usual what comes after.

    Frozen, it is never walked again: not by the full collection Celery runs before it forks each
    pool process (30 to 90 ms otherwise), nor by the pool processes, which then leave the pages they
    share with the main process unwritten. A signal handler that raises does not stop the others
    (Celery's ``Signal.send``), so this always runs.
    """
    gc.freeze()
    if _collector_was_enabled:
        gc.enable()


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
