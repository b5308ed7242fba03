"""Restore: every backup provably restorable. (Over 400 lines on purpose: the whole restore protocol,
stream and files, hold-back and proof pass, stays in one place to be read as one.)

A restore streams the stored object from the remote (``rclone cat`` or the rc API) through
decompression (gzip/zstd, when dbstash compressed it) into the engine's native tool, computing the
sha256 of the stored bytes on the way. The tool never sees the end of its input before the
checksum matched the manifest: tools that restore in one transaction (psql and pg_restore with
``--single-transaction``, the sqlite3 shell into a temp file, Redis into a temp file) then roll back
on a mismatch; others (mysql, mongorestore) may already have applied part of the data, and the
error says so plainly.

``verify`` is the restore drill: restore into a scratch target, check the checksum, count rows per
table, and drop the scratch data again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import anyio

from dbstash.bridge import blocking
from dbstash.engines import target_connection
from dbstash.engines.base import Connection, DumpCommand, Engine, LineFilter, RestoreOptions, run_tool
from dbstash.errors import (
    BackupUntrusted,
    ChecksumMismatch,
    ConfigError,
    DbstashError,
    RestoreError,
    RestoreRefused,
    StorageError,
)
from dbstash.jobs.databases import GLOBALS_LABEL
from dbstash.jobs.manifest import Manifest
from dbstash.jobs.naming import same_second_order
from dbstash.logs import get_logger, log_context
from dbstash.parts.compression import SUFFIXES, Compressor, StreamCompression
from dbstash.parts.encryption import SUFFIX as ENCRYPTED_SUFFIX, AgeDecryptor, AgeIdentity, DecryptError
from dbstash.parts.process import ChildProcess
from dbstash.parts.sink import RemoteEntry
from dbstash.redact import GLOBAL_REDACTOR
from dbstash.restoring.listing import (
    NOT_THIS_JOBS,
    BackupInfo,
    alist_backups,
    aselect_own,
    backup_infos,
    job_templates,
    list_backups,
    mismatch,
    refusal,
    with_manifest,
)
from dbstash.restoring.selection import job_of, select_backup
from dbstash.settings.config import Settings
from dbstash.settings.env import read_secret_file
from dbstash.storage.base import Storage

log = get_logger("dbstash.restore")

#: Plain bytes kept from the tool until the checksum matched (holds e.g. the dump's final COMMIT).
HOLD_BACK = 256 << 10
#: Bytes of the decompressed stream looked at before the tool is chosen (pg: custom format or SQL).
HEAD = 64 << 10
#: Files the sqlite3 shell keeps beside a database while it writes (left behind when it is killed).
SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")
#: How long the restore tool gets to finish after its last input.
TOOL_TIMEOUT = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """A finished restore: what was restored where, and whether its checksum was verified."""

    name: str
    target: str
    size: int
    sha256: str
    checksum_verified: bool
    duration: float
    tool: str | None
    #: the database the backup holds (``_globals`` for roles and users), when known
    database: str | None = None
    #: what already existed on the target and was kept as it is (roles, users, tablespaces)
    kept: tuple[str, ...] = ()
    #: with several destinations: the one whose copy was restored
    remote: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "remote": self.remote,
            "database": self.database,
            "kept": list(self.kept),
            "target": self.target,
            "size": self.size,
            "sha256": self.sha256,
            "checksum_verified": self.checksum_verified,
            "duration": self.duration,
            "tool": self.tool,
        }


def _compression_of(info: BackupInfo) -> StreamCompression | None:
    m = info.manifest
    if m is not None:
        if not m.compression:
            return None
        kind = m.compression.split(":", 1)[0]
        return StreamCompression(kind, 3) if kind in SUFFIXES else None  # type: ignore[arg-type]
    # no manifest: trust the name, but never take a native .archive.gz for dbstash's own gzip
    name = info.name.removesuffix(ENCRYPTED_SUFFIX)
    if name.endswith(".zst"):
        return StreamCompression("zstd", 3)
    if name.endswith(".gz") and not name.endswith(".archive.gz"):
        return StreamCompression("gzip", 6)
    return None


def _encrypted(info: BackupInfo) -> bool:
    """Whether the stored bytes are age ciphertext (the manifest says; without one, the ``.age`` name)."""
    if info.manifest is not None:
        return bool(info.manifest.encryption)
    return info.name.endswith(ENCRYPTED_SUFFIX)


class _Chain:
    """Two incremental stages as one (decrypt, then decompress)."""

    def __init__(self, first: Compressor, second: Compressor | None) -> None:
        self.first, self.second = first, second

    def compress(self, data: bytes | memoryview) -> bytes:
        out = self.first.compress(data)
        return self.second.compress(out) if self.second is not None else out

    def flush(self) -> bytes:
        out = self.first.flush()
        if self.second is None:
            return out
        return self.second.compress(out) + self.second.flush()


#: Starts the restore tool once the head of the stream is known: (the tool or None, the fd to write to).
StartTool = Callable[[bytes], tuple[ChildProcess | None, int]]


class _Feeder:
    """Runs in the reader thread: hash and count stored bytes, decompress, start the tool, hold back the end."""

    def __init__(
        self,
        start_tool: StartTool,
        compression: StreamCompression | None,
        line_filter: LineFilter | None = None,
        decryptor: AgeDecryptor | None = None,
    ) -> None:
        self._start_tool = start_tool
        self._filter = line_filter
        self.decryptor = decryptor
        decompress = compression.decompressor() if compression else None
        self._decompress: Compressor | None = _Chain(decryptor, decompress) if decryptor is not None else decompress
        self.digest = hashlib.sha256()
        self.size = 0
        self._head = b""
        self._held = b""
        self.sink_fd: int | None = None
        self.tool: ChildProcess | None = None
        self.tool_died = False
        self.decode_error: Exception | None = None

    def __call__(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.size += len(chunk)
        if self.decode_error is not None:
            return  # keep hashing to the end: the checksum says what went wrong
        try:
            plain = self._decompress.compress(chunk) if self._decompress else chunk
        except Exception as exc:  # zstd/zlib errors on corrupted input
            self.decode_error = exc
            return
        self._push(self._filter(plain) if self._filter is not None else plain)

    def _push(self, plain: bytes) -> None:
        if self.sink_fd is None:
            self._head += plain
            if len(self._head) < HEAD:
                return
            self._open(self._head)
            plain, self._head = self._head, b""
        if len(plain) >= HOLD_BACK:  # the usual 1 MiB chunk: write around it, copy only its tail
            self._write(self._held)
            self._write(memoryview(plain)[:-HOLD_BACK])
            self._held = plain[-HOLD_BACK:]
            return
        data = self._held + plain
        if len(data) > HOLD_BACK:
            self._write(data[:-HOLD_BACK])
            data = data[-HOLD_BACK:]
        self._held = data

    def _open(self, head: bytes) -> None:
        self.tool, self.sink_fd = self._start_tool(head)

    def _write(self, data: bytes | memoryview) -> None:
        if self.tool_died or self.sink_fd is None:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.sink_fd, view)
            except BrokenPipeError:
                self.tool_died = True  # the tool's exit status tells why
                return
            view = view[n:]

    def finish(self) -> None:
        """After the checksum matched: the rest of the input, then end of input."""
        tail = self._decompress.flush() if self._decompress else b""
        if self._filter is not None:
            tail = self._filter(tail) + self._filter.flush()
        if self.sink_fd is None:
            self._open(self._head + self._held + tail)
            self._write(self._head + self._held + tail)
        else:
            self._write(self._held + tail)
        self.close()

    def close(self) -> None:
        if self.sink_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.sink_fd)
            self.sink_fd = -1


def target_secret(
    target: str | None, target_password: str | None, target_password_file: str | os.PathLike[str] | None
) -> str | None:
    """The password for *target* given beside it (``target_password=`` or ``target_password_file=``),
    registered with the redactor; None when neither is given."""
    if target_password is not None and target_password_file is not None:
        raise ConfigError("target_password_file", "either target_password= or target_password_file=, not both")
    if target_password_file is not None:
        target_password = read_secret_file(os.fspath(target_password_file), "target_password_file")
    if target_password is None:
        return None
    GLOBAL_REDACTOR.add(target_password)
    if target is None:
        raise ConfigError(
            "target_password", "set only with target= (the job's own database takes the job's password)", "***"
        )
    if "://" in target and _uri_password(target) is not None:
        raise ConfigError("target_password", "unset when the target URI holds a password (one or the other)", "***")
    return target_password


def _uri_password(uri: str) -> str | None:
    try:
        return urlsplit(uri).password
    except ValueError:  # malformed: target_connection() says how
        return None


def target_for(settings: Settings, target: str | None, password: str | None = None) -> tuple[Engine, Connection]:
    """(engine, connection) of the restore target *target* (default: the job's database); *password*
    (``target_password=``) logs in there when the URI carries none."""
    engine = settings.engine()
    if target is None:
        return engine, settings.connection
    conn = target_connection(engine, target, "target")
    if password is not None:
        if conn.password is not None:
            raise ConfigError("target_password", "unset when the target URI holds a password (one or the other)", "***")
        conn = conn.with_password(password)
    # a target URI without authSource logs in where the job's does (MongoDB; the others have none)
    conn = engine.with_auth_source(conn, settings.connection.params.get("authSource"))
    return engine, conn


async def arestore(
    settings: Settings | str,
    backup: str = "latest",
    *,
    target: str | None = None,
    target_password: str | None = None,
    target_password_file: str | os.PathLike[str] | None = None,
    force: bool = False,
    storage: Storage | None = None,
    allow_unverified: bool = False,
    database: str | None = None,
    allow_unsigned: bool = False,
    remote: str | Sequence[str] | None = None,
    name_template: str | None = None,
    password: str | None = None,
    password_file: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> RestoreResult:
    """Restore one of this job's backups (``latest``, a name, or a time) into *target* (default: the job's database).

    *target*: a URI of the same engine, or a file path for SQLite (a new file) and Redis (where to
    write the RDB). A target that already holds data needs *force*. A backup without a readable
    manifest cannot be proven complete: restoring it needs *allow_unverified*. With trusted keys
    (``settings.trusted_keys``) only a backup signed by one of them is restored, and ``latest``
    passes over the others; *allow_unsigned* accepts one without a signature (a warning).

    *settings*: the job's [`Settings`][dbstash.Settings], or its database URI with *remote*,
    *password* / *password_file* and, when the backups used them, *name_template* and *options*
    (``compress``, ``identity_file``, ``trusted_keys``: any [`Settings.create()`][dbstash.Settings.create]
    keyword), as [`backup()`][dbstash.backup] took them. *target_password* or *target_password_file*:
    the password for a *target* URI that carries none (redacted like the job's).

    Examples:
        >>> result = await dbstash.arestore(  # doctest: +SKIP
        ...     "postgresql://app@db/app",
        ...     remote="s3:backups/app",
        ...     password_file="/run/secrets/pg",
        ...     target="postgresql://app@db/app_copy",
        ...     target_password_file="/run/secrets/pg",
        ... )

    For engines whose restore is not one transaction (MySQL, MariaDB, MongoDB, pg_dumpall scripts)
    the stored bytes are read twice: a first pass proves them against the manifest, and only then
    does the tool get them (the second pass is checked too). A tampered or truncated backup is
    refused with the target untouched, at the cost of reading the backup twice.

    A multi-database job (``settings.databases``) restores one *database* by name, or its globals
    (``database="_globals"``: roles, users, grants; those that exist are kept as they are). Into
    the job's server (or a *target* URI naming no database) the database is recreated as it was
    backed up (PostgreSQL: ``pg_restore --create``, with its owner, encoding and grants); with
    *force* an existing one is dropped first. [`arestore_many()`][dbstash.arestore_many] restores every database of a
    run.

    Raises:
        ChecksumMismatch: the stored bytes differ from the manifest (the restore was stopped
            before its end; see the message for what the tool may have applied).
        RestoreError: the restore tool failed or the backup could not be read.
        RestoreRefused: the target holds data and *force* is False (nothing was touched).
    """
    from dbstash.jobs.remote import job_storages  # noqa: PLC0415

    settings = job_of(
        settings,
        remote=remote,
        name_template=name_template,
        password=password,
        password_file=password_file,
        options=options,
    )
    how = _How(
        target=target,
        target_password=target_secret(target, target_password, target_password_file),
        force=force,
        allow_unverified=allow_unverified,
        allow_unsigned=allow_unsigned,
    )
    part = restore_part(settings, database)
    async with job_storages(part, storage) as stores:
        if len(stores) > 1:
            return await _restore_from_copies(part, stores, backup, how)
        store = stores[0]
        infos = backup_infos(await store.list(), job_templates(part), settings.zone)
        info = await aselect_own(part, store, infos, backup, allow_unsigned=allow_unsigned)
        return await _restore_info(part, store, info, how)


@dataclass(frozen=True, slots=True)
class _How:
    """How a restore goes, whichever copy it reads."""

    target: str | None
    target_password: str | None
    force: bool
    allow_unverified: bool
    allow_unsigned: bool


async def _restore_from_copies(part: Settings, stores: Sequence[Storage], backup: str, how: _How) -> RestoreResult:
    """Several destinations: the backup *backup* selects among all of them (a destination that missed a
    run holds an older ``latest``), restored from the first destination whose copy is usable. A copy
    that cannot be read, is not this job's, is untrusted or fails its checksum before anything was
    applied sends the restore on to the next destination, saying so; any other failure stops it."""
    found: list[tuple[Storage, list[BackupInfo], BackupInfo]] = []
    problems: list[str] = []
    unknown: list[ConfigError] = []
    for store in stores:
        try:
            infos = backup_infos(await store.list(), job_templates(part), part.zone)
            found.append(
                (store, infos, await aselect_own(part, store, infos, backup, allow_unsigned=how.allow_unsigned))
            )
        except ConfigError as exc:  # nothing of the kind on this destination
            unknown.append(exc)
            problems.append(f"{store.remote}: {exc}")
        except DbstashError as exc:
            if not exc.copy_at_fault:
                raise
            log.warning("destination %s is passed over: %s", store.remote, exc)
            problems.append(f"{store.remote}: {exc}")
    if not found and len(unknown) == len(stores):
        raise unknown[0]
    if not found:
        raise RestoreError(f"no destination holds a usable backup for {backup}: " + "; ".join(problems))
    name = max((chosen for _, _, chosen in found), key=lambda i: (i.taken_at, same_second_order(i.name))).name
    for store, infos, chosen in found:
        info = chosen if chosen.name == name else next((i for i in infos if i.name == name and i.complete), None)
        if info is None:
            problems.append(f"{store.remote}: no copy of {name}")
            continue
        try:
            result = await _restore_info(part, store, info, how)
        except DbstashError as exc:
            if not exc.copy_at_fault:
                raise
            log.warning(
                "the copy of %s on %s is not usable (%s): reading the next destination's", name, store.remote, exc
            )
            problems.append(f"{store.remote}: {exc}")
            continue
        if problems:
            log.warning("restored %s from %s, the first destination with a usable copy", name, store.remote)
        return replace(result, remote=store.remote)
    raise RestoreError(f"no destination holds a usable copy of {name}: " + "; ".join(problems))


def restore_part(settings: Settings, database: str | None) -> Settings:
    """The settings of the one object a restore reads: the job's, or one database's of a multi-database job."""
    if settings.databases is None:
        if database is not None:
            raise ConfigError("database", "unset: this job backs up one database", database)
        return settings
    if database is None or database.lower() == "all":
        raise ConfigError(
            "database",
            f"a database name or {GLOBALS_LABEL} (this job backs up several; every database of a run: "
            "restore_many(), the CLI's --database all)",
            database,
        )
    return settings.for_globals() if database == GLOBALS_LABEL else settings.for_database(database)


def check_belongs(part: Settings, info: BackupInfo, *, allow_unsigned: bool = False) -> None:
    """Refuse a backup whose manifest is not this job's object: another name (an old backup copied over
    a newer one), another engine or another database (a backup planted from another job); and, with
    trusted keys (``BACKUP_TRUSTED_KEYS``), one whose signature does not verify with one of them or
    vouches for another object. *info* comes from ``with_manifest(store, info, part)``.

    Raises [`RestoreRefused`][dbstash.RestoreRefused] before anything is read into a tool. Without trusted keys this
    holds against mistakes and copies, not against an attacker who writes a matching manifest.
    *allow_unsigned* accepts a backup that has no signature (logged as a warning), never a bad one.
    """
    problem = refusal(info, allow_unsigned)  # with trusted keys: another object's manifest is untrusted too
    wrong = mismatch(part, info)
    if problem is None and wrong:
        problem = f"{NOT_THIS_JOBS}: {wrong}"
    if problem is not None:
        hint = " (restore it anyway with allow_unsigned=True)" if info.unsigned else ""
        error = (RestoreRefused if problem.startswith(NOT_THIS_JOBS) else BackupUntrusted)(
            f"{info.name} is {problem}{hint}; nothing was touched"
        )
        error.override = "allow_unsigned" if info.unsigned else None
        error.copy_at_fault = True
        raise error
    if info.unsigned:
        log.warning("%s is %s: restored as allow_unsigned asks, its origin unproven", info.name, info.untrusted)


def restore_target(part: Settings, target: str | None, password: str | None = None) -> tuple[Engine, Connection, bool]:
    """(engine, where to restore, whether the database is recreated as it was backed up); *password*
    is the target's (``target_password=``)."""
    engine = part.engine()
    if part.globals_only:  # the server's roles and users: a server-level connection
        conn = target_for(part, target, password)[1]
        if target is not None and conn.database is not None:  # refused, never silently widened to the server
            raise ConfigError(
                "target",
                f"a server URI naming no database for {GLOBALS_LABEL} (roles and users belong to a whole server)",
                conn.display_uri(),
            )
        return engine, conn.server(), False
    if part.archive:  # one database of a multi-database job
        name = part.connection.database
        assert name is not None
        if target is None:
            return engine, part.connection, True
        conn = target_for(part, target, password)[1]
        if conn.database is None:  # a server: the database as itself, on that server
            return engine, engine.for_database(conn, name), True
        return engine, conn, False
    engine, conn = target_for(part, target, password)
    return engine, conn, False


