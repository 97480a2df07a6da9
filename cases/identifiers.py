"""What a patient ID or name may contain: the one rule every door calls.

Bidirectional controls (U+202E and its kin) reorder what is displayed, so
"MRN-1234" can show as another patient's ID; newlines and other control
characters split or hide parts of it. The upload form, the API, the admin and
ingest (DICOM headers, whichever door brought the file) all refuse them here.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

# Control characters (Unicode category Cc: C0, DEL and C1, newlines and tabs among them), the line and
# paragraph separators, and every bidirectional formatting character (marks, embeddings, overrides, isolates).
# Written as regex escapes, so that the schema's pattern reads the same.
_CONTROLS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_BIDI = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[{_CONTROLS}{_BIDI}]")
_BIDI_ONLY = re.compile(f"[{_BIDI}]")


def identifier_refusal(value: str, *, label: str) -> str | None:
    """Why ``value`` cannot be a patient's ``label`` (e.g. "patient ID"), or None when it can."""
    found = _UNSAFE.search(value or "")
    if found is None:
        return None
    character = found.group()
    code = f"U+{ord(character):04X}"
    if _BIDI_ONLY.match(character):
        kind = f"a bidirectional-text control character ({code})"
    else:
        kind = f"a line break or another control character ({code})"
    return f"The {label} contains {kind}, which can make it look like another patient's: not accepted"


class IdentifierValidator(RegexValidator):
    """``identifier_refusal`` for forms, the admin and DRF serializers.

    A RegexValidator, so that the API schema shows the same rule as a pattern.
    """

    def __init__(self, label: str) -> None:
        super().__init__(regex=rf"^[^{_CONTROLS}{_BIDI}]*$", code="unsafe_character")
        self.label = label

    def __call__(self, value: str) -> None:
        refusal = identifier_refusal(str(value), label=self.label)
        if refusal:
            raise ValidationError(refusal, code=self.code)
