"""The DICOM listener: C-ECHO, and C-STORE of any storage class into the same ingest service as an upload.

pynetdicom serves each association in its own thread; each C-STORE is one
``studies_ingest`` call (its own transaction, checks, duplicates, audit event
and prediction queue), so a broken instance is refused alone and the others
of the association are stored. The answer says what happened:

* 0x0000 once the instance is committed, or when it was already stored (or is
  one of Pneumo's own result objects, forwarded back by a PACS: not ingested);
* 0xC000 for data that cannot be read or that ingest refuses (0xA900 when the
  dataset's SOP class is not the one it was sent as), the reason in the log;
* 0xA700 for a storage or database error, so that the sender tries again.

Who may send is read from the database at each association (``DicomPeer``:
calling AE title -> site), so a mapping changed in the admin applies to the
next association without a restart. An unknown caller gets A-ASSOCIATE-RJ
(rejected-permanent, calling AE title not recognised) unless
``PNEUMO_DICOM_DEFAULT_SITE`` names a site, which then receives its images.
"""

from __future__ import annotations

import io
import logging
import ssl
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from cases.dicom.network import RECEIVED_SYNTAXES
from cases.dicom.results import MANUFACTURER
from cases.imaging import DecodeError
from cases.imaging.dicom_scan import scan_dicom
from cases.ingest import DUPLICATE, STORED, IncomingFile, IngestOrigin, studies_ingest
from cases.models import DicomPeer, Site

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # the sender retries
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
# No calling AE title matches this: an empty list would tell pynetdicom to accept every caller.
_NOBODY = "\x00"


@dataclass(frozen=True)
class ListenerConfig:
    ae_title: str
    bind: str
    port: int
    default_site: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    @classmethod
    def from_settings(cls) -> ListenerConfig:
        return cls(
            ae_title=settings.PNEUMO_DICOM_AE,
            bind=settings.PNEUMO_DICOM_BIND,
            port=settings.PNEUMO_DICOM_PORT,
            default_site=settings.PNEUMO_DICOM_DEFAULT_SITE,
            tls_cert_file=settings.PNEUMO_DICOM_TLS_CERT_FILE,
            tls_key_file=settings.PNEUMO_DICOM_TLS_KEY_FILE,
        )

    def describe(self) -> str:
        tls = " (TLS)" if self.tls_cert_file else ""
        return f"AE {self.ae_title} on {self.bind}:{self.port}{tls}"


class _PneumoAE(AE):
    """An AE whose authorised callers are the DICOM peers in the database, read at each association."""

    default_site_code: str = ""

    @property
    def require_calling_aet(self) -> list[str]:  # type: ignore[override]
        # pynetdicom reads this in the association's own thread while negotiating (acse.py).
        if self.default_site_code and Site.objects.filter(code=self.default_site_code).exists():
            return []  # everyone is accepted: unknown callers go to the default site
        return list(DicomPeer.objects.values_list("ae_title", flat=True)) or [_NOBODY]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        raise AttributeError("the listener's callers are the DICOM peers configured in the admin")


def caller_site(*, ae_title: str, default_site_code: str) -> Site | None:
    """The site a calling AE title sends to: its peer's, else the default site, else None."""
    peer = DicomPeer.objects.select_related("site").filter(ae_title=ae_title.strip()).first()
    if peer is not None:
        return peer.site
    return Site.objects.filter(code=default_site_code).first() if default_site_code else None


def _header(data: bytes) -> Dataset | None:
    """The few header attributes the listener checks itself; None when the data cannot be read."""
    try:
        # The structure is walked first (no recursion, lengths checked), as ingest does, before pydicom reads it.
        scan_dicom(data, max_inflated=settings.PNEUMO_MAX_UPLOAD_BYTES)
        return dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPClassUID", "Manufacturer"])
    except (DecodeError, InvalidDicomError, ValueError, TypeError, KeyError, IndexError, EOFError, OSError):
        return None


def _sop_class_mismatch(header: Dataset, expected: str) -> bool:
    return str(header.get("SOPClassUID", "")).strip() not in ("", expected)


def _pneumos_own(header: Dataset) -> bool:
    # A PACS that forwards the study back would otherwise have Pneumo read its own heatmap capture.
    return str(header.get("Manufacturer", "")).strip() == MANUFACTURER


