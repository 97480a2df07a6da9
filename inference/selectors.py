"""Reads for predictions and models; access always through the image's or study's site."""

from __future__ import annotations

from django.db.models import QuerySet

from cases.models import Image, Study, User
from cases.selectors import images_for_user
from inference.models import ModelVersion, Prediction, PredictionStatus


def predictions_for_user(*, user: User) -> QuerySet[Prediction]:
    images = images_for_user(user=user)
    return Prediction.objects.filter(image__in=images.values("pk")).select_related("model_version", "image")


def predictions_of_study(*, study: Study) -> QuerySet[Prediction]:
    return Prediction.objects.filter(image__study=study).select_related("model_version").order_by("image_id", "-pk")


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
