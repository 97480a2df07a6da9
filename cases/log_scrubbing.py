"""A logging filter that keeps patient names and IDs out of every log line."""

from __future__ import annotations

import logging
import re
import traceback

# Query strings on search endpoints carry names and IDs typed by users.
_QUERY = re.compile(r"(\?)[^\s\"]*")
_DICOM_NAME = re.compile(r"\b[A-Za-z\u00c0-\u024f'-]+\^[A-Za-z\u00c0-\u024f^'-]*")
_PHI_FIELDS = re.compile(r"(?i)\b(patient_?id|patient_?name|name|mrn|birth_?date|q|search)=([^&\s\"]+)")


def scrub(text: str) -> str:
    text = _PHI_FIELDS.sub(r"\1=[redacted]", text)
    text = _DICOM_NAME.sub("[redacted]", text)
    return _QUERY.sub(r"\1[redacted]", text)


def traceback_without_messages(error: BaseException) -> str:
    """Frames and exception types, not messages: a message may quote data (a database error quotes the key)."""
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    blocks = [
        "Traceback (most recent call last):\n"
        + "".join(traceback.format_tb(e.__traceback__))
        + f"{type(e).__module__}.{type(e).__qualname__}: [message withheld]"
        for e in reversed(chain)
    ]
    return "\n\nwhich led to:\n\n".join(blocks)


class ScrubPatientDataFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = traceback_without_messages(record.exc_info[1])  # formatters use it as it is
        return True
