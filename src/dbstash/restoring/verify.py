"""``verify``, the restore drill: restore into a scratch target, prove the checksum, count rows, drop the data."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from dbstash.bridge import blocking
from dbstash.errors import ChecksumMismatch, ConfigError, DbstashError, RestoreRefused
from dbstash.jobs.databases import GLOBALS_LABEL
from dbstash.logs import get_logger
from dbstash.redact import GLOBAL_REDACTOR
from dbstash.restoring.copies import check_copies
from dbstash.restoring.listing import aselect_own, backup_infos, job_templates, with_manifest
from dbstash.restoring.restore import (
    RestoreResult,
    arestore,
    check_belongs,
    first_listing,
    prove_backup,
    restore_part,
    restore_target,
    run_of,
    target_secret,
)
from dbstash.restoring.selection import job_of
from dbstash.settings.config import Settings
from dbstash.storage.base import Storage

log = get_logger("dbstash.verify")


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The restore drill's outcome: the restore, then what the scratch target held."""

    restore: RestoreResult
    counts: dict[str, int] = field(default_factory=dict)
    cleaned: bool = True
    #: with several destinations: (destination, None if its copy matches the manifest, else why not) for
    #: each destination but the drilled one ([`RestoreResult.remote`][dbstash.RestoreResult.remote])
    copies: tuple[tuple[str, str | None], ...] = ()

    @property
    def ok(self) -> bool:
        """The drill passed and every other destination's copy matches the manifest."""
        return all(problem is None for _, problem in self.copies)

    def to_dict(self) -> dict[str, object]:
        return {
            **self.restore.to_dict(),
            "ok": self.ok,
            "counts": self.counts,
            "cleaned": self.cleaned,
            "copies": [{"remote": r, "ok": p is None, "error": p} for r, p in self.copies],
        }


# -- listing ---------------------------------------------------------------------------------------
# -- verify ----------------------------------------------------------------------------------------
async def averify(
    settings: Settings | str,
    backup: str = "latest",
    *,
    target: str | None = None,
    target_password: str | None = None,
    target_password_file: str | os.PathLike[str] | None = None,
    storage: Storage | None = None,
    database: str | None = None,
    allow_unsigned: bool = False,
    remote: str | Sequence[str] | None = None,
    name_template: str | None = None,
    password: str | None = None,
    password_file: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> VerifyResult:
    """The restore drill: restore into an empty scratch *target*, check the checksum, count rows, drop the data.

    *target* defaults to ``VERIFY_TARGET_URI``; for SQLite and Redis a temp file is used when none is given.
    Succeeds only when the restore succeeded and the checksum matched the manifest. A multi-database
    job verifies one *database* here; [`averify_many()`][dbstash.averify_many] drills every database of a run.
    *settings*, *target_password* and the job as a URI: as [`arestore()`][dbstash.arestore] takes them.
    """
    settings = job_of(
        settings,
        remote=remote,
        name_template=name_template,
        password=password,
        password_file=password_file,
        options=options,
    )
    part = restore_part(settings, database)
    if part.globals_only:
        raise ConfigError("database", "a database (the globals are checked by their checksum: verify_many())")
    engine = part.engine()
    target = target or settings.verify_target
    secret = target_secret(target, target_password, target_password_file)
    scratch_dir = None
    if target is None:
        if not engine.restores_to_file:
            raise ConfigError(
                "target",
                f"a scratch {engine.key} database URI to restore into (its data is dropped after)",
                missing=True,
            )
        scratch_dir = tempfile.mkdtemp(prefix="dbstash-verify-")
        target = os.path.join(scratch_dir, "scratch" + engine.scratch_suffix)
    _, conn, create = restore_target(part, target, secret)
    # A drill clears only what it may: a scratch file it made, a database it creates, or a target it
    # proved empty before it wrote anything. Any other target is refused untouched.
    if scratch_dir is None:
        fresh = create and await engine.database_exists(conn) is False
        empty = True if fresh else await engine.is_empty(conn)
        if empty is not True:
            raise RestoreRefused(
                f"the verify target {conn.display_uri()} "
                + ("is not empty" if empty is False else "cannot be proven empty")
                + ": a drill restores only into an empty scratch database it may clear afterwards; nothing was touched"
            )
    try:
        result = await arestore(
            settings,
            backup,
            target=target,
            target_password=secret,
            storage=storage,
            database=database,
            allow_unsigned=allow_unsigned,
        )
        if not result.checksum_verified:
            raise ChecksumMismatch(f"{result.name} has no manifest: its checksum cannot be verified")
        counts = await engine.table_counts(conn)
        log.info("verify: restored %s, checksum matched", result.name, extra={"counts": counts})
        copies = await check_copies(part, result, allow_unsigned) if storage is None and part.extra_remotes else ()
        return VerifyResult(result, counts, copies=copies)
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await engine.clear(conn)
            except Exception as exc:
                log.error("verify: could not drop the scratch data in %s: %s", conn.display_uri(), exc)
        if scratch_dir is not None:
            shutil.rmtree(scratch_dir, ignore_errors=True)


verify = blocking(averify, """The restore drill (blocking). See [`averify()`][dbstash.averify].""")


@dataclass(frozen=True, slots=True)
class VerifyRun:
    """The restore drill over every database of one run of a multi-database job.

    The globals are not restored into the scratch server (that would create roles there): their
    stored bytes are checked against their manifest (*globals_checked*).
    """

    results: tuple[VerifyResult, ...]
    failed: tuple[tuple[str, str], ...] = ()
    globals_checked: bool | None = None

    @property
    def ok(self) -> bool:
        """Every drill passed, and with several destinations every other copy matched its manifest."""
        return not self.failed and all(r.ok for r in self.results)

    @property
    def counts(self) -> dict[str, int]:
        """Rows per table of every database, as ``database:table``."""
        return {f"{r.restore.database}:{k}": v for r in self.results for k, v in r.counts.items()}

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "verified": [r.to_dict() for r in self.results],
            "failed": [{"database": d, "error": e} for d, e in self.failed],
            "globals_checked": self.globals_checked,
        }


