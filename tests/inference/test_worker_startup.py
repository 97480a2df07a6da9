"""What a new worker's main process does before its first fork (bench/e2e.py times the whole start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.processes import ROOT

# What `celery -A pneumo worker` runs first, in a fresh interpreter: the app, then django.setup() and the
# tasks' import (Celery's import_modules signal), then the collection Celery runs before each fork.
_WORKER_START = """
import gc, json, sys
from pneumo.celery import app
collections = lambda: sum(generation["collections"] for generation in gc.get_stats())
before = collections()
app.loader.import_default_modules()
during = collections() - before
gc.collect()
print(json.dumps({
    "collections_while_importing": during,
    "enabled": gc.isenabled(),
    "frozen": gc.get_freeze_count(),
    "tasks": "inference.tasks" in sys.modules and "cases.tasks" in sys.modules,
    "unfrozen": len(gc.get_objects()),
}))
"""


def test_it_imports_django_and_the_tasks_without_collecting_then_collects_what_comes_after() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pneumo.settings_test"}
    done = subprocess.run(
        [sys.executable, "-c", _WORKER_START], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout.strip().splitlines()[-1])

    assert state["tasks"]
    assert state["collections_while_importing"] == 0
    # Collection is back on, and what the imports made is frozen: the collection before the fork walks
    # only what the worker made since, a small part of what it holds.
    assert state["enabled"]
    assert state["frozen"] > 10 * state["unfrozen"]
