"""The one rule for what a patient ID or name may contain (cases/identifiers.py)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from cases.identifiers import IdentifierValidator, identifier_refusal

BIDI = ["\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"]
BIDI += ["\u2066", "\u2067", "\u2068", "\u2069"]
CONTROLS = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\x9f", "\u2028", "\u2029"]


@pytest.mark.parametrize("character", BIDI)
def test_it_refuses_every_bidirectional_control(character: str) -> None:
    refusal = identifier_refusal(f"MRN-{character}4321", label="patient ID")
    assert refusal is not None
    assert refusal.startswith("The patient ID contains a bidirectional-text control character")
    assert f"U+{ord(character):04X}" in refusal


@pytest.mark.parametrize("character", CONTROLS)
def test_it_refuses_newlines_and_other_control_characters(character: str) -> None:
    refusal = identifier_refusal(f"DOE{character}JANE", label="patient name")
    assert refusal is not None and "a line break or another control character" in refusal
    assert refusal.startswith("The patient name contains") and f"U+{ord(character):04X}" in refusal


@pytest.mark.parametrize(
    "value", ["", "MRN-0001", "Müller, Jürgen", "山田^太郎 = ヤマダ^タロウ", "O'Brien-Smith", "DOE JANE", "A\u00a0B"]
)
def test_it_accepts_ordinary_ids_and_names_in_any_script(value: str) -> None:
    assert identifier_refusal(value, label="patient ID") is None
    IdentifierValidator("patient ID")(value)


def test_it_hands_forms_and_serializers_the_same_reason() -> None:
    with pytest.raises(ValidationError) as refused:
        IdentifierValidator("patient ID")("MRN\u202e1")
    assert refused.value.messages == [identifier_refusal("MRN\u202e1", label="patient ID")]
    assert refused.value.code == "unsafe_character"
