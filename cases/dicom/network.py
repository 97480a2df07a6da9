"""What the listener and the sender share: the transfer syntaxes Pneumo speaks, and AE address parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

UNCOMPRESSED_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)
# Every compressed syntax ingest decodes (cases.imaging.preload lists their decoders): a modality that
# sends JPEG 2000 or JPEG lossless must not have its association refused for want of a context.
COMPRESSED_SYNTAXES = (
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)
RECEIVED_SYNTAXES = UNCOMPRESSED_SYNTAXES + COMPRESSED_SYNTAXES

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
