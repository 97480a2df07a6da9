"""Prometheus metrics: queue length, task latency and failures, read fresh at each scrape.

Computed from the database and Redis on request, so every web process answers
the same numbers without a shared multiprocess registry.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.db.models import Count
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from cases.models import Study
from inference.broker import queue_length, workers_alive
from inference.models import Prediction, PredictionStatus

WINDOW = timedelta(hours=1)


def _by_status(model, name: str, help_text: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=["status"])
    counts = dict(model.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    for status in model._meta.get_field("status").choices:
        family.add_metric([status[0]], counts.get(status[0], 0))
    return family


def _latency() -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "pneumo_prediction_latency_seconds", "Queue wait plus decode plus inference, last hour", labels=["quantile"]
    )
    rows = Prediction.objects.filter(status=PredictionStatus.SUCCEEDED, finished_at__gte=timezone.now() - WINDOW)
    values = [
        sum(v or 0 for v in row) / 1000
        for row in rows.values_list("queue_wait_ms", "decode_ms", "preprocess_ms", "inference_ms")
    ]
    for q in (0.5, 0.9, 0.99):
        family.add_metric([str(q)], float(np.quantile(values, q)) if values else 0.0)
    return family


def _drift_alarms() -> GaugeMetricFamily:
    from cases.drift import drift_alarms_open_counts

    family = GaugeMetricFamily(
        "pneumo_drift_alarms_open", "Drift alarms not yet acknowledged", labels=["site", "model", "kind"]
    )
    for site, model, kind, n in drift_alarms_open_counts():
        family.add_metric([site, model, kind], n)
    return family


class PneumoCollector:
    def collect(self):
        yield _by_status(Prediction, "pneumo_predictions", "Predictions by status")
        yield _by_status(Study, "pneumo_studies", "Studies by status")
        failed = GaugeMetricFamily("pneumo_prediction_failures_last_hour", "Predictions that failed, last hour")
        failed.add_metric(
            [],
            Prediction.objects.filter(status=PredictionStatus.FAILED, finished_at__gte=timezone.now() - WINDOW).count(),
        )
        yield failed
        yield _latency()
        queue = GaugeMetricFamily("pneumo_queue_length", "Messages waiting in the broker (-1: broker down)")
        length = queue_length()
        queue.add_metric([], -1 if length is None else length)
        yield queue
        workers = GaugeMetricFamily("pneumo_workers_alive", "Workers with a live heartbeat")
        workers.add_metric([], len(workers_alive()))
        yield workers
        yield _drift_alarms()


def metrics_text() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PneumoCollector())
    return generate_latest(registry)
