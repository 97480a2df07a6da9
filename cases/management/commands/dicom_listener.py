"""Run the DICOM listener (C-ECHO, C-STORE) until SIGINT or SIGTERM; see cases/dicom/listener.py."""

from __future__ import annotations

import errno
import signal
import ssl
import threading

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from cases.dicom.listener import ListenerConfig, listener_start
from cases.models import Site


class Command(BaseCommand):
    help = "Receive images over DICOM (C-STORE) from the modalities and PACS configured as DICOM peers."
    # Like the Celery worker, the listener uses no URL or view: the checks run with migrate, not here.
    requires_system_checks = []

    def handle(self, *args, **options) -> None:
        config = ListenerConfig.from_settings()
        if bool(config.tls_cert_file) != bool(config.tls_key_file):
            raise CommandError("DICOM TLS needs both PNEUMO_DICOM_TLS_CERT_FILE and PNEUMO_DICOM_TLS_KEY_FILE")
        if config.default_site and not Site.objects.filter(code=config.default_site).exists():
            self.stderr.write(
                f"PNEUMO_DICOM_DEFAULT_SITE names no site ({config.default_site!r}): unknown callers are refused"
            )
        connection.close()  # the main thread serves no association
        server = _started(config)
        self.stdout.write(f"DICOM listener: {config.describe()}")
        self.stdout.flush()
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        server.shutdown()


def _started(config: ListenerConfig):
    try:
        return listener_start(config)
    except ssl.SSLError as exc:
        raise CommandError(f"PNEUMO_DICOM_TLS_CERT_FILE / PNEUMO_DICOM_TLS_KEY_FILE cannot be loaded: {exc}") from None
    except FileNotFoundError as exc:
        raise CommandError(f"PNEUMO_DICOM_TLS_CERT_FILE / PNEUMO_DICOM_TLS_KEY_FILE: {exc}") from None
    except OSError as exc:
        taken = exc.errno in (errno.EADDRINUSE, errno.EACCES)
        why = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
        hint = ": stop what uses it or choose another port" if taken else ""
        raise CommandError(
            f"DICOM port {config.bind}:{config.port} (PNEUMO_DICOM_PORT, PNEUMO_DICOM_BIND) {why}{hint}"
        ) from None