async def _restore_info(part: Settings, store: Storage, info: BackupInfo, how: _How) -> RestoreResult:
    """Restore the backup *info* of the object *part* describes (see [`arestore()`][dbstash.arestore]).

    In this order: the target, the backup's ownership and signature, the identity, the proof the
    backup can be checked, the target's emptiness; then the bytes, then that they applied."""
    t0 = time.monotonic()
    engine, conn, create = restore_target(part, how.target, how.target_password)
    if not info.checked:  # aselect_own already read and checked what it chose
        info = await with_manifest(store, info, part)
    check_belongs(part, info, allow_unsigned=how.allow_unsigned)
    # an encrypted backup needs the identity: checked before anything is looked at on the target
    identity = part.identity() if _encrypted(info) else None
    mode = _mode_of(info, allow_unverified=how.allow_unverified)
    create = await _check_target(engine, conn, create=create, force=how.force, globals_only=part.globals_only)
    source_db = info.manifest.database if info.manifest else None
    options = RestoreOptions(
        force=how.force,
        source_database=None if source_db in (None, "all", GLOBALS_LABEL) else source_db,
        all_databases=source_db == "all",
        # the manifest says whether the tool compressed (mongodump --gzip: *.bson.gz in folders and tars)
        native_gzip=info.name.endswith(".archive.gz")
        or bool(info.manifest and info.manifest.native_compression and engine.gzips_natively),
        extra_args=part.restore_extra_args,
        create=create,
        globals_only=part.globals_only,
    )
    if options.all_databases and not how.force and info.manifest is not None:
        log.info("a whole-server backup: databases that exist on the target stop the restore (unless force=True)")
    log.info("restore started", extra={"backup": info.name, "target": conn.display_uri(), "create": create})
    kept: list[str] = []
    if mode == "stream":
        result, kept = await _apply_stream(store, info, engine, conn, options, identity=identity)
    else:
        await engine.prepare_restore(conn, options)
        result = await _restore_files(part, store, info, engine, conn, options=options, mode=mode, identity=identity)
    if kept:
        log.info("already on the target, kept as they are: %s", ", ".join(kept), extra={"kept": kept})
    await _check_applied(part, info, engine, conn)
    duration = round(time.monotonic() - t0, 3)
    log.info(
        "restore complete",
        extra={"backup": info.name, "target": conn.display_uri(), "sha256": result[1], "duration": duration},
    )
    return RestoreResult(
        info.name,
        conn.display_uri(),
        result[0],
        result[1],
        info.manifest is not None,
        duration,
        result[2],
        database=info.database or source_db,
        kept=tuple(kept),
    )


