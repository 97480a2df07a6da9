"""Short-timeout Redis access for health checks, heartbeats, metrics and publishing from a request."""

from __future__ import annotations

import threading

import redis
from django.conf import settings
from kombu import Connection
from kombu.connection import ConnectionPool

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


# Connections one process keeps for publishing: as many as its request threads publish at once.
PUBLISH_POOL_SIZE = 8
_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def publishing_connection() -> Connection:
    """A broker connection from this process's pool for one batch of messages, every socket step bounded.

    Kept between requests: a new one cost each upload its TCP connect, the transport's PING and the
    queue's declaration, about a seventh of the web process's time per upload. Use it as a context
    manager: the block's end returns it, and an exception inside replaces it with a fresh one (so a
    broken socket is never handed to the next request). Raises ``ConnectionLimitExceeded`` when every
    connection stays busy for the timeout. kombu closes the pool in a forked child.
    """
    from pneumo.celery import app

    url = app.conf.broker_write_url or app.conf.broker_url
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None:
            connection = app.connection_for_write(
                connect_timeout=PUBLISH_TIMEOUT_SECONDS,
                transport_options={
                    "socket_connect_timeout": PUBLISH_TIMEOUT_SECONDS,
                    "socket_timeout": PUBLISH_TIMEOUT_SECONDS,
                    "max_retries": 0,
                },
            )
            pool = _pools[url] = connection.Pool(limit=PUBLISH_POOL_SIZE)
    return pool.acquire(block=True, timeout=PUBLISH_TIMEOUT_SECONDS)


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
