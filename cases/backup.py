"""Backup and restore (services): the database, the stored files it names, and a manifest that checks both.

A backup is a folder: ``database.sqlite3`` (SQLite's online backup API) or
``database.pgdump`` (``pg_dump --format=custom``), ``files/<storage name>`` for
every file the dumped database references, and ``manifest.json`` with each
payload's sha256, the applied migrations and the model versions' hashes.

Consistency: the database is dumped first, and the files copied are those the
dump names (read from the copy on SQLite, from the dump's own snapshot on
PostgreSQL), so an upload during the backup is either wholly in it or not at
all. Files go through Django's storage API, so S3 storage is backed up too.

With ``PNEUMO_BACKUP_KEY_FILE`` every payload is encrypted with AES-256-GCM in
1 MiB chunks (each chunk's associated data names its file, position and
whether it is the last, so chunks cannot be swapped, reordered or cut off),
and the manifest carries an HMAC under a key derived from the same key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from cases.models import FileState, Image, OutboxItem
from inference.models import ModelVersion

FORMAT = 1
MANIFEST = "manifest.json"
FILES = "files"
CHUNK = 1 << 20
MAGIC = b"PNEUMO-BACKUP-AESGCM-1\n"
MODEL_HASHES = (
    "sha256",
    "converted_sha256",
    "head_sha256",
    "domain_check_sha256",
    "chest_check_sha256",
)


class BackupError(Exception):
    """A backup or restore refused, with the reason an operator can act on."""


# --- The key ------------------------------------------------------------------------------------


def backup_key() -> bytes | None:
    """The 32-byte key from PNEUMO_BACKUP_KEY_FILE (urlsafe base64, as Fernet.generate_key() prints), or None."""
    if not settings.PNEUMO_BACKUP_KEY_FILE:
        return None
    try:
        text = Path(settings.PNEUMO_BACKUP_KEY_FILE).read_text().strip()
    except OSError as error:
        raise BackupError(f"PNEUMO_BACKUP_KEY_FILE cannot be read: {error}") from None
    try:
        key = base64.urlsafe_b64decode(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise BackupError("PNEUMO_BACKUP_KEY_FILE must hold 32 random bytes in urlsafe base64 (44 characters).")
    return key


def _subkey(key: bytes, purpose: bytes) -> bytes:
    return hmac.new(key, b"pneumo-backup:" + purpose, hashlib.sha256).digest()


def _manifest_mac(key: bytes, body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(_subkey(key, b"manifest"), canonical, hashlib.sha256).hexdigest()


# --- Payload files: plain or chunked AES-GCM, hashed on the way ----------------------------------


def _chunks(handle: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """(chunk, is_last) pairs; an empty input is one empty last chunk."""
    current = handle.read(CHUNK)
    while True:
        following = handle.read(CHUNK)
        yield current, not following
        if not following:
            return
        current = following


def _aad(name: str, index: int, last: bool) -> bytes:
    return f"{name}\n{index}\n{int(last)}".encode()


def _payload_write(source: BinaryIO, target: Path, *, name: str, key: bytes | None) -> str:
    """Copy ``source`` to ``target`` (encrypted under ``key``); the sha256 of the plain bytes."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    aead = AESGCM(_subkey(key, b"files")) if key else None
    with target.open("xb") as out:
        if aead:
            out.write(MAGIC)
        for index, (chunk, last) in enumerate(_chunks(source)):
            digest.update(chunk)
            if aead is None:
                out.write(chunk)
                continue
            nonce = os.urandom(12)
            sealed = aead.encrypt(nonce, chunk, _aad(name, index, last))
            out.write(len(sealed).to_bytes(4, "big") + nonce + sealed)
    return digest.hexdigest()


