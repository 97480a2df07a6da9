"""The API contract end to end: real HTTP (live server), real Redis and a real Celery worker with the real model."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.api.conftest import PASSWORD
from tests.dicom_factory import make_dicom

ROOT = Path(__file__).resolve().parents[2]
AI_PENDING = {"received", "queued", "analyzing"}

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _session(base: str, username: str) -> requests.Session:
    session = requests.Session()
    response = session.post(f"{base}/auth/token/", json={"username": username, "password": PASSWORD}, timeout=30)
    assert response.status_code == 200, response.text
    session.headers["Authorization"] = f"Token {response.json()['token']}"
    return session


def _wait_for_ai(session: requests.Session, url: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (study := session.get(url, timeout=30).json())["status"] in AI_PENDING:
        assert time.monotonic() < deadline, f"no AI result in {timeout} s: {study}"
        time.sleep(0.5)
    return study


def test_it_uploads_predicts_reviews_and_reports_through_the_api(celery_worker, live_server, demo_site, tech, rad):
    base = f"{live_server.url}/api/v1"

    # Given a technician who uploads a paediatric AP chest X-ray with pneumonia
    technician = _session(base, "tech")
    upload = technician.post(
        f"{base}/studies/", files=[("files", ("chest.dcm", make_dicom(8), "application/dicom"))], timeout=120
    )
    assert upload.status_code == 201, upload.text
    [study_id] = upload.json()["study_ids"]

    # When the worker has run the model
    study = _wait_for_ai(technician, f"{base}/studies/{study_id}/")

    # Then the study carries an unconfirmed AI result with its model version and timings
    assert study["status"] == "awaiting_review", study
    [prediction] = study["images"][0]["predictions"]
    assert prediction["status"] == "succeeded" and 0.0 <= prediction["probability"] <= 1.0
    assert prediction["label"] in ("pneumonia", "normal") and prediction["inference_ms"] > 0
    assert prediction["model_version"]["name"] and prediction["ai_result_confirmed"] is False
    assert technician.get(f"{base}/images/{study['images'][0]['id']}/heatmap.json", timeout=30).status_code == 200

    # When a radiologist finds it on the worklist, claims it and signs a finding that agrees with the AI
    radiologist = _session(base, "rad")
    worklist = radiologist.get(f"{base}/worklist/", timeout=30).json()["results"]
    assert study_id in [row["id"] for row in worklist]
    assert radiologist.post(f"{base}/studies/{study_id}/claim/", timeout=30).status_code == 200
    finding = "pneumonia" if prediction["label"] == "pneumonia" else "no_pneumonia"
    review = radiologist.post(f"{base}/studies/{study_id}/review/", json={"finding": finding}, timeout=30)
    assert review.status_code == 201, review.text

    # Then the signed result is confirmed, and the dashboard counts the agreement
    signed = radiologist.get(f"{base}/studies/{study_id}/", timeout=30).json()
    assert signed["status"] == "reported" and signed["finding"] == finding
    assert signed["ai_result_confirmed"] is True and signed["reviews"][0]["agreement"] == "agree"
    [agreement] = radiologist.get(f"{base}/stats/", timeout=30).json()["agreement"]
    assert agreement["n"] == 1 and agreement["agreed"] == 1


def test_it_runs_the_example_client_against_the_live_site(celery_worker, live_server, demo_site, tech, tmp_path):
    dicom = tmp_path / "chest.dcm"
    dicom.write_bytes(make_dicom(2))
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "api_example.py"),
            "--url",
            live_server.url,
            "--username",
            "tech",
            "--timeout",
            "120",
            str(dicom),
        ],
        env={"PNEUMO_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "chest.dcm: stored" in result.stdout
    assert " p=" in result.stdout and "UNCONFIRMED" in result.stdout