async def averify_many(
    settings: Settings | str,
    backup: str = "latest",
    *,
    target: str | None = None,
    target_password: str | None = None,
    target_password_file: str | os.PathLike[str] | None = None,
    storage: Storage | None = None,
    allow_unsigned: bool = False,
    remote: str | Sequence[str] | None = None,
    name_template: str | None = None,
    password: str | None = None,
    password_file: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> VerifyRun:
    """The restore drill for every database of one run (``latest`` by default), one after another into
    the scratch *target* (``VERIFY_TARGET_URI``), which is emptied after each. *settings*,
    *target_password* and the job as a URI: as [`arestore()`][dbstash.arestore] takes them."""
    from dbstash.jobs.remote import job_storages  # noqa: PLC0415

    settings = job_of(
        settings,
        remote=remote,
        name_template=name_template,
        password=password,
        password_file=password_file,
        options=options,
    )
    secret = target_secret(target or settings.verify_target, target_password, target_password_file)
    if settings.databases is None:
        raise ConfigError("databases", "unset: this job backs up one database (verify it with averify())")
    results: list[VerifyResult] = []
    failed: list[tuple[str, str]] = []
    globals_checked = None
    async with job_storages(settings, storage) as stores:
        store, entries = await first_listing(stores)  # several destinations: the run as the first reachable has it
        infos = backup_infos(entries, job_templates(settings), settings.zone)
        run = run_of(infos, await aselect_own(settings, store, infos, backup, allow_unsigned=allow_unsigned))
        for info in run:
            assert info.database is not None
            try:
                if info.database == GLOBALS_LABEL:
                    checked = await with_manifest(store, info, settings)
                    check_belongs(settings.for_globals(), checked, allow_unsigned=allow_unsigned)
                    if checked.manifest is None:
                        raise ChecksumMismatch(f"{info.name} has no manifest: its checksum cannot be verified")
                    await prove_backup(store, checked)
                    globals_checked = True
                    continue
                results.append(
                    await averify(
                        settings,
                        info.name,
                        target=target,
                        target_password=secret,
                        # several destinations: averify drills the first usable copy and checks the others
                        storage=store if len(stores) == 1 else None,
                        database=info.database,
                        allow_unsigned=allow_unsigned,
                    )
                )
            except DbstashError as exc:
                log.error("verify of %s failed: %s", info.database, exc)
                failed.append((info.database, GLOBAL_REDACTOR(str(exc))))
                if info.database == GLOBALS_LABEL:
                    globals_checked = False
    return VerifyRun(tuple(results), tuple(failed), globals_checked)


verify_many = blocking(
    averify_many,
    """The drill for every database of one run (blocking). See
    [`averify_many()`][dbstash.averify_many].""",
)


__all__ = ["VerifyResult", "VerifyRun", "averify", "averify_many", "verify", "verify_many"]
