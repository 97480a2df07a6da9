"""The repository's own promises: the compose file validates, every install path installs alike."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _needs(tool: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is missing under CI: scripts/ensure_test_tools.sh should have installed it")
        pytest.skip(f"{tool} is not installed")


def test_it_validates_the_compose_file_without_an_env_file(tmp_path) -> None:
    _needs("docker-compose")
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "POSTGRES_PASSWORD"}}
    result = subprocess.run(
        [
            "docker-compose",
            "--project-directory",
            str(tmp_path),
            "-f",
            str(ROOT / "docker/compose.yaml"),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr


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
