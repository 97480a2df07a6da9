"""Reads for predictions and models; access always through the image's or study's site."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet
from django.http import Http404

from cases.models import Image, Study
from inference.display import prediction_counts, prediction_is_muted
from inference.models import ModelVersion, Prediction, PredictionStatus


def predictions_current_first(predictions: Iterable[Prediction]) -> list[Prediction]:
    """An image's predictions, its current one first: the newest that succeeded, else the newest.

    A re-run (a new version, or an admin's request) becomes current only once it has a result:
    until then the result a radiologist read stays on the screen.
    """

    def key(p: Prediction) -> tuple:
        succeeded = p.status == PredictionStatus.SUCCEEDED
        return (succeeded, (p.finished_at if succeeded and p.finished_at else p.created_at), p.pk)

    return sorted(predictions, key=key, reverse=True)


def prediction_current(*, image: Image) -> Prediction | None:
    """The image's current prediction (see ``predictions_current_first``), or None."""
    predictions = predictions_current_first(image.predictions.select_related("model_version"))
    return predictions[0] if predictions else None


def predictions_current_by_image(*, study: Study) -> dict[int, Prediction]:
    """Each image's current prediction, by image id, in one query."""
    current: dict[int, Prediction] = {}
    rows = Prediction.objects.filter(image__study=study).select_related("model_version")
    for prediction in predictions_current_first(rows):
        current.setdefault(prediction.image_id, prediction)
    return current


def prediction_with_heatmap(*, image: Image) -> Prediction:
    """The image's current prediction if it succeeded with a heatmap; 404 otherwise (pages and API alike)."""
    prediction = prediction_current(image=image)
    if not prediction_has_heatmap(prediction):
        raise Http404("This image has no AI heatmap.")
    prediction.image = image
    return prediction


def prediction_succeeded(prediction: Prediction | None) -> bool:
    return prediction is not None and prediction.status == PredictionStatus.SUCCEEDED


def prediction_has_heatmap(prediction: Prediction | None) -> bool:
    """A heatmap to show: a result that counts (not muted by the scope check, not "no result") and has one."""
    return prediction_counts(prediction) and bool(prediction.heatmap)


def model_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.all()


def study_ai_prediction(*, study: Study) -> Prediction | None:
    """The prediction behind the study's AI summary: the highest that counts, else the highest muted, else any.

    Pages name its model, threshold and routing beside the study's probability.
    """
    current = list(predictions_current_by_image(study=study).values())
    if not current:
        return None
    for rule in (prediction_counts, prediction_is_muted):
        chosen = [p for p in current if rule(p)]
        if chosen:
            return max(chosen, key=lambda p: p.probability)
    return current[0]
