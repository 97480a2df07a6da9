"""The project's URLs with the reading pages first, until ``cases/urls.py`` includes them.

Used only when the real URLconf does not route ``/studies/<id>/`` to the study
page yet (see ``reading_urls`` in the test modules); once it does, this is unused.
"""

from __future__ import annotations

from django.urls import include, path

from pneumo.urls import urlpatterns as project_urlpatterns

urlpatterns = [path("", include("cases.urls_reading")), *project_urlpatterns]


def use_reading_urls(settings) -> None:
    """Route through this module while the project's URLconf lacks the reading pages."""
    from django.urls import Resolver404, resolve

    from cases import views_reading

    try:
        wired = resolve("/studies/1/").func is views_reading.study_detail
        wired = wired and resolve("/worklist/").func is views_reading.worklist
        wired = wired and resolve("/dashboard/").func is views_reading.dashboard
    except Resolver404:
        wired = False
    if not wired:
        settings.ROOT_URLCONF = __name__
