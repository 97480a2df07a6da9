"""Settings come from the environment: each test imports a fresh settings module."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

PROBE = """
import json, pneumo.settings as s
print(json.dumps({
    "debug": s.DEBUG, "hosts": s.ALLOWED_HOSTS, "engine": s.DATABASES["default"]["ENGINE"],
    "db_name": str(s.DATABASES["default"]["NAME"]), "ssl": s.SECURE_SSL_REDIRECT, "hsts": s.SECURE_HSTS_SECONDS,
    "secure_cookie": s.SESSION_COOKIE_SECURE, "redis": s.REDIS_URL, "media": str(s.MEDIA_ROOT),
    "options": s.DATABASES["default"].get("OPTIONS", {}), "secret": s.SECRET_KEY,
}))
"""


def _settings(env: dict[str, str]) -> dict:
    clean = {"PATH": "/usr/bin:/bin", **env}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=clean,
        check=True,
        capture_output=True,
        text=True,
        cwd=str(django_settings.BASE_DIR),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_it_turns_every_production_setting_on_with_debug_off() -> None:
    s = _settings({"DEBUG": "0", "SECRET_KEY": "k" * 60, "ALLOWED_HOSTS": "pneumo.example.org"})
    assert s["debug"] is False and s["hosts"] == ["pneumo.example.org"]
    assert s["ssl"] and s["secure_cookie"] and s["hsts"] >= 31_536_000


def test_it_refuses_to_start_without_a_secret_key_in_production() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={"PATH": "/usr/bin:/bin", "DEBUG": "0"},
        capture_output=True,
        text=True,
        cwd=str(django_settings.BASE_DIR),
    )
    assert out.returncode != 0 and "SECRET_KEY" in out.stderr


def test_it_defaults_to_sqlite_with_wal_and_immediate_transactions() -> None:
    s = _settings({"DEBUG": "1"})
    assert s["engine"] == "django.db.backends.sqlite3" and s["db_name"].endswith("var/pneumo.sqlite3")
    assert s["options"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in s["options"]["init_command"]


def test_it_reads_database_redis_and_media_from_the_environment(tmp_path) -> None:
    s = _settings(
        {
            "DEBUG": "1",
            "DATABASE_URL": "postgres://u:p@db.internal:5432/pneumo",
            "REDIS_URL": "redis://cache:6380/2",
            "MEDIA_ROOT": str(tmp_path),
        }
    )
    assert s["engine"] == "django.db.backends.postgresql" and s["db_name"] == "pneumo"
    assert s["redis"] == "redis://cache:6380/2" and s["media"] == str(tmp_path)


def test_it_accepts_an_absolute_sqlite_url(tmp_path) -> None:
    s = _settings({"DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"})
    assert s["db_name"] == f"{tmp_path}/x.sqlite3"


def test_it_reads_secrets_from_files(tmp_path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file-" + "s" * 50 + "\n")
    s = _settings({"DEBUG": "0", "SECRET_KEY_FILE": str(secret), "ALLOWED_HOSTS": "x"})
    assert s["secret"] == "from-a-file-" + "s" * 50


def test_it_swaps_local_files_for_an_s3_bucket_by_configuration_alone() -> None:
    probe = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'pneumo.settings'); django.setup();"
        "from django.core.files.storage import default_storage as s;"
        "print(type(s._wrapped if hasattr(s, '_wrapped') else s).__name__, s.bucket_name, s.endpoint_url)"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "1",
        "PNEUMO_STORAGE_BACKEND": "storages.backends.s3.S3Storage",
        "AWS_STORAGE_BUCKET_NAME": "pneumo-studies",
        "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
    }
    out = subprocess.run(
        [sys.executable, "-c", f"{probe}; s._setup(); print(type(s._wrapped).__name__)"],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(django_settings.BASE_DIR),
    )
    assert out.returncode == 0, out.stderr
    assert "pneumo-studies http://127.0.0.1:9000" in out.stdout and "S3Storage" in out.stdout


def _refusal(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={"PATH": "/usr/bin:/bin", "SECRET_KEY": "k" * 60, "ALLOWED_HOSTS": "x", **env},
        capture_output=True,
        text=True,
        cwd=str(django_settings.BASE_DIR),
    )
    assert out.returncode != 0, out.stdout
    return out.stderr.strip().splitlines()[-1]


def test_it_refuses_a_misspelt_boolean_instead_of_reading_it_as_false() -> None:
    # Before: PNEUMO_HTTPS=ture was read as false and turned off redirects, HSTS and secure cookies.
    error = _refusal({"DEBUG": "0", "PNEUMO_HTTPS": "ture"})
    assert "ImproperlyConfigured" in error and "PNEUMO_HTTPS" in error
    assert all(word in error for word in ("1", "0", "true", "false", "yes", "no", "on", "off"))


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "Yes", "on", " On "])
def test_it_reads_every_spelling_of_true(value: str) -> None:
    s = _settings({"DEBUG": "1", "PNEUMO_HTTPS": value})
    assert s["ssl"] is True and s["secure_cookie"] is True


@pytest.mark.parametrize("value", ["0", "false", "False", "NO", "off"])
def test_it_reads_every_spelling_of_false(value: str) -> None:
    s = _settings({"DEBUG": "0", "SECRET_KEY": "k" * 60, "ALLOWED_HOSTS": "x", "PNEUMO_HTTPS": value})
    assert s["ssl"] is False and s["hsts"] == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [("PNEUMO_TASK_MAX_ATTEMPTS", "3x"), ("PNEUMO_HSTS_SECONDS", "1.5"), ("PNEUMO_INFERENCE_THREADS", "0")],
)
def test_it_refuses_an_integer_it_cannot_read(name: str, value: str) -> None:
    error = _refusal({"DEBUG": "1", name: value})
    assert "ImproperlyConfigured" in error and name in error and "integer" in error


def test_it_refuses_a_debug_typo_too() -> None:
    error = _refusal({"DEBUG": "flase"})
    assert "DEBUG" in error


def _names_read_by_settings() -> set[str]:
    tree = ast.parse((Path(django_settings.BASE_DIR) / "pneumo" / "settings.py").read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id.startswith("env")
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def _names_in_readme_table() -> set[str]:
    readme = (Path(django_settings.BASE_DIR) / "README.md").read_text()
    section = readme[readme.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row)}


def test_it_documents_every_variable_the_settings_read_and_no_other() -> None:
    read, documented = _names_read_by_settings(), _names_in_readme_table()
    assert len(read) > 40
    assert read - documented == set(), "read by pneumo/settings.py but missing from the README's table"
    assert documented - read == set(), "in the README's table but never read by pneumo/settings.py"


_READS_ENVIRONMENT = re.compile(r"os\.environ\.get|os\.environ\[|os\.getenv|getattr\(settings,")


def test_it_reads_the_environment_in_the_settings_module_only() -> None:
    root = Path(django_settings.BASE_DIR)
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("cases", "inference", "pneumo")
        for path in (root / folder).rglob("*.py")
        if path.name not in {"settings.py", "settings_test.py"}
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _READS_ENVIRONMENT.search(line)
    ]
    assert offenders == []