def _mode_of(info: BackupInfo, *, allow_unverified: bool) -> str:
    """The backup's mode (stream, tar, directory); refuses what cannot be proven complete."""
    mode = info.manifest.mode if info.manifest else ("directory" if info.is_dir else "stream")
    if mode == "stream" and info.name.endswith((".tar", ".tar.gz", ".tar.zst")):
        mode = "tar"
    if mode != "stream" and info.manifest is None:
        raise RestoreError(f"{info.name} is a {mode}-mode backup without a manifest: restore it by hand")
    if info.manifest is None:
        if not allow_unverified:
            refused = RestoreRefused(
                f"{info.name} has no usable manifest ({info.manifest_problem}): its bytes cannot be proven "
                "complete. Restore it anyway with allow_unverified=True"
            )
            refused.override = "allow_unverified"
            refused.copy_at_fault = True
            raise refused
        log.warning("%s has no manifest (%s): its checksum cannot be verified", info.name, info.manifest_problem)
    return mode


def _not_empty(conn: Connection) -> RestoreRefused:
    refused = RestoreRefused(f"the target {conn.display_uri()} is not empty: pass force=True to restore over its data")
    refused.override = "force"
    return refused


async def _check_target(engine: Engine, conn: Connection, *, create: bool, force: bool, globals_only: bool) -> bool:
    """Refuse a target that holds data (unless *force*); returns whether the restore creates the database."""
    if create:
        exists = await engine.database_exists(conn)
        if exists is None:
            create = False  # engines that create a database on first write (MongoDB)
        elif exists and not force:
            if await engine.is_empty(conn) is False:
                raise _not_empty(conn)
            create = False  # an empty database that exists: restored into as it is
    if not force and not create and not globals_only:
        empty = await engine.is_empty(conn)
        if empty is False:
            raise _not_empty(conn)
        if empty is None:
            log.warning("cannot tell whether %s is empty; restoring into it", conn.display_uri())
    return create


