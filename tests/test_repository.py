"""The repository's own promises: the compose file validates, every install path installs alike."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _needs(tool: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is missing under CI: scripts/ensure_test_tools.sh should have installed it")
        pytest.skip(f"{tool} is not installed")


def _compose_config(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    _needs("docker-compose")
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "POSTGRES_PASSWORD"}}
    return subprocess.run(
        [
            "docker-compose",
            "--project-directory",
            str(tmp_path),
            "-f",
            str(ROOT / "docker/compose.yaml"),
            "config",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
    )


def test_it_validates_the_compose_file_without_an_env_file(tmp_path) -> None:
    result = _compose_config(tmp_path, "-q")
    assert result.returncode == 0, result.stderr


def _mount_target(volume: str | dict) -> str:
    return volume["target"] if isinstance(volume, dict) else volume.split(":")[1]


def test_it_lets_only_nginx_reach_web_in_the_compose_deployment(tmp_path) -> None:
    result = _compose_config(tmp_path)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    # Besides nginx only the DICOM listener is published: modalities and the PACS must reach it.
    assert {name for name, service in services.items() if service.get("ports")} == {"nginx", "dicom"}
    nginx, web = services["nginx"], services["web"]
    assert "web" in nginx["depends_on"]
    assert "/etc/nginx/nginx.conf" in {_mount_target(v) for v in nginx["volumes"]}
    assert web["environment"]["PNEUMO_PROXY_COUNT"] == "1"
    assert web["environment"]["PNEUMO_SENDFILE_HEADER"] == "X-Accel-Redirect"


def test_it_has_nginx_buffer_requests_and_drop_trickling_clients() -> None:
    conf = (ROOT / "docker/nginx.conf").read_text()
    assert "server web:8000;" in conf and "proxy_pass http://pneumo_web;" in conf
    assert "proxy_request_buffering on;" in conf and "proxy_buffering on;" in conf
    names = ("client_header_timeout", "client_body_timeout", "send_timeout", "keepalive_timeout")
    timeouts = dict(re.findall(rf"^\s*({'|'.join(names)}) (\d+)s;", conf, re.MULTILINE))
    assert set(timeouts) == set(names) and all(int(seconds) <= 30 for seconds in timeouts.values()), timeouts


def test_it_pins_every_requirement() -> None:
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("#")]
    assert requirements and all(re.match(r"^[A-Za-z0-9_.\[\]-]+==[^=]+$", r) for r in requirements)
    assert (ROOT / "requirements-model.txt").read_text().split() == ["pneumonia-model-package==0.3.0"]


@pytest.mark.parametrize("path", ["Makefile", "docker/Dockerfile"])
def test_it_installs_the_model_package_without_its_dependencies(path: str) -> None:
    text = (ROOT / path).read_text()
    assert "install --no-deps -r requirements-model.txt" in text
    assert "-r requirements.txt" in text
