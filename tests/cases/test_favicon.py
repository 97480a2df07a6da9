"""Browsers ask every page for an icon: the site has one, so no page load ends in a 404.

(The browser test in tests/browser/test_first_look.py sees it served; here the test client,
which serves no static files, checks where the site points.)
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from PIL import Image


def _static_file(url: str) -> str:
    assert url.startswith(settings.STATIC_URL)
    found = finders.find(url.removeprefix(settings.STATIC_URL))
    assert found, f"no static file behind {url}"
    return found


@pytest.mark.django_db
def test_it_sends_browsers_asking_for_favicon_ico_to_a_real_icon(client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 301  # browsers remember where it lives
    with Image.open(_static_file(response["Location"])) as icon:
        assert icon.format == "ICO" and icon.size == (32, 32)


@pytest.mark.django_db
def test_it_names_an_icon_that_exists_on_every_page(client) -> None:
    page = client.get("/accounts/login/").content.decode()
    href = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page).group(1)
    with open(_static_file(href), encoding="utf-8") as icon:
        assert icon.read().startswith("<svg")
