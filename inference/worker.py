"""Worker-process wiring: a heartbeat for /health/ and the model loaded after the fork."""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import UTC, datetime
from typing import Any

import redis
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from inference.broker import HEARTBEAT_TTL_SECONDS, WORKER_KEY_PREFIX, redis_client

logger = logging.getLogger(__name__)
_stop = threading.Event()
# Imported with the tasks, before the worker takes any message: what its name held before is not its own.
_process_started = datetime.now(UTC)


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


def _reclaim(hostname: str) -> None:
    from django.db import connection

    from inference.services import predictions_reclaim

    try:
        predictions_reclaim(hostname=hostname, started_before=_process_started)
    except Exception:  # the lease and the sweeper still take them over, later
        logger.exception("could not take back the predictions of a previous %s", hostname)
    finally:
        connection.close()


@worker_ready.connect
def _take_back_abandoned(sender: Any = None, **kwargs: Any) -> None:
    """A restarted worker re-queues what its dead predecessor of the same name was running, at once."""
    hostname = getattr(sender, "hostname", "")
    if hostname:
        threading.Thread(target=_reclaim, args=(hostname,), name="pneumo-reclaim", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    _stop.set()
    with contextlib.suppress(redis.RedisError, OSError):
        redis_client().delete(f"{WORKER_KEY_PREFIX}{getattr(sender, 'hostname', 'worker')}")


@worker_process_init.connect
def _preload_model(**kwargs: Any) -> None:
    """Load the active models in each pool process so the first task pays nothing.

    Pool processes also lower their CPU priority: on a shared machine the web
    server and health checks stay responsive while inference saturates the cores.
    """
    import os

    from django.conf import settings
    from django.db import connection

    if settings.PNEUMO_WORKER_NICE:
        os.nice(settings.PNEUMO_WORKER_NICE)
    from inference import runtime
    from inference.registry import active_model_versions

    try:
        runtime.versions_preload(list(active_model_versions().values()))
    except Exception:
        logger.exception("could not preload the active models")
    finally:
        # Never share the parent's database connection across the fork.
        connection.close()
