"""Each image to the version made for its patient: by age at every boundary, else by the image (inference.routing)."""

from __future__ import annotations

import pytest

from inference.domain import IN_DOMAIN, NOT_CHEST_XRAY, OUTSIDE_DOMAIN, DomainVerdict
from inference.models import ModelVersion, Population, Routing
from inference.routing import caveats_for, choose_by_domain, route_image, route_requested


def _version(name: str, population: str, ages: tuple[float, float], views: list[str]) -> ModelVersion:
    return ModelVersion(
        pk=1 if population == Population.PAEDIATRIC else 2,
        name=name,
        population=population,
        intended_min_age_years=ages[0],
        intended_max_age_years=ages[1],
        intended_views=views,
    )


CHILD = _version("paed-v2", Population.PAEDIATRIC, (1.0, 5.0), ["AP"])
ADULT = _version("adult-v1", Population.ADULT, (18.0, 85.0), ["AP", "PA"])
BOTH = {Population.PAEDIATRIC: CHILD, Population.ADULT: ADULT}


@pytest.mark.parametrize(
    ("age", "version", "reason"),
    [
        (0.0, CHILD, "age 0 months: paediatric model"),
        (0.5, CHILD, "age 6 months: paediatric model"),
        (5.0, CHILD, "age 5 years: paediatric model"),
        (17.99, CHILD, "age 18 years: paediatric model"),  # described rounded, routed by the exact age
        (18.0, ADULT, "age 18 years: adult model"),
        (58.0, ADULT, "age 58 years: adult model"),
        (85.0, ADULT, "age 85 years: adult model"),
        (97.0, ADULT, "age 97 years: adult model"),
    ],
)
def test_it_routes_a_known_age_by_population_at_every_boundary(age, version, reason) -> None:
    route = route_image(age, BOTH)

    assert (route.version, route.routing, route.reason, route.decided) == (version, Routing.AGE, reason, True)


@pytest.mark.parametrize(
    ("age", "caveat"),
    [
        (0.5, "Patient is 6 months old, outside the validated ages of 1 to 5 years"),
        (12.0, "Patient is 12 years old, outside the validated ages of 1 to 5 years"),
        (5.0, None),
        (18.0, None),
        (85.0, None),
        (90.0, "Patient is 90 years old, outside the validated ages of 18 to 85 years"),
    ],
)
def test_routing_ages_are_not_validated_ages(age, caveat) -> None:
    # A 12-year-old goes to the paediatric version, outside its validated ages: a caveat, not another route.
    route = route_image(age, BOTH)

    caveats = caveats_for(route.version, age_years=age, view="AP")
    assert caveats == ([caveat] if caveat else [])


def test_it_checks_the_views_of_the_routed_version() -> None:
    assert caveats_for(ADULT, age_years=40, view="PA") == []
    assert caveats_for(CHILD, age_years=3, view="PA") == ["View PA is not the validated AP view"]


@pytest.mark.parametrize(("age", "population"), [(3.0, Population.PAEDIATRIC), (58.0, Population.ADULT)])
def test_it_routes_to_the_other_population_when_one_is_inactive(age, population) -> None:
    only = {population: BOTH[population]}
    other = ADULT if population == Population.PAEDIATRIC else CHILD

    route = route_image(age, {other.population: other})

    assert route.version == other and route.decided
    assert f"no {population} model is active" in route.reason
    assert route_image(age, only).version == BOTH[population]


def test_it_leaves_an_unknown_age_to_the_image_among_every_active_version() -> None:
    route = route_image(None, BOTH)

    assert route.routing == Routing.DOMAIN and not route.decided
    assert set(route.candidates) == {CHILD, ADULT}


def test_it_names_the_only_active_version_for_an_unknown_age() -> None:
    route = route_image(None, {Population.ADULT: ADULT})

    assert route.decided and route.version == ADULT
    assert route.reason == "age unknown: the only active model (adult)"


def test_it_routes_nothing_without_an_active_version() -> None:
    assert route_image(40.0, {}) is None
    assert route_image(None, {}) is None


def _verdict(domain: str, score: float, limit: float) -> DomainVerdict:
    return DomainVerdict(domain, score, limit, "")


def test_it_chooses_the_version_whose_domain_finds_the_image_most_typical() -> None:
    # Relative to their limits: 0.5 for the adult check, 0.9 for the paediatric one.
    chosen, reason = choose_by_domain(
        [(CHILD, _verdict(IN_DOMAIN, 90.0, 100.0)), (ADULT, _verdict(IN_DOMAIN, 5.0, 10.0))]
    )

    assert chosen == ADULT
    assert reason == "age unknown: image most like the adult training images"


def test_inside_one_domain_beats_nearer_scores_outside_another() -> None:
    chosen, _ = choose_by_domain(
        [(CHILD, _verdict(IN_DOMAIN, 99.0, 100.0)), (ADULT, _verdict(OUTSIDE_DOMAIN, 10.5, 10.0))]
    )

    assert chosen == CHILD


def test_an_image_outside_every_domain_goes_to_the_nearest_and_stays_outside() -> None:
    chosen, reason = choose_by_domain(
        [(CHILD, _verdict(OUTSIDE_DOMAIN, 300.0, 100.0)), (ADULT, _verdict(OUTSIDE_DOMAIN, 12.0, 10.0))]
    )

    assert chosen == ADULT
    assert reason == "age unknown: image unlike every model's training images, nearest the adult"


def test_no_chest_xray_for_every_version_still_names_one() -> None:
    chosen, _ = choose_by_domain(
        [(CHILD, _verdict(NOT_CHEST_XRAY, 50.0, 10.0)), (ADULT, _verdict(NOT_CHEST_XRAY, 20.0, 10.0))]
    )

    assert chosen == ADULT


def test_an_admin_request_names_its_version() -> None:
    route = route_requested(ADULT)

    assert (route.version, route.routing, route.decided) == (ADULT, Routing.REQUESTED, True)