def _instance_store(event: evt.Event, default_site_code: str) -> int:
    calling = event.assoc.requestor.ae_title.strip()
    address = str(event.assoc.requestor.address)
    site = caller_site(ae_title=calling, default_site_code=default_site_code)
    if site is None:
        logger.warning("C-STORE from %s (%s) refused: calling AE title not recognised", calling, address)
        return CANNOT_UNDERSTAND
    data = event.encoded_dataset()
    header = _header(data)
    if header is None:
        logger.warning("C-STORE from %s (%s) refused: the dataset cannot be read", calling, address)
        return CANNOT_UNDERSTAND
    if _sop_class_mismatch(header, str(event.context.abstract_syntax)):
        logger.warning("C-STORE from %s (%s) refused: the dataset's SOP class is not the one sent", calling, address)
        return DATASET_DOES_NOT_MATCH_SOP_CLASS
    if _pneumos_own(header):
        logger.info("C-STORE from %s (%s): one of Pneumo's own result objects, not ingested", calling, address)
        return SUCCESS
    name = f"{calling}/{event.request.AffectedSOPInstanceUID or 'instance'}.dcm"
    report = studies_ingest(
        files=[IncomingFile(name, data)],
        site=site,
        user=None,
        origin=IngestOrigin(ae_title=calling, address=address),
    )
    outcome = report.files[0]
    if outcome.status in (STORED, DUPLICATE):
        logger.info("C-STORE from %s (%s): %s as image %s", calling, address, outcome.status, outcome.image_id)
        return SUCCESS
    logger.warning("C-STORE from %s (%s) refused: %s", calling, address, outcome.reason)
    return CANNOT_UNDERSTAND


def _on_store(event: evt.Event, default_site_code: str) -> int:
    close_old_connections()  # a connection the database dropped since the last instance is reopened
    try:
        return _instance_store(event, default_site_code)
    except (DatabaseError, OSError) as exc:
        logger.error("C-STORE not stored, the sender should retry: %s (%s)", type(exc).__name__, exc)
        return OUT_OF_RESOURCES
    except Exception:
        logger.exception("C-STORE failed unexpectedly")
        return CANNOT_UNDERSTAND


def _on_echo(event: evt.Event) -> int:
    return SUCCESS


def _on_association_end(event: evt.Event) -> None:
    # Each association has its own thread and so its own database connection: close it with the association.
    connection.close()


def _on_rejected(event: evt.Event) -> None:
    logger.warning(
        "association from %s (%s) rejected (calling AE title not recognised, or too many associations)",
        event.assoc.requestor.ae_title.strip(),
        event.assoc.requestor.address,
    )
    connection.close()


def listener_ae(config: ListenerConfig) -> _PneumoAE:
    ae = _PneumoAE(ae_title=config.ae_title)
    # Offer peers PDUs of any size (0: no limit) instead of pynetdicom's 16 kB: an 8 MB radiograph in a few
    # hundred PDUs, not 520 (bench/dicom_network.py found DICOM a little slower than uploads one film at a time).
    ae.maximum_pdu_size = 0
    ae.default_site_code = config.default_site
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, list(RECEIVED_SYNTAXES))
    return ae


def _ssl_context(config: ListenerConfig) -> ssl.SSLContext | None:
    if not config.tls_cert_file:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config.tls_cert_file, config.tls_key_file or None)
    return context


def _handlers(config: ListenerConfig) -> list:
    return [
        (evt.EVT_C_ECHO, _on_echo),
        (evt.EVT_C_STORE, _on_store, [config.default_site]),
        (evt.EVT_RELEASED, _on_association_end),
        (evt.EVT_ABORTED, _on_association_end),
        (evt.EVT_REJECTED, _on_rejected),
    ]


def listener_start(config: ListenerConfig, *, block: bool = False) -> ThreadedAssociationServer | None:
    """Serve ``config``'s address; OSError when it cannot be bound. ``block`` serves until interrupted."""
    ae = listener_ae(config)
    return ae.start_server(
        (config.bind, config.port), block=block, evt_handlers=_handlers(config), ssl_context=_ssl_context(config)
    )