async def _apply_stream(
    store: Storage,
    info: BackupInfo,
    engine: Engine,
    conn: Connection,
    options: RestoreOptions,
    *,
    identity: AgeIdentity | None,
) -> tuple[tuple[int, str, str | None], list[str]]:
    """A stream backup into the target: proven first where the tool applies as it reads."""
    if info.manifest is not None and not engine.atomic_restore(options):
        await prove_backup(store, info)
    await engine.prepare_restore(conn, options)
    line_filter = await engine.restore_filter(conn, options)
    result = await _stream_restore(store, info, engine, conn, options, line_filter=line_filter, identity=identity)
    if line_filter is None:
        return result, []
    dropped = getattr(line_filter, "dropped", [])
    if dropped:
        log.warning("dropped and recreated from the backup (force=True): %s", ", ".join(dropped))
    return result, line_filter.kept


async def _check_applied(part: Settings, info: BackupInfo, engine: Engine, conn: Connection) -> None:
    """A backup that holds data must leave the target holding some: the tool may report success anyway."""
    if (
        info.manifest is not None
        and not part.globals_only
        and _holds_data(info.manifest)
        and await engine.is_empty(conn) is True
    ):
        raise RestoreError(
            f"{info.name} holds data but {conn.display_uri()} is empty after the restore: the restore tool "
            "applied nothing although it reported success (see its output in the log)"
        )


