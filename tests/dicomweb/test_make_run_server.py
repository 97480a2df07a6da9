"""STOW-RS through make run's own web server (waitress), which de-chunks the large bodies dicomweb-client streams.

dicomweb-client sends any body over its chunk size (1 MB) with chunked transfer encoding and no Content-Length.
Django reads no body without one, so Pneumo relies on the server in front (waitress here, nginx in compose) to
de-chunk; a server that does not (Django's runserver, the test live server) gets 411 instead of a silent loss.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dicomweb_client import DICOMwebClient
from pydicom import dcmread

from bench.slow_clients import health_probe
from scripts.run import web_argv
from tests.dicom_factory import make_dicom
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # migrates a database and starts the real web server

SETUP = """
from django.contrib.auth.models import Group
from cases.api.tokens import token_create
from cases.models import Site, User
site = Site.objects.create(code="DEMO", name="Demo")
user = User.objects.create_user(username="tech", password="correct-horse-battery")
user.sites.add(site)
user.groups.add(Group.objects.get_or_create(name="Technician")[0])
print("TOKEN", token_create(user=user)[0])
"""


@pytest.fixture
def served(tmp_path) -> tuple[str, str]:
    """make run's web server on a private, migrated database with a technician of DEMO; (base URL, token)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "PNEUMO_TEST_SQLITE"}}
    env.update(DEBUG="1", PNEUMO_HTTPS="0", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
               MEDIA_ROOT=str(tmp_path / "media"), PYTHONUNBUFFERED="1")  # fmt: skip
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    shell = subprocess.run([*manage, "shell", "-c", SETUP], cwd=ROOT, env=env, check=True, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    token = shell.stdout.split("TOKEN ")[1].strip()
    port, log = free_port(), tmp_path / "web.log"
    with log.open("ab") as out:
        process = subprocess.Popen(web_argv(port=port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while health_probe(base, timeout=1).status != 200:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield base, token
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_it_stores_an_instance_larger_than_the_clients_chunk_size(served) -> None:
    base, token = served
    client = DICOMwebClient(url=f"{base}/dicomweb", headers={"Authorization": f"Token {token}"})
    data = make_dicom(4, shape=(1024, 1024), bits=12)  # 2 MB: sent chunked
    ds = dcmread(io.BytesIO(data))
    assert len(data) > 10**6

    answer = client.store_instances([ds])

    assert [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence] == [ds.SOPInstanceUID]
    back = client.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                                    media_types=(("application/dicom", "*"),))  # fmt: skip
    assert back.PixelData == ds.PixelData