def _payload_read(path: Path, *, name: str, key: bytes | None) -> Iterator[bytes]:
    """The plain bytes of a payload file, chunk by chunk; BackupError when it was altered or cut off."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    with path.open("rb") as handle:
        if key is None:
            while chunk := handle.read(CHUNK):
                yield chunk
            return
        if handle.read(len(MAGIC)) != MAGIC:
            raise BackupError(f"{name} is not an encrypted backup file.")
        aead, index = AESGCM(_subkey(key, b"files")), 0
        while header := handle.read(16):
            size, nonce = int.from_bytes(header[:4], "big"), header[4:]
            sealed = handle.read(size)
            last = not handle.peek(1)
            try:
                yield aead.decrypt(nonce, sealed, _aad(name, index, last))
            except InvalidTag:
                raise BackupError(f"{name} does not decrypt with this key: altered, cut off or another key.") from None
            index += 1
        if index == 0:
            raise BackupError(f"{name} is empty: the backup was cut off.")


def _payload_sha256(path: Path, *, name: str, key: bytes | None) -> str:
    digest = hashlib.sha256()
    for chunk in _payload_read(path, name=name, key=key):
        digest.update(chunk)
    return digest.hexdigest()


# --- What the dumped database names --------------------------------------------------------------


def _references(cursor) -> dict:
    """Stored files, applied migrations and model hashes, read through a DB-API cursor on the dump's state."""
    image, outbox, model = Image._meta.db_table, OutboxItem._meta.db_table, ModelVersion._meta.db_table
    # Constants only in the SQL: the same text runs on sqlite3 and psycopg cursors (different placeholders).
    cursor.execute(f"SELECT file FROM {image} WHERE file_state <> '{FileState.PURGED}' ORDER BY id")  # noqa: S608
    files = [row[0] for row in cursor.fetchall()]
    cursor.execute(f"SELECT DISTINCT file FROM {outbox} ORDER BY file")  # noqa: S608
    files += [row[0] for row in cursor.fetchall()]
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
    migrations: dict[str, list[str]] = {}
    for app, name in cursor.fetchall():
        migrations.setdefault(app, []).append(name)
    cursor.execute(f"SELECT name, {', '.join(MODEL_HASHES)} FROM {model} ORDER BY name")  # noqa: S608
    models = [dict(zip(("name", *MODEL_HASHES), row, strict=True)) for row in cursor.fetchall()]
    return {"files": list(dict.fromkeys(name for name in files if name)), "migrations": migrations, "models": models}


def _dump_sqlite(work: Path) -> tuple[Path, dict]:
    dump = work / "database.sqlite3"
    source = sqlite3.connect(f"file:{connection.settings_dict['NAME']}?mode=ro", uri=True)
    target = sqlite3.connect(dump)
    try:
        source.backup(target)  # one consistent snapshot, while the site keeps writing
        return dump, _references(target.cursor())
    finally:
        target.close()
        source.close()


def _pg_env() -> dict[str, str]:
    db = connection.settings_dict
    env = {**os.environ, "PGDATABASE": db["NAME"]}
    for key, var in (("USER", "PGUSER"), ("PASSWORD", "PGPASSWORD"), ("HOST", "PGHOST"), ("PORT", "PGPORT")):
        if db.get(key):
            env[var] = str(db[key])
    return env


def _dump_postgresql(work: Path) -> tuple[Path, dict]:
    dump = work / "database.pgdump"
    with transaction.atomic(), connection.cursor() as cursor:
        # pg_dump reads the snapshot this transaction exported: the file list below is the dump's own.
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
        _run(["pg_dump", "--format=custom", f"--snapshot={snapshot}", f"--file={dump}"], "pg_dump")
        return dump, _references(cursor)


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, env=_pg_env(), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"{what} failed: {result.stderr.strip() or result.returncode}")


# --- Backup ----------------------------------------------------------------------------------------


@dataclass
class BackupReport:
    files: int
    bytes: int
    missing: list[str]
    encrypted: bool


def backup_write(*, target: Path) -> BackupReport:
    """Write a backup into ``target`` (a new or empty folder)."""
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty: write each backup to a new folder.")
    key = backup_key()
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as work:
        dump, refs = (_dump_postgresql if connection.vendor == "postgresql" else _dump_sqlite)(Path(work))
        with dump.open("rb") as handle:
            database = {"file": dump.name, "vendor": connection.vendor}
            database["sha256"] = _payload_write(handle, target / dump.name, name=dump.name, key=key)
    files, missing, size = {}, [], 0
    for name in refs["files"]:
        try:
            handle = default_storage.open(name, "rb")
        except FileNotFoundError:
            missing.append(name)  # already missing before the backup: verify_storage reports it too
            continue
        with handle:
            files[name] = _payload_write(handle, target / FILES / name, name=name, key=key)
        size += (target / FILES / name).stat().st_size
    body = {
        "format": FORMAT,
        "created_at": timezone.now().isoformat(),
        "encrypted": key is not None,
        "database": database,
        "files": files,
        "missing": missing,
        "migrations": refs["migrations"],
        "models": refs["models"],
    }
    manifest = {**body, "hmac": _manifest_mac(key, body)} if key else body
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return BackupReport(files=len(files), bytes=size, missing=missing, encrypted=key is not None)


