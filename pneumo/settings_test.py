"""Test overrides: fast hashing, in-memory e-mail, media in a temporary folder."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("DEBUG", "1")

from pneumo.settings import *  # noqa: F403
from pneumo.settings import BASE_DIR

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="pneumo-media-"))  # noqa: F405
STORAGES["default"]["OPTIONS"] = {"location": str(MEDIA_ROOT)}  # noqa: F405
PNEUMO_MODEL_DIR = Path(os.environ.get("PNEUMO_MODEL_DIR", str(BASE_DIR / "var" / "models")))  # noqa: F405
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
