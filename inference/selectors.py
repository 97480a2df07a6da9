"""Reads for predictions and models; access always through the image's or study's site.

The functions an edge calls take the reader: a shadowed study's predictions
(``cases.ai_modes``) are hidden from everyone but admins. ``user=None`` is the
system itself (services comparing a blind reading with the AI), never a reader.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet
from django.http import Http404

from cases.ai_modes import study_ai_hidden_from
from cases.models import Image, Study, User
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


def prediction_current(*, image: Image, user: User | None) -> Prediction | None:
    """The image's current prediction (see ``predictions_current_first``), or None (also when hidden from ``user``)."""
    if study_ai_hidden_from(user=user, study=image.study):
        return None
    predictions = predictions_current_first(image.predictions.select_related("model_version"))
    return predictions[0] if predictions else None


def predictions_current_by_image(*, study: Study, user: User | None) -> dict[int, Prediction]:
    """Each image's current prediction, by image id, in one query; none when hidden from ``user``."""
    current: dict[int, Prediction] = {}
    if study_ai_hidden_from(user=user, study=study):
        return current
    rows = Prediction.objects.filter(image__study=study).select_related("model_version")
    for prediction in predictions_current_first(rows):
        current.setdefault(prediction.image_id, prediction)
    return current


def predictions_for_user(*, user: User | None, study: Study) -> QuerySet[Prediction]:
    """The study's predictions ``user`` may see (none of a shadowed study, but to admins)."""
    if study_ai_hidden_from(user=user, study=study):
        return Prediction.objects.none()
    return Prediction.objects.filter(image__study=study)


def prediction_with_heatmap(*, image: Image, user: User | None) -> Prediction:
    """The image's current prediction if it succeeded with a heatmap; 404 otherwise (pages and API alike)."""
    prediction = prediction_current(image=image, user=user)
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


def study_ai_prediction(*, study: Study, user: User | None) -> Prediction | None:
    """The prediction behind the study's AI summary: the highest that counts, else the highest muted, else any.

    Pages name its model, threshold and routing beside the study's probability.
    """
    current = list(predictions_current_by_image(study=study, user=user).values())
    if not current:
        return None
    for rule in (prediction_counts, prediction_is_muted):
        chosen = [p for p in current if rule(p)]
        if chosen:
            return max(chosen, key=lambda p: p.probability)
    return current[0]
