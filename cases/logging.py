"""A logging filter that keeps patient names and IDs out of every log line."""

from __future__ import annotations

import logging
import re

# Query strings on search endpoints carry names and IDs typed by users.
_QUERY = re.compile(r"(\?)[^\s\"]*")
_DICOM_NAME = re.compile(r"\b[A-Za-z\u00c0-\u024f'-]+\^[A-Za-z\u00c0-\u024f^'-]*")
_PHI_FIELDS = re.compile(r"(?i)\b(patient_?id|patient_?name|name|mrn|birth_?date|q|search)=([^&\s\"]+)")


def scrub(text: str) -> str:
    text = _PHI_FIELDS.sub(r"\1=[redacted]", text)
    text = _DICOM_NAME.sub("[redacted]", text)
    return _QUERY.sub(r"\1[redacted]", text)


class ScrubPatientDataFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
