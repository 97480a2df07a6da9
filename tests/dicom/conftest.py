"""The DICOM network's test parts: Pneumo's listener on a free port, DCMTK as the modality, Orthanc as the PACS.

The listener runs in a thread of the test process (each association in a
thread of its own, as in production), against the test database: tests using
it need ``transactional_db``, so that what one thread commits the others see.
Orthanc is the real ``/usr/sbin/Orthanc``, started once per session with its
own configuration, ports and storage folder.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.processes import _die_with_parent, free_port

ORTHANC_AE = "ORTHANC"
ORTHANC_BINARY = "/usr/sbin/Orthanc"


def _needs(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is missing: scripts/ensure_test_tools.sh installs it")
    return path


@dataclass
class Listener:
    ae_title: str
    port: int
    server: object

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def start_listener(transactional_db) -> Iterator[Callable[..., Listener]]:
    """Start Pneumo's listener on a free port: ``start_listener(default_site="DEMO")``."""
    from cases.dicom.listener import ListenerConfig, listener_start

    started: list[Listener] = []

    def start(*, default_site: str = "", ae_title: str = "PNEUMO", port: int | None = None, **tls: str) -> Listener:
        config = ListenerConfig(
            ae_title=ae_title, bind="127.0.0.1", port=port or free_port(), default_site=default_site, **tls
        )
        listener = Listener(ae_title, config.port, listener_start(config))
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop()


@dataclass
class DcmtkResult:
    returncode: int
    output: str


def storescu(listener: Listener, *paths: Path, calling: str = "XRAY1", extra: tuple[str, ...] = ()) -> DcmtkResult:
    """DCMTK's storescu sends every path in one association, as a modality does."""
    argv = [_needs("storescu"), "-v", "-aet", calling, "-aec", listener.ae_title, *extra]
    argv += ["127.0.0.1", str(listener.port), *map(str, paths)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    return DcmtkResult(done.returncode, done.stdout + done.stderr)


def echoscu(listener: Listener, *, calling: str = "XRAY1") -> DcmtkResult:
    argv = [_needs("echoscu"), "-v", "-aet", calling, "-aec", listener.ae_title, "127.0.0.1", str(listener.port)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return DcmtkResult(done.returncode, done.stdout + done.stderr)


@dataclass
class Orthanc:
    """A private Orthanc: its own HTTP and DICOM ports and storage, stopped and started by tests."""

    directory: Path
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _config(self) -> Path:
        config = {
            "Name": "pneumo-test",
            "StorageDirectory": str(self.directory / "storage"),
            "IndexDirectory": str(self.directory / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ORTHANC_AE,
            "RemoteAccessAllowed": True,
            "AuthenticationEnabled": False,
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False,
            "DicomModalities": {},
            "Plugins": [],
            "HttpTimeout": 30,
            "StableAge": 1,
        }
        path = self.directory / "orthanc.json"
        path.write_text(json.dumps(config))
        return path

    def start(self, timeout: float = 30) -> Orthanc:
        if not Path(ORTHANC_BINARY).exists():
            pytest.fail(f"{ORTHANC_BINARY} is missing: scripts/ensure_test_tools.sh installs Orthanc")
        log = open(self.directory / "orthanc.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [ORTHANC_BINARY, str(self._config())],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/system", timeout=1).ok:
                    return self
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not start:\n{(self.directory / 'orthanc.log').read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def get(self, path: str):
        response = requests.get(f"{self.url}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def instance_uids(self) -> set[str]:
        return {self.get(f"/instances/{key}")["MainDicomTags"]["SOPInstanceUID"] for key in self.get("/instances")}

    def clear(self) -> None:
        for key in self.get("/patients"):
            requests.delete(f"{self.url}/patients/{key}", timeout=30).raise_for_status()


@pytest.fixture(scope="session")
def orthanc_server(tmp_path_factory) -> Iterator[Orthanc]:
    server = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def orthanc(orthanc_server) -> Iterator[Orthanc]:
    """The session's Orthanc, running and empty at the start of the test."""
    if orthanc_server.process is None:
        orthanc_server.start()
    orthanc_server.clear()
    yield orthanc_server
    if orthanc_server.process is None:
        orthanc_server.start()
