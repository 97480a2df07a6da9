"""DICOM application entity addresses (``AET@host:port``): pure, stdlib only, so that settings can check them."""

from __future__ import annotations

import re
from dataclasses import dataclass

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # the AE VR: 16 printable characters, no backslash


@dataclass(frozen=True)
class AeAddress:
    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def ae_title_valid(value: str) -> bool:
    return bool(_AE_TITLE.match(value)) and bool(value.strip())


def ae_addresses_parse(text: str, *, variable: str) -> list[AeAddress]:
    """``AET@host:port,...`` as PNEUMO_RESULT_DESTINATIONS holds it; ValueError naming ``variable`` otherwise."""
    addresses = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        match = re.fullmatch(r"(?P<aet>[^@]+)@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d{1,5})", part)
        port = int(match["port"]) if match else 0
        if not match or not ae_title_valid(match["aet"]) or not 0 < port < 65536:
            raise ValueError(f"{variable}: {part!r} is not AET@host:port (AE title of up to 16 characters)")
        addresses.append(AeAddress(match["aet"].strip(), match["host"].strip("[]"), port))
    return addresses
