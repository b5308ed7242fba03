"""Listing: this job's backups on the remote, paired with their manifests, and choosing one.

Names of this job under any extension it may have used are listed (changing compression never
hides older backups); partial uploads are listed as incomplete; a backup's manifest is read to
prove what it holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import anyio

from dbstash.bridge import blocking
from dbstash.engines.base import DumpOptions
from dbstash.errors import BackupUntrusted, ConfigError, RestoreRefused, StorageError
from dbstash.jobs.manifest import SIGNATURE_SUFFIX, Manifest, is_manifest, manifest_name, signature_name
from dbstash.jobs.naming import NameTemplate, is_partial, same_second_order
from dbstash.jobs.signing import Untrusted
from dbstash.logs import get_logger
from dbstash.parts.compression import SUFFIXES
from dbstash.parts.sink import RemoteEntry
from dbstash.restoring.selection import job_of, select_backup
from dbstash.settings.config import Settings
from dbstash.storage.base import Storage

log = get_logger("dbstash.listing")


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """One backup of this job on the remote, as [`list_backups()`][dbstash.list_backups] reports it.

    Attributes:
        complete: committed under its final name (a partial upload left by a killed run is not).
        manifest: its manifest, if it has a readable one (backups from before manifests have none).
        size_ok: the stored size equals the manifest's (None without a manifest).
    """

    name: str
    size: int
    taken_at: datetime
    complete: bool
    manifest: Manifest | None = None
    manifest_problem: str | None = None
    is_dir: bool = False
    #: the database the name says it holds (``_globals`` for a job's roles and users)
    database: str | None = None
    #: a signature (``<manifest>.sig``) is stored beside its manifest
    signed: bool = False
    #: with trusted keys (``BACKUP_TRUSTED_KEYS``): why this backup is not trusted (None: trusted, or no keys)
    untrusted: str | None = None
    #: the fingerprint of the trusted key whose signature was checked
    signed_by: str | None = None
    #: the manifest's bytes as stored (what a signature is of)
    manifest_bytes: bytes | None = field(default=None, repr=False, compare=False)
    #: read and checked for a job (its manifest against the job's object, its signature against its keys)
    checked: bool = field(default=False, repr=False, compare=False)
    #: with several destinations: those holding a copy its manifest proves (see
    #: [`alist_backups()`][dbstash.alist_backups])
    copies: tuple[str, ...] = ()

    @property
    def unsigned(self) -> bool:
        """Untrusted only for want of a signature (``allow_unsigned`` accepts it), not a bad one."""
        return self.untrusted is not None and self.untrusted.startswith(UNSIGNED)

    @property
    def size_ok(self) -> bool | None:
        return None if self.manifest is None else self.manifest.size == self.size

    def to_dict(self, now: datetime | None = None) -> dict[str, object]:
        """Plain JSON-ready data, with the age in seconds."""
        now = now or datetime.now(UTC)
        m = self.manifest
        return {
            "name": self.name,
            "database": self.database,
            "size": self.size,
            "taken_at": self.taken_at.isoformat(),
            "age_seconds": round((now - self.taken_at).total_seconds()),
            "complete": self.complete,
            "manifest": m is not None,
            "sha256": m.sha256 if m else None,
            "size_ok": self.size_ok,
            "engine": m.engine if m else None,
            "compression": m.compression if m else None,
            "manifest_problem": self.manifest_problem,
            "signed": self.signed,
            "signed_by": self.signed_by,
            "untrusted": self.untrusted,
            "copies": list(self.copies),
        }


def job_templates(settings: Settings) -> list[NameTemplate]:
    """This job's names under every extension it may have used: plain or native format, with or
    without dbstash's ``.gz``/``.zst``, tar files and folders of the other modes (so changing
    compression or ``BACKUP_MODE`` never hides older backups from list and restore; retention stays
    with the exact current template)."""
    if settings.databases is not None:  # every database's series (and the globals'), any {db}
        found: list[NameTemplate] = []
        for part in (settings.for_database("x"), settings.for_globals()):
            for t in job_templates(part):
                wild = replace(t, db="", any_db=True)
                if wild not in found:
                    found.append(wild)
        return found
    current = settings.template()
    engine = settings.engine()
    bases = {
        engine.extension(DumpOptions(compress=c, extra_args=settings.dump_extra_args), settings.connection)
        for c in (False, True)
    }
    if "tar" in engine.supported_modes(settings.connection):
        bases.add(".tar")  # tar mode, whatever BACKUP_MODE says now: changing the mode never hides a backup
    others = {b + suffix for b in bases for suffix in ("", *SUFFIXES.values())} - {current.extension}
    if "directory" in engine.supported_modes(settings.connection):
        others.add("")  # directory mode: a folder under the template's name
    extensions = [current.extension, *sorted(others - {current.extension})]
    return [replace(current, extension=ext) for ext in extensions]


def backup_infos(entries: Sequence[RemoteEntry], templates: Sequence[NameTemplate], zone: ZoneInfo) -> list[BackupInfo]:
    names = {e.name for e in entries}
    found = []
    for e in entries:
        if is_manifest(e.name) or e.name.endswith(SIGNATURE_SUFFIX):
            continue
        final = e.name
        complete = True
        if e.is_dir:  # directory mode: the manifest beside the folder is its completion marker
            complete = manifest_name(e.name) in names
        elif is_partial(e.name):
            final = e.name.rsplit(".", 2)[0]
            complete = False
            if e.size == 0 and final in names:  # a committed run's claim (undeletable)
                continue
        template = next((t for t in templates if (t.extension == "") == e.is_dir and t.matches(final)), None)
        if template is None:
            continue
        taken = template.timestamp_of(final, zone) or e.modtime
        found.append(
            BackupInfo(
                e.name,
                e.size,
                taken.astimezone(UTC),
                complete,
                manifest_problem=None if manifest_name(e.name) in names or not complete else "no manifest",
                is_dir=e.is_dir,
                database=template.database_of(final),
                signed=signature_name(manifest_name(e.name)) in names,
            )
        )
    return sorted(found, key=lambda b: (b.taken_at, same_second_order(b.name)), reverse=True)


def job_infos(settings: Settings, entries: Sequence[RemoteEntry]) -> list[BackupInfo]:
    """This job's backups among *entries*, newest first; for a multi-database job, of the databases
    it selects (named ones, or any but the excluded) and its globals."""
    infos = backup_infos(entries, job_templates(settings), settings.zone)
    selection = settings.databases
    if selection is None:
        return infos
    from dbstash.jobs.databases import GLOBALS_LABEL  # noqa: PLC0415

    def wanted(db: str | None) -> bool:
        if db is None or db == GLOBALS_LABEL:
            return True
        if not selection.every:
            return db in selection.names
        return not selection.excluded(db)

    return [i for i in infos if wanted(i.database)]


def part_of(settings: Settings, database: str | None) -> Settings:
    """The settings of the one object a backup named for *database* belongs to (the job's own for a
    one-database job; that database's, or the globals', for a multi-database job)."""
    if settings.databases is None or database is None:
        return settings
    from dbstash.jobs.databases import GLOBALS_LABEL  # noqa: PLC0415

    return settings.for_globals() if database == GLOBALS_LABEL else settings.for_database(database)


def mismatch(part: Settings, info: BackupInfo) -> str | None:
    """How *info*'s manifest says it is not the object *part* describes (another name: an old backup
    copied over a newer one; another engine or database: one planted from another job), or None."""
    m = info.manifest
    if m is None:
        return None
    found = {"name": m.name, "engine": m.engine, "database": m.database}
    expected = {"name": info.name, "engine": part.engine().key, "database": part.database_label}
    wrong = [f"{k} {found[k]!r} (expected {expected[k]!r})" for k in found if found[k] != expected[k]]
    return "its manifest names " + ", ".join(wrong) if wrong else None


#: How [`BackupInfo.manifest_problem`][dbstash.BackupInfo.manifest_problem] starts for a backup whose manifest is
#: another object's.
NOT_THIS_JOBS = "not this job's backup"
#: How [`BackupInfo.untrusted`][dbstash.BackupInfo.untrusted] starts for a backup without a signature (or without a
#: manifest).
UNSIGNED = "unsigned"


async def check_signature(storage: Storage, info: BackupInfo, part: Settings) -> BackupInfo:
    """*info* checked against *part*'s trusted keys: its signature verifies with one of them, and the
    fields it vouches for are this object's (name, engine, database, the job's series)."""
    keys = part.trusted_keys
    if keys is None or not info.complete:
        return info
    if info.manifest is None or info.manifest_bytes is None:
        return replace(info, untrusted=f"{UNSIGNED}: no usable manifest ({info.manifest_problem})")
    if not info.signed:
        return replace(info, untrusted=f"{UNSIGNED}: no signature ({signature_name(manifest_name(info.name))})")
    try:
        armored = await storage.read(signature_name(manifest_name(info.name)))
    except StorageError as exc:
        return replace(info, untrusted=f"its signature cannot be read: {exc}")
    try:
        who = keys.check(info.manifest_bytes, armored)
    except Untrusted as exc:
        return replace(info, untrusted=str(exc))
    wrong = mismatch(part, info)
    series = part.template().series
    if wrong is None and info.manifest.series != series:  # the job's identity, as the signer vouched for it
        wrong = f"series {info.manifest.series!r} (expected {series!r}: another job, or BACKUP_NAME_TEMPLATE changed)"
    if wrong:
        fields = wrong.removeprefix("its manifest names ")
        return replace(info, untrusted=f"signed by {who} for another object: {fields}")
    return replace(info, signed_by=who)


def refusal(info: BackupInfo, allow_unsigned: bool = False) -> str | None:
    """Why *info* may not be restored or chosen (another object's manifest, or not trusted), or None.
    With *allow_unsigned* a backup that is untrusted only for want of a signature is accepted."""
    if info.manifest_problem is not None and info.manifest_problem.startswith(NOT_THIS_JOBS):
        return info.manifest_problem
    if info.untrusted is not None and not (allow_unsigned and info.unsigned):
        return f"untrusted: {info.untrusted}"
    return None


async def with_manifest(storage: Storage, info: BackupInfo, settings: Settings | None = None) -> BackupInfo:
    """*info* with its manifest read; with *settings*, a manifest of another object is a problem, and
    with trusted keys in *settings* its signature is checked
    ([`BackupInfo.untrusted`][dbstash.BackupInfo.untrusted])."""
    if settings is not None:
        return replace(await _read_manifest(storage, info, part_of(settings, info.database)), checked=True)
    return await _read_manifest(storage, info, None)


async def _read_manifest(storage: Storage, info: BackupInfo, part: Settings | None) -> BackupInfo:
    if not info.complete or info.manifest_problem == "no manifest":
        return info if part is None else await check_signature(storage, info, part)
    try:
        data = await storage.read(manifest_name(info.name))
        manifest = Manifest.from_json(data)
    except (ValueError, StorageError) as exc:
        found = replace(info, manifest=None, manifest_problem=f"unreadable manifest: {exc}")
        return found if part is None else await check_signature(storage, found, part)
    problem = None
    if not info.is_dir and manifest.size != info.size:
        problem = f"size {info.size} differs from the manifest's {manifest.size}"
    found = replace(info, manifest=manifest, manifest_problem=problem, manifest_bytes=data)
    if part is None:
        return found
    foreign = mismatch(part, found)
    if foreign is not None and part.trusted_keys is None:
        return replace(found, manifest_problem=f"{NOT_THIS_JOBS}: {foreign}")
    return await check_signature(storage, found, part)  # with trusted keys, another object's manifest is untrusted


async def aselect_own(
    settings: Settings, store: Storage, infos: Sequence[BackupInfo], selector: str, *, allow_unsigned: bool = False
) -> BackupInfo:
    """`select_backup()`, passing over backups whose manifest is another object's, or that are not
    trusted (with trusted keys), when the selector is ``latest`` or a time (each one passed over is
    logged as a warning). An exact name is returned as it is: restoring it is refused later, saying why.
    A backup chosen otherwise is returned read and checked ([`BackupInfo.checked`][dbstash.BackupInfo.checked])."""
    remaining = list(infos)
    skipped: list[str] = []
    while True:
        try:
            chosen = select_backup(remaining, selector, settings.zone)
        except ConfigError:
            if not skipped:
                raise
            refused = (RestoreRefused if settings.trusted_keys is None else BackupUntrusted)(
                f"no backup of this job's own for {selector}: passed over {'; '.join(skipped)}; nothing was touched"
            )
            refused.copy_at_fault = True
            raise refused from None
        if chosen.name == selector:
            return chosen
        checked = await with_manifest(store, chosen, settings)
        foreign = refusal(checked, allow_unsigned)
        if foreign is None:
            if skipped:
                log.warning("restoring %s, the newest backup of this job's own for %s", chosen.name, selector)
            return checked
        log.warning("passing over %s: %s", chosen.name, foreign)
        skipped.append(f"{chosen.name} ({foreign})")
        remaining.remove(chosen)


async def alist_backups(
    settings: Settings | str,
    *,
    storage: Storage | None = None,
    manifests: bool = True,
    remote: str | Sequence[str] | None = None,
    name_template: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> list[BackupInfo]:
    """This job's backups on the remote, newest first, partial uploads included (``complete=False``).

    *settings*: the job's [`Settings`][dbstash.Settings], or its connection URI with *remote* and,
    when the backups used them, *name_template* and *options* (``compress``, ``trusted_keys``, any
    [`Settings.create()`][dbstash.Settings.create] keyword): the job as [`backup()`][dbstash.backup] took it.

    With *manifests* each complete backup's manifest is read (one small read each). With several
    destinations (``settings.remotes``) their listings are merged, one entry per backup:
    [`BackupInfo.copies`][dbstash.BackupInfo] names the destinations that hold a copy proven by its manifest (its
    size, its signature with trusted keys); a destination that cannot be listed is logged and left out.
    """
    from dbstash.jobs.remote import job_storage  # noqa: PLC0415 - remote imports config, which restore's users import

    settings = job_of(
        settings, remote=remote, name_template=name_template, password=None, password_file=None, options=options
    )
    if storage is None and settings.extra_remotes:
        from dbstash.restoring.copies import merged_listing  # noqa: PLC0415 - copies lists through this module

        return await merged_listing(settings, manifests=manifests)
    async with job_storage(settings, storage) as store:
        infos = job_infos(settings, await store.list())
        if not manifests:
            return infos
        found: list[BackupInfo] = list(infos)
        limiter = anyio.CapacityLimiter(4)  # a few reads at once (each one an rclone on most transports)

        async def read(at: int) -> None:
            async with limiter:
                found[at] = await with_manifest(store, infos[at], settings)

        async with anyio.create_task_group() as tg:
            for at in range(len(infos)):
                tg.start_soon(read, at)
        return found


list_backups = blocking(
    alist_backups,
    """This job's backups on the remote, newest first (blocking). See
    [`alist_backups()`][dbstash.alist_backups].""",
)


# -- restoring -------------------------------------------------------------------------------------
