"""Celery tasks: thin interfaces that take ids and call one service."""

from __future__ import annotations

from inference import worker  # noqa: F401  (heartbeat signal receivers)
