"""The API's study objects carry their StudyInstanceUID, and the study list finds a study by it."""

from __future__ import annotations

from django.urls import reverse

from tests.api.conftest import World


def test_it_shows_the_study_instance_uid_and_filters_by_it(world: World, api, rad) -> None:
    # Given DEMO's and NORTH's studies
    wanted = world.demo.awaiting
    url = reverse("api:study-list")

    # When a DEMO radiologist asks for one StudyInstanceUID, and for NORTH's
    mine = api(rad).get(url, {"study_instance_uid": wanted.study_instance_uid}).json()
    theirs = api(rad).get(url, {"study_instance_uid": world.north.awaiting.study_instance_uid}).json()

    # Then only that study comes back, with its UID; another site's UID finds nothing
    assert [row["id"] for row in mine["results"]] == [wanted.pk]
    assert mine["results"][0]["study_instance_uid"] == wanted.study_instance_uid
    assert theirs["results"] == []
