"""Worker-process wiring: a heartbeat for /health/ and the model loaded after the fork."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import redis
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from inference.broker import HEARTBEAT_TTL_SECONDS, WORKER_KEY_PREFIX, redis_client

logger = logging.getLogger(__name__)
_stop = threading.Event()


def _beat(hostname: str) -> None:
    while not _stop.is_set():
        try:
            redis_client().set(f"{WORKER_KEY_PREFIX}{hostname}", "1", ex=HEARTBEAT_TTL_SECONDS)
        except (redis.RedisError, OSError):
            logger.warning("worker heartbeat could not reach Redis")
        _stop.wait(HEARTBEAT_TTL_SECONDS / 3)


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    hostname = getattr(sender, "hostname", "worker")
    threading.Thread(target=_beat, args=(hostname,), name="pneumo-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    _stop.set()
    with contextlib.suppress(redis.RedisError, OSError):
        redis_client().delete(f"{WORKER_KEY_PREFIX}{getattr(sender, 'hostname', 'worker')}")


@worker_process_init.connect
def _preload_model(**kwargs: Any) -> None:
    """Load the active model in each pool process so the first task pays nothing.

    Pool processes also lower their CPU priority: on a shared machine the web
    server and health checks stay responsive while inference saturates the cores.
    """
    import os

    from django.conf import settings
    from django.db import connection

    if settings.PNEUMO_WORKER_NICE:
        os.nice(settings.PNEUMO_WORKER_NICE)
    from inference import runtime
    from inference.registry import active_model_version

    try:
        version = active_model_version()
        if version is not None:
            runtime.classifier_for(version)
    except Exception:
        logger.exception("could not preload the active model")
    finally:
        # Never share the parent's database connection across the fork.
        connection.close()
