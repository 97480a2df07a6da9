"""The DICOM listener as a command (``manage.py dicom_listener``) and as a compose service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cases.models import DicomPeer, Image
from tests.dicom.conftest import Listener, echoscu, storescu
from tests.dicom_factory import make_dicom
from tests.processes import free_port, worker_env

ROOT = Path(__file__).resolve().parent.parent.parent


def test_it_runs_the_listener_as_a_compose_service_reachable_from_the_network() -> None:
    services = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())["services"]
    dicom = services["dicom"]

    assert "manage.py dicom_listener" in dicom["command"]
    assert dicom["environment"]["PNEUMO_DICOM_BIND"] == "0.0.0.0"
    assert dicom["environment"]["PNEUMO_DICOM_PORT"] == "11112"
    assert [port.rsplit(":", 1)[1] for port in dicom["ports"]] == ["11112"]
    assert "DATABASE_URL" in dicom["environment"]  # the same database as web and worker
    assert dicom["depends_on"]["web"]["condition"] == "service_healthy"  # web has migrated


def _command(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "dicom_listener"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_it_exits_naming_pneumo_dicom_port_when_the_port_is_taken(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE"}}
        env.update(DEBUG="1", PNEUMO_DICOM_PORT=str(port), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
        command = _command(env)
        _, errors = command.communicate(timeout=60)

    assert command.returncode != 0
    assert f"DICOM port 127.0.0.1:{port} (PNEUMO_DICOM_PORT, PNEUMO_DICOM_BIND) is already in use" in errors


@pytest.mark.slow
def test_it_serves_from_the_command_on_the_configured_port_until_sigterm(transactional_db, demo_site, tmp_path):
    DicomPeer.objects.create(ae_title="XRAY1", site=demo_site)
    port = free_port()
    command = _command(worker_env(PNEUMO_DICOM_PORT=str(port), PNEUMO_DICOM_AE="PNEUMOTEST"))
    try:
        assert command.stdout.readline().strip() == f"DICOM listener: AE PNEUMOTEST on 127.0.0.1:{port}"
        listener = Listener("PNEUMOTEST", port, server=None)
        film = tmp_path / "film.dcm"
        film.write_bytes(make_dicom(2, patient_id="BY-COMMAND"))

        assert echoscu(listener).returncode == 0
        assert storescu(listener, film).returncode == 0
        assert Image.objects.get().source_ae_title == "XRAY1"
    finally:
        os.killpg(command.pid, signal.SIGTERM)
        started = time.monotonic()
        command.wait(timeout=30)
    assert command.returncode == 0 and time.monotonic() - started < 10
