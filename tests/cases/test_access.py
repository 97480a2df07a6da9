from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import Http404

from cases import selectors


def test_it_shows_a_user_only_their_sites_studies(demo_site, north_site, tech, make_study) -> None:
    ours = make_study(demo_site)
    make_study(north_site)
    assert list(selectors.studies_for_user(user=tech)) == [ours]


@pytest.mark.parametrize("who", ["tech", "rad"])
def test_it_hides_another_sites_patient_behind_404(request, who, north_site, make_patient) -> None:
    user = request.getfixturevalue(who)
    stranger = make_patient(north_site)
    with pytest.raises(Http404):
        selectors.patient_for_user(user=user, pk=stranger.pk)


def test_it_hides_another_sites_study_and_image(north_site, rad, make_study, make_image) -> None:
    study = make_study(north_site)
    image = make_image(study)
    with pytest.raises(Http404):
        selectors.study_for_user(user=rad, pk=study.pk)
    with pytest.raises(Http404):
        selectors.image_for_user(user=rad, pk=image.pk)


def test_it_lets_a_colleague_at_the_same_site_see_the_study(demo_site, tech, colleague_rad, make_study) -> None:
    study = make_study(demo_site, uploaded_by=tech)
    assert selectors.study_for_user(user=colleague_rad, pk=study.pk) == study


def test_it_lets_admins_see_every_site(demo_site, north_site, admin_user, make_study) -> None:
    make_study(demo_site)
    make_study(north_site)
    assert selectors.studies_for_user(user=admin_user).count() == 2


def test_it_shows_nothing_to_an_inactive_user(demo_site, tech, make_study) -> None:
    make_study(demo_site)
    tech.is_active = False
    assert selectors.studies_for_user(user=tech).count() == 0


def test_it_sends_each_role_to_its_start_page(tech, rad, admin_user) -> None:
    assert selectors.user_home_url_name(user=tech) == "upload"
    assert selectors.user_home_url_name(user=rad) == "worklist"
    assert selectors.user_home_url_name(user=admin_user) == "dashboard"


# --- Roles: one selector per capability, used by views, the API and the navigation ----------------

# (upload, sign, read the worklist, see the dashboard figures, administer)
CAPABILITIES = {
    "tech": (True, False, False, False, False),
    "rad": (False, True, True, True, False),
    "admin_user": (True, False, True, True, True),
}


def _capabilities(user) -> tuple[bool, ...]:
    return (
        selectors.user_can_upload(user=user),
        selectors.user_can_review(user=user),
        selectors.user_can_read_worklist(user=user),
        selectors.user_can_see_stats(user=user),
        selectors.user_is_admin(user=user),
    )


@pytest.mark.parametrize("who", CAPABILITIES)
def test_it_decides_what_each_role_may_do(request, who) -> None:
    assert _capabilities(request.getfixturevalue(who)) == CAPABILITIES[who]


def test_it_lets_an_anonymous_visitor_do_nothing() -> None:
    assert _capabilities(AnonymousUser()) == (False,) * 5
    assert selectors.user_role_label(user=AnonymousUser()) == ""


@pytest.mark.parametrize("who", CAPABILITIES)
def test_it_offers_in_the_navigation_exactly_the_pages_the_role_may_open(client, request, who) -> None:
    client.force_login(request.getfixturevalue(who))
    html = client.get("/studies/").content.decode()
    nav = re.search(r'<nav class="mainnav".*?</nav>', html, re.S).group(0)
    links = set(re.findall(r'href="([^"]+)"', nav))
    for url in ("/worklist/", "/upload/", "/dashboard/", "/admin/"):
        assert (url in links) == (client.get(url).status_code == 200), url