# --- Restore ---------------------------------------------------------------------------------------


def _manifest_read(source: Path, key: bytes | None) -> dict:
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise BackupError(f"{source / MANIFEST} cannot be read: {error}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"This backup's format {manifest.get('format')!r} is not {FORMAT}.")
    if manifest.get("encrypted"):
        if key is None:
            raise BackupError("This backup is encrypted: set PNEUMO_BACKUP_KEY_FILE to its key.")
        body = {k: v for k, v in manifest.items() if k != "hmac"}
        if not hmac.compare_digest(manifest.get("hmac", ""), _manifest_mac(key, body)):
            raise BackupError("The manifest does not match the backup key: another key, or the manifest was altered.")
    return manifest


def _migrations_reachable(manifest: dict) -> None:
    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    unknown = [f"{app}.{name}" for app, names in manifest["migrations"].items() for name in names]
    unknown = [label for label in unknown if tuple(label.split(".", 1)) not in known]
    if unknown:
        raise BackupError(
            f"This backup was made by a newer Pneumo: this code lacks the migrations {', '.join(unknown)}. "
            "Restore it with the release that made it (or a later one)."
        )


def _target_empty() -> None:
    tables = connection.introspection.table_names()
    if tables:
        raise BackupError(
            f"The target database is not empty ({len(tables)} tables): restore into a new, empty database."
        )
    try:
        dirs, files = default_storage.listdir("")
    except FileNotFoundError:
        dirs, files = [], []
    if dirs or files:
        raise BackupError("The target storage is not empty: restore into an empty MEDIA_ROOT or bucket.")


def _payloads_verify(source: Path, manifest: dict, key: bytes | None) -> None:
    expected = {manifest["database"]["file"]: (source / manifest["database"]["file"], manifest["database"]["sha256"])}
    expected |= {name: (source / FILES / name, sha) for name, sha in manifest["files"].items()}
    for name, (path, sha256) in expected.items():
        if not path.is_file():
            raise BackupError(f"{name} is listed in the manifest but missing from the backup.")
        if _payload_sha256(path, name=name, key=key) != sha256:
            raise BackupError(f"{name} does not match its sha256 in the manifest: the backup is damaged.")


def _database_restore(path: Path, manifest: dict, key: bytes | None) -> None:
    name = manifest["database"]["file"]
    if manifest["database"]["vendor"] != connection.vendor:
        raise BackupError(f"This backup holds a {manifest['database']['vendor']} database, not {connection.vendor}.")
    chunks = _payload_read(path, name=name, key=key)
    if connection.vendor == "sqlite":
        connection.close()  # the file is replaced under Django's feet: no open handle on it
        with Path(connection.settings_dict["NAME"]).open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
        return
    with tempfile.NamedTemporaryFile(suffix=".pgdump") as plain:
        for chunk in chunks:
            plain.write(chunk)
        plain.flush()
        _run(
            [
                "pg_restore",
                "--exit-on-error",
                "--single-transaction",
                "--no-owner",
                "--dbname",
                connection.settings_dict["NAME"],
                plain.name,
            ],
            "pg_restore",
        )


def _files_restore(source: Path, manifest: dict, key: bytes | None) -> None:
    for name in manifest["files"]:
        # A real, seekable file: S3's upload rewinds what it is given.
        with tempfile.SpooledTemporaryFile(max_size=16 * CHUNK) as plain:
            for chunk in _payload_read(source / FILES / name, name=name, key=key):
                plain.write(chunk)
            plain.seek(0)
            saved = default_storage.save(name, File(plain, name=name))
        if saved != name:
            raise BackupError(f"Storage saved {name} as {saved}: the target storage was not empty.")


@dataclass
class RestoreReport:
    files: int
    missing: list[str]


def backup_restore(*, source: Path) -> RestoreReport:
    """Restore ``source`` into an empty database and empty storage; refuses, changing nothing, otherwise."""
    key = backup_key()
    manifest = _manifest_read(source, key)
    if not manifest["encrypted"]:
        key = None  # a plain backup restores the same whatever key this machine holds
    _migrations_reachable(manifest)
    _target_empty()
    _payloads_verify(source, manifest, key)
    _database_restore(source / manifest["database"]["file"], manifest, key)
    _files_restore(source, manifest, key)
    # The backup may predate migrations this code has: bring the schema up to this release.
    call_command("migrate", interactive=False, verbosity=0)
    return RestoreReport(files=len(manifest["files"]), missing=manifest["missing"])
