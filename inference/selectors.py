"""Reads for predictions and models; access always through the image's or study's site."""

from __future__ import annotations

from django.db.models import QuerySet

from cases.models import Image
from inference.models import ModelVersion, Prediction, PredictionStatus


def prediction_current(*, image: Image) -> Prediction | None:
    """The active model's prediction for an image, else the newest one."""
    predictions = list(image.predictions.select_related("model_version").order_by("-created_at"))
    for prediction in predictions:
        if prediction.model_version.is_active:
            return prediction
    return predictions[0] if predictions else None


def prediction_succeeded(prediction: Prediction | None) -> bool:
    return prediction is not None and prediction.status == PredictionStatus.SUCCEEDED


def model_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.all()
