"""What an error report (DEBUG's technical 500 page, the admins' error e-mail) may show.

Django's SafeExceptionReporterFilter hides settings whose names contain API,
TOKEN, KEY, SECRET, PASS, SIGNATURE or HTTP_COOKIE; DATABASE_URL, REDIS_URL and
CELERY_BROKER_URL carry passwords under other names. This filter hides those
names too, and masks the password of any URL that carries one wherever the
report would show it (a setting of any name, a request header, a variable of
the failing code).
"""

from __future__ import annotations

import re
from typing import Any

from django.template.defaultfilters import pprint
from django.views.debug import SafeExceptionReporterFilter

# "scheme://user:password@host" -> "scheme://user:********************@host"
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^\s/@:]*:)(?P<password>[^\s/@]*)@", re.IGNORECASE)


def url_passwords_masked(text: str, substitute: str) -> str:
    return _URL_PASSWORD.sub(lambda match: f"{match['head']}{substitute}@", text)


class ConnectionSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|DSN|DATABASE|BROKER|REDIS|CELERY_RESULT|LOCATION",
        flags=re.IGNORECASE,
    )

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        return self._masked(cleansed, str(cleansed)) if isinstance(cleansed, str) else cleansed

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> list[tuple[str, Any]]:
        return [
            (name, self._masked(value, str(value) if isinstance(value, str) else pprint(value)))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

    def _masked(self, value: Any, text: str) -> Any:
        """The value, or its masked ``text`` (what the report would show) when that holds a URL's password."""
        if not _URL_PASSWORD.search(text):
            return value
        return url_passwords_masked(text, self.cleansed_substitute)
