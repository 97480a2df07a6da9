"""The first look in a real Chromium: the worklist fits a 1366-pixel laptop screen, and no page
asks for a resource the site does not have (the favicon included)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cases.models import Priority, Study
from cases.states import StudyStatus
from tests.browser.studies import study_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LAPTOP = {"width": 1366, "height": 768}
LONG_NAME = "Featherstonehaugh-Cholmondeley-Worthington, Maximiliana Josephine Alexandra Evangeline"
LONG_READER = "Professor Dr Bartholomew Ignatius Fotheringay-Phipps, Consultant Paediatric Radiologist"
# How far the page scrolls sideways, and the elements whose visible part (clipped by any ancestor that
# hides its overflow) ends beyond the right edge of the screen.
OVERFLOW = """() => {
  const width = document.scrollingElement.clientWidth;
  const visibleRight = e => {
    let right = e.getBoundingClientRect().right;
    for (let a = e.parentElement; a; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible') right = Math.min(right, a.getBoundingClientRect().right);
    }
    return right;
  };
  const out = [...document.querySelectorAll('body *')]
    .filter(e => e.getClientRects().length && !e.closest('.visually-hidden') && visibleRight(e) > width + 0.5)
    .map(e => `${e.tagName.toLowerCase()}.${e.className}`);
  return {scroll: document.scrollingElement.scrollWidth - width, out: out.slice(0, 5)};
}"""


@pytest.fixture
def crowded_worklist(demo_site, north_site, rad, colleague_rad):
    """The widest rows a worklist can hold: long names, notes, readers, and two sites' tags."""
    rad.sites.add(north_site)  # two sites: each row shows its site's code
    colleague_rad.display_name = LONG_READER
    colleague_rad.save()
    claimed = study_ready(
        demo_site, probability=0.93, priority=Priority.STAT, name=LONG_NAME, patient_id="M" * 64, sex="F"
    )
    Study.objects.filter(pk=claimed.pk).update(
        status=StudyStatus.IN_REVIEW, claimed_by=colleague_rad, accession_number="A" * 64
    )
    refused = study_ready(
        demo_site, probability=None, priority=Priority.URGENT, name=LONG_NAME, waited=timedelta(days=40)
    )
    Study.objects.filter(pk=refused.pk).update(
        status_reason="No AI result: " + "View LL is a lateral view, and the model reads frontal views only; " * 3
    )
    study_ready(north_site, probability=0.41, priority=Priority.ROUTINE, name=LONG_NAME, waited=timedelta(hours=30))
    return claimed


def _page(logged_in_page, user):
    page = logged_in_page(user)
    page.set_viewport_size(LAPTOP)
    return page


def test_it_fits_the_worklist_on_a_1366_pixel_screen(logged_in_page, crowded_worklist, rad, screenshot) -> None:
    page = _page(logged_in_page, rad)
    page.goto("/worklist/")
    assert page.locator("#worklist-rows tr.wl-row").count() == 3
    screenshot(page, "first-look-worklist-1366")
    overflow = page.evaluate(OVERFLOW)
    assert overflow == {"scroll": 0, "out": []}
    # The long texts are cut short on screen, not lost: the full text is one hover away.
    patient = page.locator(f'tr[data-study-id="{crowded_worklist.pk}"] .c-patient')
    assert LONG_NAME in patient.get_attribute("title")


def _watch(page, failures: list[str], icons: list[str]) -> None:
    page.on("response", lambda r: icons.append(f"{r.status} {r.url}") if "favicon" in r.url else None)
    page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("requestfailed", lambda r: failures.append(f"failed {r.url} ({r.failure})"))


def test_it_requests_no_missing_resource_on_any_page(logged_in_page, demo_site, rad, admin_user, problems) -> None:
    study = study_ready(demo_site, probability=0.88, priority=Priority.URGENT, name="Example^Ada")
    icons: list[str] = []
    failures: list[str] = []
    page = _page(logged_in_page, rad)
    _watch(page, failures, icons)
    for path in ("/worklist/", f"/studies/{study.pk}/", f"/studies/{study.pk}/report/", "/studies/", "/dashboard/"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
    admin = _page(logged_in_page, admin_user)
    _watch(admin, failures, icons)
    for path in ("/upload/", "/admin/", "/api/docs/"):
        admin.goto(path)
        admin.wait_for_load_state("networkidle")
    # Pages without our <head> (Django admin, files opened directly) make the browser ask for /favicon.ico.
    assert admin.goto("/favicon.ico").status == 200
    assert failures == []
    assert problems == []
    assert any(line.startswith("200 ") for line in icons), icons  # the browser asked for an icon and got one
