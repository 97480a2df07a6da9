"""A radiologist's day in a real Chromium: worklist, viewer, heatmap, overrule and sign,
a colleague who finds the study claimed, the dashboard and the printed report."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from cases.models import Priority, Study
from inference.models import Prediction
from tests.browser.studies import study_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# A checksum of what the canvas shows, to see that a gesture changed the picture.
CANVAS_SUM = """() => {
  const c = document.getElementById('viewer-canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0;
  for (let i = 0; i < d.length; i += 4) s += d[i] + 3 * d[i + 1] + 7 * d[i + 2];
  return s;
}"""


def _canvas_sum(page) -> int:
    # Two animation frames: the viewer draws on the next one.
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    return page.evaluate(CANVAS_SUM)


@pytest.fixture
def named(rad, colleague_rad):
    rad.display_name, colleague_rad.display_name = "Dr Rae Diologist", "Dr Colin League"
    rad.save()
    colleague_rad.save()
    return rad, colleague_rad


@pytest.fixture
def reading_list(demo_site, north_site):
    """A flagged stat study to read, and the rest of a plausible worklist around it."""
    target = study_ready(
        demo_site,
        probability=0.91,
        priority=Priority.STAT,
        images=2,
        name="Ada Lovelace",
        sex="F",
        birth_date=timezone.localdate() - timedelta(days=4 * 365 + 40),
        waited=timedelta(minutes=12),
    )
    study_ready(demo_site, probability=0.34, priority=Priority.URGENT, waited=timedelta(hours=2))
    study_ready(demo_site, probability=0.78, priority=Priority.ROUTINE, waited=timedelta(hours=5))
    study_ready(demo_site, probability=None, priority=Priority.ROUTINE, waited=timedelta(hours=26))
    study_ready(demo_site, probability=0.12, priority=Priority.ROUTINE, waited=timedelta(minutes=50))
    study_ready(north_site, probability=0.99, priority=Priority.STAT, name="Not Ours")
    return target


def test_it_reads_overrules_and_signs_a_flagged_study(
    logged_in_page, named, reading_list, problems, screenshot, live_server
) -> None:
    rad, colleague = named
    target = reading_list
    page = logged_in_page(rad)

    # The worklist puts the flagged stat study first, in the stat lane.
    page.goto("/worklist/")
    first = page.locator("#worklist-rows tr").first
    assert first.get_attribute("data-study-id") == str(target.pk)
    assert "prio-stat" in first.get_attribute("class")
    assert page.locator('.lane-count[data-lane="stat"]').inner_text() == "1"
    assert "Not Ours" not in page.content()
    screenshot(page, "01-worklist")

    # Opening it shows the full-depth image, and the page claims it (a POST once loaded, not the GET).
    first.click()
    page.wait_for_url(f"**/studies/{target.pk}/")
    page.wait_for_selector("#viewer[data-state=ready]")
    page.wait_for_selector("#viewer[data-heatmap=ready]")
    page.wait_for_selector("#study[data-claimed=mine]")
    assert page.locator("#claim-box").inner_text().startswith("You are reading")
    target.refresh_from_db()
    assert (target.status, target.claimed_by) == ("in_review", rad)
    assert "AI result, not confirmed" in page.locator(".ai-image-panel:not([hidden])").text_content()
    before = _canvas_sum(page)

    # Dragging changes window and level, so the picture.
    box = page.locator("#viewer").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 160, cy - 90, steps=8)
    page.mouse.up()
    windowed = _canvas_sum(page)
    assert windowed != before
    page.click("[data-preset=default]")
    assert _canvas_sum(page) == before

    # The heatmap goes on, fades with the slider and goes off with H.
    page.click("[data-action=heatmap]")
    with_heat = _canvas_sum(page)
    assert with_heat != before
    page.eval_on_selector("#heat-opacity", "el => { el.value = 90; el.dispatchEvent(new Event('input')); }")
    stronger = _canvas_sum(page)
    assert stronger not in (before, with_heat)
    screenshot(page, "02-study-heatmap")
    page.keyboard.press("h")
    assert _canvas_sum(page) == before

    # A colleague opening it meanwhile finds it in review, read only.
    other = logged_in_page(colleague)
    other.goto(f"/studies/{target.pk}/")
    assert "In review by Dr Rae Diologist" in other.locator("#claim-box").inner_text()
    assert other.locator("#reading-form").count() == 0
    other.wait_for_selector("#viewer[data-state=ready]")
    screenshot(other, "03-study-claimed-by-colleague")
    other.close()

    # Overruling the AI asks for a reason; signing reports the study.
    assert page.locator("[data-reason-field]").is_hidden()
    page.click(".seg-no_pneumonia")
    assert page.locator("[data-reason-field]").is_visible()
    page.select_option("#reading-form select[name=reason]", "false_positive")
    page.fill("#reading-form textarea[name=report]", "Clear lungs. No consolidation.")
    screenshot(page, "04-study-overrule")
    page.click(".sign-button")
    page.wait_for_selector(".panel.signed")
    assert "Signed by Dr Rae Diologist" in page.locator(".panel.signed").inner_text()
    target.refresh_from_db()
    assert target.status == "reported"
    screenshot(page, "05-study-signed")

    # The dashboard counts the overrule and its reason.
    page.goto("/dashboard/")
    card = page.locator(".agreement-card").first
    assert card.locator('[data-metric="overruled"]').inner_text() == "1"
    assert card.locator('[data-reason="false_positive"]').inner_text() == "1"
    screenshot(page, "06-dashboard")

    # The printable report carries the signature and both pictures.
    page.goto(f"/studies/{target.pk}/report/")
    assert "Electronically signed by Dr Rae Diologist" in page.locator("#report").inner_text()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#report img')).every(i => i.complete && i.naturalWidth > 0)"
    )
    screenshot(page, "07-report")
    page.emulate_media(media="print")
    screenshot(page, "08-report-print")

    assert problems == []


def test_it_raises_a_banner_when_the_ai_flags_a_stat_study(
    logged_in_page, named, demo_site, problems, screenshot
) -> None:
    rad, _ = named
    study_ready(demo_site, probability=0.2, priority=Priority.ROUTINE)
    page = logged_in_page(rad)
    page.goto("/worklist/")
    assert page.locator("#alert-banner").is_hidden()

    flagged = study_ready(demo_site, probability=0.95, priority=Priority.STAT, name="Grace Hopper")
    Study.objects.filter(pk=flagged.pk).update(ai_completed_at=timezone.now(), updated_at=timezone.now())

    page.wait_for_selector("#alert-banner:not([hidden])", timeout=15_000)
    assert "STAT study flagged by the AI" in page.locator("#alert-banner").inner_text()
    page.wait_for_selector(f'#worklist-rows tr[data-study-id="{flagged.pk}"]')
    screenshot(page, "09-worklist-alert")
    assert problems == []


def test_it_shows_technicians_the_result_without_reading_tools(
    logged_in_page, tech, demo_site, problems, screenshot
) -> None:
    study = study_ready(demo_site, probability=0.64, priority=Priority.URGENT, name="Alan Turing", sex="M")
    Prediction.objects.filter(image__study=study).update(
        outside_validated_use=True,
        outside_validated_use_reason="Patient is 41 years old; the model is validated for ages 1 to 5.",
    )
    page = logged_in_page(tech)
    page.goto(f"/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-state=ready]")
    assert "Outside validated use." in page.locator(".ai-image-panel").inner_text()
    assert page.locator(".reading-form").count() == 0
    page.keyboard.press("i")  # the viewer itself is for everyone: technicians check image quality
    assert page.locator("[data-action=invert]").get_attribute("aria-pressed") == "true"
    screenshot(page, "10-study-technician-outside-validated-use")
    assert problems == []


def test_it_searches_the_worklist_without_putting_the_words_in_a_url(
    logged_in_page, named, demo_site, problems, screenshot
) -> None:
    rad, _ = named
    wanted = study_ready(demo_site, probability=None, name="Marie Curie", priority=Priority.URGENT)
    study_ready(demo_site, probability=0.7, name="Someone Else")
    page = logged_in_page(rad)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto("/worklist/")
    page.fill("#wl-search", "curie")
    page.press("#wl-search", "Enter")
    page.wait_for_selector(".filters-note")
    rows = page.locator("#worklist-rows tr[data-study-id]")
    assert rows.count() == 1 and rows.first.get_attribute("data-study-id") == str(wanted.pk)
    assert not [url for url in requests if "curie" in url.lower()]
    screenshot(page, "11-worklist-search-no-ai")
    assert problems == []
