"""Browser fixtures: Debian's Chromium driven by Playwright's sync API against ``live_server``.

A missing Chromium fails the run in CI and skips it elsewhere, loudly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.test import Client

from cases.models import User

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
VIEWPORT = {"width": 1600, "height": 960}


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[object]:
    """One Chromium per test module: Playwright's loop must be gone before other code starts its own."""
    if not CHROMIUM.exists():
        reason = f"BROWSER TESTS NOT RUN: {CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make
    # between browser steps are still plain synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(autouse=True)
def role_groups(transactional_db) -> None:
    """The role groups come from a data migration, which a transactional test's flush removes."""
    for name in ("Technician", "Radiologist"):
        Group.objects.get_or_create(name=name)


class Problems(list):
    """JavaScript errors and CSP refusals seen by any page of the test."""

    def watch(self, page) -> None:
        page.on("pageerror", lambda error: self.append(f"page error: {error}"))
        page.on("console", lambda m: self._console(m))

    def _console(self, message) -> None:
        if message.type == "error":
            self.append(f"console: {message.text} at {message.location}")


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
def logged_in_page(chromium_browser, live_server, problems) -> Iterator[Callable[[User], object]]:
    """``open_as(user)``: a page in a fresh browser context whose session is ``user``'s."""
    contexts = []

    def open_as(user: User):
        client = Client()
        client.force_login(user)
        cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
        context = chromium_browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
        context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        problems.watch(page)
        return page

    yield open_as
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot() -> Callable[[object, str], Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=False)
        return path

    return take
