"""Which model version reads an image: the one made for its patient. One rule, one place.

Routing ages are not validated ages. A known age routes by population (under
18 years to the paediatric version, 18 and over to the adult one); whether the
age lies inside the routed version's validated range (1 to 5, 18 to 85) is a
separate question whose answer is a caveat on the prediction (``use_caveats``),
never a reason to route elsewhere. When the age is unknown (most PNG and JPEG
uploads) the worker runs every active version on the image (one forward pass
when they share a frozen base: ``inference.runtime``) and keeps the version
whose domain check finds the image most typical (``choose_by_domain``).

The ingest, the worker, ``evaluate_model`` and ``scope_report`` all route here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cases.imaging.eligibility import describe_age, use_caveats
from inference.domain import IN_DOMAIN, DomainVerdict, domain_rank
from inference.models import ModelVersion, Population, Routing

ADULT_FROM_YEARS = 18.0
POPULATION_WORDS = {Population.PAEDIATRIC: "paediatric", Population.ADULT: "adult"}


@dataclass(frozen=True)
class Route:
    """The version chosen for an image, how, and why (in words a radiologist reads on the study page).

    ``candidates`` are the versions the worker compares when the age is unknown; otherwise just ``version``.
    """

    version: ModelVersion
    routing: str  # a Routing value
    reason: str
    candidates: tuple[ModelVersion, ...]

    @property
    def decided(self) -> bool:
        return len(self.candidates) == 1


def population_for_age(age_years: float) -> str:
    return Population.ADULT if age_years >= ADULT_FROM_YEARS else Population.PAEDIATRIC


def _words(population: str) -> str:
    return POPULATION_WORDS.get(population, population)


def route_image(age_years: float | None, actives: Mapping[str, ModelVersion]) -> Route | None:
    """The route of an image from what is known before the model runs; None when no version is active."""
    if not actives:
        return None
    ordered = tuple(actives[p] for p in sorted(actives))
    if age_years is not None:
        age = describe_age(age_years)
        population = population_for_age(age_years)
        version = actives.get(population)
        if version is not None:
            return Route(version, Routing.AGE, f"age {age}: {_words(population)} model", (version,))
        # Only the other population's version is active: it reads the image, outside its validated ages.
        other = ordered[0]
        reason = f"age {age}: no {_words(population)} model is active, so the {_words(other.population)} model"
        return Route(other, Routing.AGE, reason, (other,))
    if len(ordered) == 1:
        only = ordered[0]
        return Route(only, Routing.DOMAIN, f"age unknown: the only active model ({_words(only.population)})", ordered)
    return Route(ordered[0], Routing.DOMAIN, "age unknown: to be routed by the image", ordered)


def route_requested(version: ModelVersion) -> Route:
    return Route(version, Routing.REQUESTED, f"run with {version.name} at an admin's request", (version,))


def choose_by_domain(verdicts: Sequence[tuple[ModelVersion, DomainVerdict]]) -> tuple[ModelVersion, str]:
    """The version whose domain check finds the image most typical, and the reason shown for it.

    An image outside every domain goes to the nearest, whose verdict (``outside_domain``) mutes the result.
    """
    if not verdicts:
        raise ValueError("no version to choose from")
    version, verdict = min(verdicts, key=lambda pair: (domain_rank(pair[1]), pair[0].population))
    if len(verdicts) == 1:
        return version, f"age unknown: the only active model ({_words(version.population)})"
    if verdict.domain == IN_DOMAIN:
        return version, f"age unknown: image most like the {_words(version.population)} training images"
    return version, f"age unknown: image unlike every model's training images, nearest the {_words(version.population)}"


def caveats_for(version: ModelVersion, *, age_years: float | None, view: str | None) -> list[str]:
    """The caveats that put an image outside ``version``'s validated use: its ages and its views."""
    return use_caveats(
        age_years,
        view,
        min_age=version.intended_min_age_years,
        max_age=version.intended_max_age_years,
        views=tuple(version.intended_views or ()),
    )
