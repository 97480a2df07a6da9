"""The Pneumo Celery app with test-only fault injection, for worker-process tests.

While the file named by ``PNEUMO_TEST_SLOW_FLAG`` exists, each prediction sleeps
in the middle of inference (after its lease was taken), so that a test can
kill the worker there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery.signals import worker_process_init

from pneumo.celery import app

__all__ = ["app"]


class _SlowClassifier:
    def __init__(self, inner) -> None:
        self.inner = inner

    def predict(self, image, *, heatmap: bool = True):
        flag = os.environ.get("PNEUMO_TEST_SLOW_FLAG", "")
        if flag and Path(flag).exists():
            Path(flag + ".started").write_text(str(os.getpid()))
            time.sleep(float(os.environ.get("PNEUMO_TEST_SLOW_SECONDS", "5")))
        return self.inner.predict(image, heatmap=heatmap)


@worker_process_init.connect
def _install(**kwargs) -> None:
    from inference import runtime

    real = runtime.classifier_for
    runtime.classifier_for = lambda version: _SlowClassifier(real(version))
