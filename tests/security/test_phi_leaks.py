"""No patient data outside the database: not in logs (ours, the worker's, the access log), not in the broker,
not in task messages, not on error pages.

A patient with an unmistakable name and ID goes through the whole workflow
with a real Celery worker; then everything the run wrote elsewhere is searched
for them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import logging
import os
import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from celery.signals import before_task_publish
from django.conf import settings
from django.core.signals import request_started
from django.test import Client
from django.urls import reverse
from gunicorn.config import Config
from gunicorn.glogging import Logger, SafeAtoms
from rest_framework.test import APIClient

from cases import views_reading
from cases.log_scrubbing import ScrubPatientDataFilter
from cases.models import AuditEvent, Study
from inference.models import Prediction
from tests.dicom_factory import make_dicom, make_png
from tests.inference.test_worker import wait_for

DICOM_NAME, PATIENT_ID = "Zyxwvut^Quixotic", "QX-774411"
SECRETS = ("Zyxwvut", "Quixotic", "QX-774411", "774411")
PASSWORD = "correct-horse-battery"
ROOT = Path(settings.BASE_DIR)


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret.lower() in text.lower()]


# --- What the run left in Redis -------------------------------------------------------------------------

_BASE64 = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}")


def _decoded(raw: bytes) -> str:
    """The bytes as text, with every base64 run (kombu encodes message bodies) decoded beside it."""
    parts = [raw.decode("utf-8", "replace")]
    for run in _BASE64.findall(raw):
        try:
            parts.append(base64.b64decode(run + b"=" * (-len(run) % 4)).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            continue
    return "\n".join(parts)


def _value(client: redis.Redis, key: bytes) -> str:
    kind = client.type(key).decode()
    if kind == "string":
        items = [client.get(key) or b""]
    elif kind == "list":
        items = client.lrange(key, 0, -1)
    elif kind == "hash":
        items = [k + b"=" + v for k, v in client.hgetall(key).items()]
    elif kind == "set":
        items = list(client.smembers(key))
    elif kind == "zset":
        items = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
    else:
        items = []
    return "\n".join(_decoded(item) for item in items)


def redis_dump() -> dict[str, str]:
    """This run's keys (its queue's, pneumo:*) and the shared kombu keys that mention its queue, decoded.

    Only reads: nothing is flushed or deleted, other runs may share this Redis.
    """
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    queue = os.environ["PNEUMO_QUEUE"]
    found = {}
    for key in client.scan_iter(count=1000):
        name = key.decode("utf-8", "replace")
        mine = queue in name or name.startswith("pneumo:")
        if not (mine or name.startswith(("unacked", "_kombu"))):
            continue
        value = _value(client, key)
        if mine or queue in value:
            found[name] = value
    return found


# --- The access log's format ------------------------------------------------------------------------------


def gunicorn_access_formats() -> dict[str, str]:
    """The --access-logformat of every place that starts gunicorn (compose; make run serves with waitress)."""
    formats = {}
    compose = (ROOT / "docker" / "compose.yaml").read_text()
    match = re.search(r"exec gunicorn[^']*--access-logformat '([^']+)'", compose)
    assert match, "docker/compose.yaml no longer starts gunicorn with --access-logformat"
    formats["docker/compose.yaml"] = match.group(1).replace('\\"', '"')
    return formats


def access_line(log_format: str, environ: dict) -> str:
    """The line gunicorn would write for this request, with its own atoms."""
    environ = {"SERVER_PROTOCOL": "HTTP/1.1", **environ}
    query = environ.get("QUERY_STRING", "")
    environ.setdefault("RAW_URI", environ["PATH_INFO"] + (f"?{query}" if query else ""))
    response = SimpleNamespace(status="200 OK", headers=[], sent=1234)
    atoms = Logger(Config()).atoms(response, [], environ, timedelta(milliseconds=12))
    return log_format % SafeAtoms(atoms)


def run_access_line(environ: dict) -> str:
    """The line make run's web server (scripts/run.py's access_logged) writes for this request."""
    from scripts.run import access_logged

    def app(environ: dict, start_response) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    written = io.StringIO()
    with contextlib.redirect_stdout(written):
        access_logged(app)({"REQUEST_METHOD": "GET", **environ}, lambda *args: None)
    return written.getvalue()


def test_it_formats_access_logs_without_query_strings_or_referers() -> None:
    line = run_access_line({"PATH_INFO": "/worklist/", "QUERY_STRING": "q=Zyxwvut", "HTTP_REFERER": "/?q=Zyxwvut"})
    assert '"GET /worklist/" 200' in line and "Zyxwvut" not in line
    formats = gunicorn_access_formats()
    nginx = (ROOT / "docker" / "nginx.conf").read_text()
    for where, log_format in formats.items():
        assert "%(U)s" in log_format, where
        assert not re.search(r"%\((r|q|f|\{[^}]+\}[ie])\)s", log_format), (where, log_format)
    log_formats = re.findall(r"log_format\s+\w+[^;]*;", nginx)
    assert log_formats and all("$uri" in f for f in log_formats)
    banned = ("$request_uri", "$args", "$query_string", "$http_referer", "$request ", "$request'", "$arg_")
    assert not [word for f in log_formats for word in banned if word in f]
    assert re.search(r"access_log\s+\S+\s+\w+", nginx)


# --- The whole workflow -----------------------------------------------------------------------------------


def _upload(client: Client, name: str, data: bytes, **fields) -> dict:
    upload = io.BytesIO(data)
    upload.name = name
    response = client.post(reverse("upload_files"), {"files": [upload], "priority": "urgent", **fields})
    assert response.status_code == 200, response.content[:300]
    return response.json()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_patient_out_of_logs_broker_and_task_messages(
    celery_worker, demo_site, tech, rad, caplog, capfd
) -> None:
    # Given every logger at DEBUG, and the run's task messages and requests recorded
    for name in ["", *logging.root.manager.loggerDict]:
        caplog.set_level(logging.DEBUG, logger=name)
    published, environs = [], []

    def on_publish(body=None, headers=None, **kwargs) -> None:
        published.append(json.dumps({"body": body, "headers": headers}, default=str))

    def on_request(sender=None, environ=None, **kwargs) -> None:
        environs.append({k: v for k, v in environ.items() if isinstance(v, str)})

    before_task_publish.connect(on_publish, weak=False)
    request_started.connect(on_request, weak=False)
    try:
        snapshots = _workflow(demo_site, tech, rad)
    finally:
        before_task_publish.disconnect(on_publish)
        request_started.disconnect(on_request)
    snapshots.append(redis_dump())
    out, err = capfd.readouterr()

    # Then nothing outside the database names the patient
    assert Prediction.objects.filter(status="succeeded").count() == 2
    assert not leaks(caplog.text), [r.getMessage() for r in caplog.records if leaks(r.getMessage())]
    assert not leaks(out + err)
    assert not leaks(celery_worker.log()), celery_worker.log()[-2000:]
    assert published and not leaks("\n".join(published)), published
    keys = {key for snapshot in snapshots for key in snapshot}
    assert any(key.startswith("pneumo:worker:") for key in keys) and any(key.startswith("_kombu") for key in keys)
    for snapshot in snapshots:
        assert not {key: leaks(key + value) for key, value in snapshot.items() if leaks(key + value)}
    lines = [access_line(fmt, environ) for fmt in gunicorn_access_formats().values() for environ in environs]
    lines += [run_access_line(environ) for environ in environs]
    assert lines and not [line for line in lines if leaks(line)]
    assert any("q=Zyxwvut" in environ.get("QUERY_STRING", "") for environ in environs)  # it was in the URL
    assert not leaks(json.dumps(list(AuditEvent.objects.values("action", "object_id", "detail", "username"))))
    assert not leaks(" ".join(Prediction.objects.values_list("error", flat=True)))


def _workflow(demo_site, tech, rad) -> list[dict[str, str]]:
    """Upload (page, DICOM and typed PNG), AI by the worker, search, read, sign, report, API, sign out."""
    techs, rads = Client(), Client()
    techs.post(reverse("login"), {"username": "tech", "password": PASSWORD})
    dicom = make_dicom(8, patient_id=PATIENT_ID, patient_name=DICOM_NAME, study_description="XR CHEST")
    _upload(techs, "chest.dcm", dicom)
    snapshots = [redis_dump()]  # while the message is queued or held by the worker
    typed = {"patient_id": PATIENT_ID, "patient_name": "Zyxwvut Quixotic", "study_description": "CXR"}
    _upload(techs, "photo.png", make_png(9, shape=(128, 128)), **typed)
    wait_for(
        lambda: Prediction.objects.filter(status="succeeded").count() == 2,
        timeout=90,
        what="the worker to finish both predictions",
    )
    snapshots.append(redis_dump())

    rads.post(reverse("login"), {"username": "rad", "password": PASSWORD})
    rads.post(reverse("worklist"), {"search": "Zyxwvut"})
    assert "Zyxwvut" in rads.get(reverse("worklist")).content.decode()
    rads.get(reverse("worklist"), {"q": "Zyxwvut"})  # a careless bookmark: the name in a query string
    rads.get(reverse("worklist_rows"), HTTP_X_PNEUMO_BACKGROUND="1")
    study = Study.objects.get(images__kind="dicom")
    rads.get(reverse("study_detail", args=[study.pk]))
    finding = "pneumonia" if study.ai_flagged else "no_pneumonia"
    signed = rads.post(reverse("study_sign", args=[study.pk]), {"finding": finding, "report": "Clear lungs."})
    assert signed.status_code == 302
    rads.get(reverse("study_report", args=[study.pk]))
    rads.get(reverse("image_file", args=[study.images.get().pk]))

    api = APIClient()
    token = api.post(reverse("api:token"), {"username": "rad", "password": PASSWORD}, format="json").json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    found = api.post(reverse("api:patient-search"), {"query": "Quixotic"}, format="json").json()
    assert found["results"][0]["patient_id"] == PATIENT_ID
    api.get(reverse("api:study-detail", args=[study.pk]))
    rads.post(reverse("logout"))
    return snapshots


# --- Error pages ------------------------------------------------------------------------------------------------


@pytest.fixture
def patient_study(demo_site, make_patient, make_study):
    return make_study(demo_site, make_patient(demo_site, name="Zyxwvut, Quixotic", patient_id=PATIENT_ID))


@pytest.mark.django_db
def test_it_shows_no_patient_data_on_error_pages(
    settings, north_site, tech, patient_study, make_patient, make_study, monkeypatch
) -> None:
    # Given production error pages, and a study of another site for the same patient ID
    settings.DEBUG = False
    stranger = make_study(north_site, make_patient(north_site, name="Zyxwvut, Quixotic", patient_id=PATIENT_ID))
    client = Client(raise_request_exception=False)
    client.force_login(tech)

    def boom(request, study, **kwargs):
        raise RuntimeError(f"could not show {study.patient.name} ({study.patient.patient_id})")

    monkeypatch.setattr(views_reading, "_study_context", boom)

    # When pages fail: another site's study, a path naming the patient, a view that raises
    pages = {
        "foreign": client.get(reverse("study_detail", args=[stranger.pk])),
        "named path": client.get(f"/studies/{PATIENT_ID}-Zyxwvut/"),
        "server error": client.get(reverse("study_detail", args=[patient_study.pk])),
    }

    # Then the pages are the plain error pages and name no one
    assert {name: r.status_code for name, r in pages.items()} == {
        "foreign": 404,
        "named path": 404,
        "server error": 500,
    }
    assert not {name: leaks(r.content.decode()) for name, r in pages.items() if leaks(r.content.decode())}


def console_output(records: list[logging.LogRecord]) -> str:
    """The records as the configured console handler writes them: its filters, then its formatter."""
    handler = next(
        h for h in logging.getLogger().handlers if any(isinstance(f, ScrubPatientDataFilter) for f in h.filters)
    )
    lines = []
    for record in records:
        if all(f.filter(record) for f in handler.filters):
            lines.append(handler.format(record))
    return "\n".join(lines)


@pytest.mark.django_db
def test_it_keeps_the_patient_out_of_the_log_of_a_server_error(settings, tech, patient_study, monkeypatch, caplog):
    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    client.force_login(tech)

    def boom(request, study, **kwargs):
        raise RuntimeError(f"Key (site_id, patient_id)=(1, {study.patient.patient_id}) already exists.")

    monkeypatch.setattr(views_reading, "_study_context", boom)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        assert client.get(reverse("study_detail", args=[patient_study.pk])).status_code == 500

    assert caplog.records and not leaks(console_output(caplog.records))
