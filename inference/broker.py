"""Short-timeout Redis access for health checks, heartbeats, metrics and publishing from a request."""

from __future__ import annotations

import redis
from django.conf import settings
from kombu import Connection

WORKER_KEY_PREFIX = "pneumo:worker:"
HEARTBEAT_TTL_SECONDS = 30


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5, retry_on_timeout=False
    )


# How long a request may wait on each broker step (connect, send, answer). A frozen Redis
# (stopped, overloaded, a half-open connection) accepts connections and never answers, so a
# connect timeout alone does not bound an upload; the sweeper publishes what did not go.
PUBLISH_TIMEOUT_SECONDS = 0.5


def publishing_connection() -> Connection:
    """A new broker connection for one batch of messages, with every socket operation bounded."""
    from pneumo.celery import app

    return app.connection_for_write(
        connect_timeout=PUBLISH_TIMEOUT_SECONDS,
        transport_options={
            "socket_connect_timeout": PUBLISH_TIMEOUT_SECONDS,
            "socket_timeout": PUBLISH_TIMEOUT_SECONDS,
            "max_retries": 0,
        },
    )


def broker_ping() -> bool:
    try:
        return bool(redis_client().ping())
    except (redis.RedisError, OSError):
        return False


def workers_alive() -> list[str]:
    """Host names of workers whose heartbeat key has not expired."""
    try:
        client = redis_client()
        keys = list(client.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=100))
    except (redis.RedisError, OSError):
        return []
    return sorted(k.decode()[len(WORKER_KEY_PREFIX) :] for k in keys)


def queue_length(queue: str = "") -> int | None:
    try:
        return int(redis_client().llen(queue or settings.CELERY_TASK_DEFAULT_QUEUE))
    except (redis.RedisError, OSError):
        return None