@dataclass(frozen=True, slots=True)
class RestoreRun:
    """Every database of one run of a multi-database job restored: the globals first, then by name.

    *failed*: (database, error) for each database whose restore failed; the others stand.
    """

    backup_id: str | None
    results: tuple[RestoreResult, ...]
    failed: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "backup_id": self.backup_id,
            "restored": [r.to_dict() for r in self.results],
            "failed": [{"database": d, "error": e} for d, e in self.failed],
        }


def run_of(infos: Sequence[BackupInfo], anchor: BackupInfo) -> list[BackupInfo]:
    """The complete backups taken by the same run as *anchor* (one run names all its objects with its
    start time), one per database."""
    same = [i for i in infos if i.complete and i.taken_at == anchor.taken_at and i.database is not None]
    chosen: dict[str, BackupInfo] = {}
    for i in sorted(same, key=lambda i: i.name != anchor.name):
        chosen.setdefault(i.database or "", i)
    return [chosen[k] for k in sorted(chosen, key=lambda d: (d != GLOBALS_LABEL, d))]


async def arestore_many(
    settings: Settings | str,
    backup: str = "latest",
    *,
    databases: str | Sequence[str] = "all",
    target: str | None = None,
    target_password: str | None = None,
    target_password_file: str | os.PathLike[str] | None = None,
    force: bool = False,
    storage: Storage | None = None,
    allow_unverified: bool = False,
    include_globals: bool = True,
    allow_unsigned: bool = False,
    remote: str | Sequence[str] | None = None,
    name_template: str | None = None,
    password: str | None = None,
    password_file: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> RestoreRun:
    """Restore every database of one run of a multi-database job (``latest``, a name, or a time picks
    the run), the globals first: into the job's server, or the server *target* names.

    Each database is recreated as it was backed up (see [`arestore()`][dbstash.arestore]); *force* drops the ones
    that exist first, and without it a database that holds data is refused (the others go on).
    *databases*: ``"all"`` or the names to restore from that run. A failure of the globals stops
    the restore before any database (their owners would be missing). *settings*, the job's
    *target_password* and the job as a URI: as [`arestore()`][dbstash.arestore] takes them.
    """
    from dbstash.jobs.remote import job_storages  # noqa: PLC0415

    settings = job_of(
        settings,
        remote=remote,
        name_template=name_template,
        password=password,
        password_file=password_file,
        options=options,
    )
    if settings.databases is None:
        raise ConfigError("databases", "unset: this job backs up one database (restore it with arestore())")
    wanted = _wanted(databases)
    how = _How(
        target=target,
        target_password=target_secret(target, target_password, target_password_file),
        force=force,
        allow_unverified=allow_unverified,
        allow_unsigned=allow_unsigned,
    )
    async with job_storages(settings, storage) as stores:
        store, entries = await first_listing(stores)  # several destinations: the run as the first reachable has it
        infos = backup_infos(entries, job_templates(settings), settings.zone)
        anchor = await aselect_own(settings, store, infos, backup, allow_unsigned=allow_unsigned)
        run = run_of(infos, anchor)
        anchor_manifest = (await with_manifest(store, anchor)).manifest
        run_id = anchor_manifest.backup_id if anchor_manifest else None
        run = _narrow(run, anchor, wanted, include_globals=include_globals)
        log.info("restoring the run of %s: %s", anchor.name, ", ".join(i.name for i in run))
        results: list[RestoreResult] = []
        failed: list[tuple[str, str]] = []
        for info in run:
            assert info.database is not None
            part = restore_part(settings, info.database)
            with log_context(database=info.database):
                try:
                    await _check_same_run(store, info, run_id, anchor)
                    if len(stores) > 1:  # each database from the first destination whose copy is usable
                        results.append(await _restore_from_copies(part, stores, info.name, how))
                    else:
                        results.append(await _restore_info(part, store, info, how))
                except DbstashError as exc:
                    if info.database == GLOBALS_LABEL:
                        raise RestoreError(
                            f"restoring the globals failed, so no database was restored: {exc}"
                        ) from None
                    log.error("restore of %s failed: %s", info.database, exc, extra={"error_type": type(exc).__name__})
                    failed.append((info.database, GLOBAL_REDACTOR(str(exc))))
    return RestoreRun(run_id, tuple(results), tuple(failed))


async def first_listing(stores: Sequence[Storage]) -> tuple[Storage, list[RemoteEntry]]:
    """The first destination that can be listed, and its listing (the others are logged as passed over)."""
    for store in stores[:-1]:
        try:
            return store, await store.list()
        except StorageError as exc:
            log.warning("destination %s is passed over: %s", store.remote, exc)
    return stores[-1], await stores[-1].list()


def _wanted(databases: str | Sequence[str]) -> list[str] | None:
    """*databases* of [`arestore_many()`][dbstash.arestore_many] as names, or None for all."""
    if not isinstance(databases, str):
        return list(databases)
    if databases.lower() == "all":
        return None
    return [d.strip() for d in databases.split(",") if d.strip()]


def _narrow(
    run: list[BackupInfo], anchor: BackupInfo, wanted: list[str] | None, *, include_globals: bool
) -> list[BackupInfo]:
    """The backups of *run* to restore: the *wanted* databases (all of them must be in the run), and
    the globals if *include_globals*."""
    if wanted is not None:
        missing = [d for d in wanted if d not in {i.database for i in run}]
        if missing:
            raise ConfigError("databases", f"databases of the run of {anchor.name}", ", ".join(missing))
        run = [i for i in run if i.database in wanted or (i.database == GLOBALS_LABEL and include_globals)]
    if not include_globals:
        run = [i for i in run if i.database != GLOBALS_LABEL]
    return run


async def _check_same_run(store: Storage, info: BackupInfo, run_id: str | None, anchor: BackupInfo) -> None:
    """*info* was made by the run *run_id* (the anchor's manifest says which), or RestoreError."""
    if run_id is None:
        return
    m = (await with_manifest(store, info)).manifest
    if m is not None and m.backup_id != run_id:
        raise RestoreError(f"{info.name} was made by another run than {anchor.name}")


restore_many = blocking(
    arestore_many,
    """Restore every database of one run (blocking). See
[`arestore_many()`][dbstash.arestore_many].""",
)

#: A dump this big holds data: an empty database dumps to a few KiB at most (headers, an empty RDB).
NON_EMPTY_DUMP = 64 << 10
#: Files of a multi-file dump that hold data (a folder of only metadata restores to an empty database).
_DATA_FILE = re.compile(r"\.(bson(\.gz)?|dat(\.gz)?|sql|txt)$")


def _holds_data(manifest: Manifest) -> bool:
    """Whether the backup surely holds data, so an empty target after its restore means nothing was applied."""
    if manifest.files:
        return any(bool(_DATA_FILE.search(p)) and int(str(v[0])) > 0 for p, v in manifest.files.items())
    return int(manifest.dump_size or manifest.size) > NON_EMPTY_DUMP


def _with_extra_args(command: DumpCommand, options: RestoreOptions) -> DumpCommand:
    """*command* with ``RESTORE_EXTRA_ARGS`` appended."""
    return replace(command, argv=(*command.argv, *options.extra_args)) if options.extra_args else command


async def prove_backup(store: Storage, info: BackupInfo) -> None:
    """Read the whole stored object once and check it against the manifest; nothing is applied yet."""
    assert info.manifest is not None
    digest = hashlib.sha256()
    size = 0

    def take(chunk: bytes) -> None:
        nonlocal size
        digest.update(chunk)
        size += len(chunk)

    log.info("checking %s against its manifest before restoring (first pass)", info.name)
    try:
        await store.read_stream(info.name, take)
    except StorageError as exc:
        raise _read_failed(info, exc, untouched=True) from None
    applied = "Nothing was applied: the bytes were checked before the restore tool started."
    _check_read(info, size, digest.hexdigest(), applied, untouched=True)


async def _stream_restore(
    store: Storage,
    info: BackupInfo,
    engine: Engine,
    conn: Connection,
    options: RestoreOptions,
    *,
    unpack_into: str | None = None,
    line_filter: LineFilter | None = None,
    identity: AgeIdentity | None = None,
) -> tuple[int, str, str | None]:
    """Returns (size, sha256, tool) once the tool finished with the verified input.

    *identity*: the stored bytes are age ciphertext; ``age -d`` runs between the hash (of the stored
    bytes) and the decompression.

    *unpack_into*: a tar-mode backup: the stream goes to ``tar -x`` into that folder instead.
    """
    final_path = conn.database if engine.restores_to_file and unpack_into is None else None
    tmp_path = _temp_beside(final_path) if final_path is not None else None
    tool_conn = (
        Connection(conn.engine, tmp_path, conn.host, conn.port, conn.user, conn.password, conn.params)
        if tmp_path
        else conn
    )
    tool_name: list[str] = []

    def start_tool(head: bytes) -> tuple[ChildProcess | None, int]:
        if unpack_into is not None:
            command: DumpCommand | None = DumpCommand(
                (shutil.which("tar") or "tar", "-x", "-C", unpack_into, "-f", "-")
            )
        else:
            command = engine.restore_command(tool_conn, head, options)
            if command is not None:
                command = _with_extra_args(command, options)
            elif options.extra_args:
                log.warning("RESTORE_EXTRA_ARGS ignored: this restore writes a file and runs no tool")
        if command is None:  # the stream itself is the restored file (Redis)
            assert tmp_path is not None
            return None, os.open(tmp_path, os.O_WRONLY | os.O_TRUNC)
        tool_name.append(os.path.basename(command.argv[0]))
        proc = command.start(GLOBAL_REDACTOR, stdin=subprocess.PIPE)
        assert proc.popen.stdin is not None
        fd = os.dup(proc.popen.stdin.fileno())
        proc.popen.stdin.close()
        return proc, fd

    decryptor = AgeDecryptor(identity, GLOBAL_REDACTOR) if identity is not None else None
    feeder = _Feeder(start_tool, _compression_of(info), line_filter, decryptor)
    # a failure leaves the target as it was: a temp file or folder, or one transaction rolled back
    untouched = tmp_path is not None or unpack_into is not None or engine.atomic_restore(options)
    ok = False
    try:
        try:
            await store.read_stream(info.name, feeder)
        except StorageError as exc:
            raise _read_failed(info, exc, untouched=untouched) from None
        sha = feeder.digest.hexdigest()
        stopped = (
            "nothing was applied: it was being unpacked into a temp folder."
            if unpack_into is not None
            else engine.stopped_restore_note(options)
        )
        _check_read(
            info,
            feeder.size,
            sha,
            "The restore was stopped before the end of its input: " + stopped,
            untouched=untouched,
        )
        _finish_feed(info, feeder, stopped)
        tool = feeder.tool
        if tool is not None:
            with anyio.fail_after(TOOL_TIMEOUT):
                status = await tool.wait()
            if status != 0:
                raise RestoreError(
                    f"{tool.name} {tool.describe_exit(status)} while restoring {info.name}",
                    stderr_tail=tool.stderr.text(),
                )
        if feeder.tool_died:
            raise RestoreError(f"the restore tool stopped reading {info.name}")
        if tmp_path is not None and final_path is not None:
            os.replace(tmp_path, final_path)
            tmp_path = None
        ok = True
        return feeder.size, sha, tool_name[0] if tool_name else None
    finally:
        if not ok:
            await _abort_feed(feeder, decryptor)
        if tmp_path is not None:
            for leftover in (tmp_path, *(tmp_path + s for s in SQLITE_SIDE_FILES)):
                with contextlib.suppress(OSError):
                    os.unlink(leftover)


async def _abort_feed(feeder: _Feeder, decryptor: AgeDecryptor | None) -> None:
    """Stop the restore tool and the decryption of a failed restore."""
    # kill BEFORE closing its stdin: closed first, the pipe's end is an end of input, and psql
    # --single-transaction would COMMIT what it has before the SIGKILL lands (seen under load)
    if feeder.tool is not None and feeder.tool.returncode is None:
        feeder.tool.send_signal(signal.SIGKILL)
        with anyio.CancelScope(shield=True):
            await feeder.tool.wait()
    feeder.close()
    if decryptor is not None:
        decryptor.abort()


def _temp_beside(final_path: str) -> str:
    """A private temp file beside *final_path* (a file target: SQLite, Redis), renamed over it at the end."""
    directory = os.path.dirname(final_path) or "."
    if not os.path.isdir(directory):
        raise ConfigError("target", "a path in an existing directory", final_path)
    fd, tmp_path = tempfile.mkstemp(prefix=os.path.basename(final_path) + ".", suffix=".dbstash-partial", dir=directory)
    os.close(fd)
    return tmp_path


def _check_read(info: BackupInfo, size: int, sha: str, applied: str, *, untouched: bool) -> None:
    """The bytes read are the manifest's, or ChecksumMismatch (*applied*: what the restore left applied;
    *untouched*: the target is as it was, so another destination's copy may be read)."""
    m = info.manifest
    if m is not None and (size != m.size or sha != m.sha256):
        what = "truncated" if size < m.size else "corrupted"
        error = ChecksumMismatch(
            f"{info.name} is {what}: read {size} bytes with sha256 {sha}, the manifest says {m.size} "
            f"bytes with sha256 {m.sha256}. {applied}"
        )
        error.copy_at_fault = untouched
        raise error


def _read_failed(info: BackupInfo, exc: StorageError, *, untouched: bool) -> RestoreError:
    error = RestoreError(f"reading {info.name} failed: {exc}", stderr_tail=exc.stderr_tail)
    error.copy_at_fault = untouched
    return error


def _finish_feed(info: BackupInfo, feeder: _Feeder, stopped: str) -> None:
    """Flush the decryption and decompression into the tool; their failures as RestoreError."""
    try:
        if feeder.decode_error is not None:
            raise ValueError(str(feeder.decode_error))
        feeder.finish()
    except DecryptError as exc:  # a wrong identity, or ciphertext age refuses (damaged, unverified)
        # say only what is known: the tool got nothing only if it never started
        applied = (
            "nothing was applied: the restore tool never started"
            if feeder.tool is None  # (Redis writes a temp file, removed on failure)
            else "the restore tool had already received part of it: " + stopped
        )
        raise RestoreError(f"{info.name} cannot be decrypted with AGE_IDENTITY_FILE ({exc}); {applied}") from None
    except ValueError as exc:  # corrupted or truncated compression, without a manifest to catch it first
        raise RestoreError(f"{info.name} cannot be decompressed: {exc}") from None


async def _restore_files(
    settings: Settings,
    store: Storage,
    info: BackupInfo,
    engine: Engine,
    conn: Connection,
    *,
    options: RestoreOptions,
    mode: str,
    identity: AgeIdentity | None = None,
) -> tuple[int, str, str | None]:
    """Directory and tar backups: fetch into a work folder under BACKUP_TEMP_DIR, prove every byte
    against the manifest, and only then run the engine's tool on the folder (nothing is applied on
    a mismatch, whatever the engine)."""
    from dbstash.jobs.modes import folder_stats, work_folder  # noqa: PLC0415

    assert info.manifest is not None
    async with work_folder(settings) as folder:
        if mode == "tar":
            size, sha, _ = await _stream_restore(
                store, info, engine, conn, options, unpack_into=folder, identity=identity
            )
        else:
            await store.download_dir(info.name, folder)
            found = await anyio.to_thread.run_sync(folder_stats, folder)
            expected = {p: (int(v[0]), str(v[1])) for p, v in (info.manifest.files or {}).items()}  # type: ignore[call-overload]
            if found.files != expected:
                bad = sorted(p for p in set(found.files) | set(expected) if found.files.get(p) != expected.get(p))
                differs = ChecksumMismatch(
                    f"{info.name} differs from its manifest in {len(bad)} file(s), e.g. {bad[0]}: nothing was applied"
                )
                differs.copy_at_fault = True
                raise differs
            size, sha = found.size, found.sha256
        command = _with_extra_args(engine.restore_files_command(conn, folder, options), options)
        stdin_paths: list[str] = []
        if engine.splits_stream:  # MySQL: the per-table files, in name order, are the original dump
            stdin_paths = [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
        try:
            await run_tool(command, stdin_paths=stdin_paths, timeout=TOOL_TIMEOUT)
        except DbstashError as exc:
            raise RestoreError(f"restoring {info.name} failed: {exc}") from None
        return size, sha, os.path.basename(command.argv[0])


restore = blocking(arestore, """Restore one of this job's backups (blocking). See [`arestore()`][dbstash.arestore].""")


__all__ = [
    "BackupInfo",
    "RestoreResult",
    "RestoreRun",
    "alist_backups",
    "arestore",
    "arestore_many",
    "list_backups",
    "restore",
    "restore_many",
    "select_backup",
]
