"""Test overrides: fast hashing, in-memory e-mail, media in a temporary folder.

Values that worker processes started by the tests must share (media folder,
SQLite test database, queue name) are exported to the environment, which the
children inherit.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="pneumo-media-"))

from pneumo.settings import *  # noqa: F403
from pneumo.settings import BASE_DIR, DATABASES, MEDIA_ROOT, STORAGES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES["default"]["OPTIONS"] = {"location": str(MEDIA_ROOT)}
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that a worker process started by a test shares it.
    _test_db = os.environ.setdefault("PNEUMO_TEST_SQLITE", str(BASE_DIR / "var" / f"test-{os.getpid()}.sqlite3"))
    DATABASES["default"]["TEST"] = {"NAME": _test_db}
