"""Retention on the remote: this job's backups among a listing, the plan, the deletions, stale partial uploads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from dbstash.bridge import blocking
from dbstash.engines import same_family
from dbstash.errors import StorageError
from dbstash.jobs.manifest import MANIFEST_SUFFIX, SIGNATURE_SUFFIX, Manifest, manifest_name, signature_name
from dbstash.jobs.naming import NameTemplate, is_partial, partial_target
from dbstash.jobs.remote import job_storage
from dbstash.jobs.retention import Backup, Decision, RetentionPlan
from dbstash.logs import get_logger
from dbstash.parts.sink import RemoteEntry
from dbstash.settings.config import Settings
from dbstash.storage.base import Storage, delete_refused

log = get_logger("dbstash")


def job_backups(entries: Sequence[RemoteEntry], template: NameTemplate, settings: Settings) -> list[Backup]:
    """The complete backups of this job among *entries*: template matches only, partial uploads never."""
    zone = settings.zone
    names = {e.name for e in entries}
    found = []
    for e in entries:
        if e.is_dir != (settings.mode == "directory") or is_partial(e.name) or not template.matches(e.name):
            continue
        if e.is_dir and manifest_name(e.name) not in names:  # no manifest: an incomplete folder, not a backup
            continue
        taken = template.timestamp_of(e.name, zone) or e.modtime
        found.append(Backup(e.name, taken.astimezone(UTC), e.size))
    return found


#: A partial upload of this job older than this (or than the job's timeout, if longer) is a leftover of an
#: abort that could not remove it (dead remote, SIGKILL): the next successful run and ``prune`` delete it.
#: An upload in progress is never that old: its partial is rewritten as bytes arrive (local, SFTP) or
#: appears only when complete, moments before its commit (object stores).
STALE_PARTIAL_AGE = 24 * 3600.0


def stale_partials(
    entries: Sequence[RemoteEntry], template: NameTemplate, now: datetime, timeout: float | None = None
) -> list[str]:
    """This job's leftovers among *entries* that no run can still be writing (see `STALE_PARTIAL_AGE`):
    partial uploads, and orphan manifests (a manifest is stored just before its object appears, so a
    SIGKILL in between leaves one whose object never came)."""
    limit = max(STALE_PARTIAL_AGE, timeout or 0)
    names = {e.name for e in entries}
    found = []
    for e in entries:
        if (now - e.modtime).total_seconds() <= limit:
            continue
        target = partial_target(e.name)
        if target is not None and template.matches(target):
            found.append(e.name)
        elif e.name.endswith((MANIFEST_SUFFIX, MANIFEST_SUFFIX + SIGNATURE_SUFFIX)):
            backup = e.name.removesuffix(SIGNATURE_SUFFIX).removesuffix(MANIFEST_SUFFIX)
            if backup not in names and template.matches(backup):
                found.append(e.name)
    return found


async def remove_stale_partials(
    settings: Settings,
    template: NameTemplate,
    storage: Storage,
    now: datetime,
    entries: Sequence[RemoteEntry] | None = None,
) -> None:
    """Delete leftovers of earlier aborted runs of this job; a failure is logged, never fatal.

    *entries*: a listing already at hand (the commit's), instead of listing again.
    """
    try:
        stale = stale_partials(
            entries if entries is not None else await storage.list(), template, now, settings.timeout
        )
        if stale:
            await storage.delete_many(stale)
            log.info(
                "removed %d stale partial upload(s) and orphan manifest(s) of earlier runs",
                len(stale),
                extra={"removed": stale},
            )
    except Exception as exc:
        log.warning("could not remove stale partial uploads: %s", exc)


async def plan_retention(
    settings: Settings,
    storage: Storage,
    *,
    now: datetime | None = None,
    ensure: Backup | None = None,
    entries: Sequence[RemoteEntry] | None = None,
) -> RetentionPlan:
    """List the remote once and plan retention for this job (no deletion).

    Only this job's backups take part: names the template matches, and, where a backup has a
    manifest, only if the manifest names this job's engine and database (another job whose names
    happen to match is never touched). A backup whose manifest cannot be read takes no part either,
    nor, with trusted keys (``BACKUP_TRUSTED_KEYS``), one not signed by one of them: it is neither
    counted as a kept good backup nor deleted.
    *ensure* adds a backup the listing may not show yet (eventually consistent backends), so the
    one just written always counts as the newest. *entries*: a listing at hand instead of a new one.
    """
    template = settings.template()
    if entries is None:
        entries = await storage.list()
    backups = await _own_backups(settings, storage, entries, job_backups(entries, template, settings))
    if ensure is not None and all(b.name != ensure.name for b in backups):
        backups.append(ensure)
    return settings.retention.plan(backups, now or datetime.now(UTC), newest=ensure.name if ensure else None)


async def _own_backups(
    settings: Settings, storage: Storage, entries: Sequence[RemoteEntry], backups: list[Backup]
) -> list[Backup]:
    """*backups* less those whose manifest says another engine or database made them."""
    present = {e.name for e in entries}
    wanted = [manifest_name(b.name) for b in backups if manifest_name(b.name) in present]
    texts = await storage.read_many(wanted) if wanted else {}
    engine, database = settings.engine_key, settings.database_label
    own = []
    for b in backups:
        key = manifest_name(b.name)
        if settings.trusted_keys is not None:
            problem = await _untrusted(settings, storage, b, texts.get(key), signature_name(key) in present)
            if problem is not None:
                log.warning("retention leaves %s alone, and does not count it: it is untrusted (%s)", b.name, problem)
                continue
        if key not in present:
            own.append(b)  # a backup from before manifests existed: the template is all there is to go by
            continue
        try:
            m = Manifest.from_json(texts[key])
        except (KeyError, ValueError):
            log.warning("retention leaves %s alone: its manifest cannot be read", b.name)
            continue
        if not same_family(m.engine, engine) or m.database != database:
            log.info(
                "retention leaves %s alone: its manifest says %s database %r, this job is %s %r",
                b.name,
                m.engine,
                m.database,
                engine,
                database,
            )
            continue
        own.append(b)
    return own


async def _untrusted(
    settings: Settings, storage: Storage, backup: Backup, text: bytes | None, signed: bool
) -> str | None:
    """Why *backup* (its manifest's bytes *text*) is not signed by a trusted key for this job, or None:
    the listing's check (`dbstash.restoring.listing.check_signature()`)."""
    from dbstash.restoring.listing import BackupInfo, check_signature  # noqa: PLC0415 - listing imports config, as this does

    try:
        manifest = Manifest.from_json(text) if text is not None else None
    except ValueError as exc:
        return str(exc)
    problem = None if text is not None else "no manifest"
    info = BackupInfo(
        backup.name, backup.size, backup.taken_at, True, manifest, problem, signed=signed, manifest_bytes=text
    )
    return (await check_signature(storage, info, settings)).untrusted


async def apply_plan(plan: RetentionPlan, storage: Storage, mode: str = "stream") -> list[str]:
    """Delete what *plan* says, logging each with its reason. Folders (directory mode) are purged."""
    return list((await apply_retention(plan, storage, mode)).deleted)


@dataclass(frozen=True, slots=True)
class Applied:
    """What `apply_retention()` did: the backups it deleted, and those the remote refused to
    delete (``retained (locked)``: Object Lock, or a credential without the right to delete)."""

    deleted: tuple[str, ...]
    locked: tuple[str, ...] = ()


async def apply_retention(plan: RetentionPlan, storage: Storage, mode: str = "stream") -> Applied:
    """`apply_plan()`, reporting what the remote refused to delete as ``retained (locked)`` (a
    warning, not an error): the backups still listed after a refused deletion. Any other storage
    error is raised."""
    doomed = plan.delete
    if not doomed:
        return Applied(())
    try:
        if mode == "directory":
            for b, _ in doomed:
                await storage.purge(b.name)
            await storage.delete_many([n for b, _ in doomed for n in _sidecars(b.name)])
        else:
            # each backup with its manifest and signature (missing ones of older backups are not an error)
            await storage.delete_many([n for b, _ in doomed for n in (b.name, *_sidecars(b.name))])
        locked: set[str] = set()
    except StorageError as exc:
        if not delete_refused(exc):
            raise
        present = {e.name for e in await storage.list()}
        locked = {b.name for b, _ in doomed if b.name in present}
        for name in sorted(locked):
            log.warning(
                "retention could not delete %s: retained (locked): the remote refused (%s)",
                name,
                exc.summary,
                extra={"locked": name},
            )
    for b, reason in doomed:
        if b.name not in locked:
            log.info("retention removed %s (%s)", b.name, reason, extra={"removed": b.name})
    return Applied(
        tuple(b.name for b, _ in doomed if b.name not in locked), tuple(b.name for b, _ in doomed if b.name in locked)
    )


def _sidecars(name: str) -> tuple[str, str]:
    """The manifest and signature of the backup *name*: deleted after it, so none is left without the other."""
    return manifest_name(name), signature_name(manifest_name(name))


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What [`prune()`][dbstash.prune] decided and did. With ``dry_run`` nothing was deleted."""

    remote: str
    plan: RetentionPlan
    deleted: tuple[str, ...]
    dry_run: bool
    #: planned for deletion, but the remote refused (Object Lock, no delete right): retained (locked)
    locked: tuple[str, ...] = ()
    #: with several destinations: each one's result (the fields above are the first destination's)
    copies: tuple[PruneResult, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data."""
        return {
            "remote": self.remote,
            "dry_run": self.dry_run,
            "deleted": list(self.deleted),
            "locked": list(self.locked),
            "backups": self.plan.to_dict(),
            "copies": [c.to_dict() for c in self.copies],
        }


async def aprune(
    settings: Settings, *, dry_run: bool = False, storage: Storage | None = None, now: datetime | None = None
) -> PruneResult:
    """Apply this job's retention policy to its remote folder now (the async twin of [`prune()`][dbstash.prune]).

    Lists the folder once, keeps only this job's complete backups (template matches, partial uploads
    never, manifests naming this job), plans with [`RetentionPolicy.plan()`][dbstash.RetentionPolicy.plan], and
    deletes unless
    *dry_run*, along with partial uploads that aborted runs of this job left behind
    (`stale_partials()`). The newest backup is never deleted. Raises
    [`StorageError`][dbstash.StorageError] if the remote cannot be listed.
    """
    if storage is None and settings.extra_remotes:
        return await _prune_each(settings, dry_run=dry_run, now=now)
    async with job_storage(settings, storage) as store:
        if settings.databases is not None:
            return await _prune_many(settings, store, dry_run=dry_run, now=now)
        plan = await plan_retention(settings, store, now=now)
        applied = Applied(()) if dry_run else await apply_retention(plan, store, settings.mode)
        if not dry_run:
            await remove_stale_partials(settings, settings.template(), store, now or datetime.now(UTC))
            await _cleanup_uploads(store)
        return PruneResult(settings.remote, plan, applied.deleted, dry_run, applied.locked)


async def _prune_each(settings: Settings, *, dry_run: bool, now: datetime | None) -> PruneResult:
    """Several destinations: each one pruned on its own with the job's policy; a destination that
    cannot be reached does not stop the others (StorageError naming it afterwards)."""
    results: list[PruneResult] = []
    failed: list[str] = []
    for remote in settings.remotes:
        try:
            results.append(await aprune(settings.for_remote(remote), dry_run=dry_run, now=now))
        except StorageError as exc:
            log.error("pruning %s failed: %s", remote, exc)
            failed.append(f"{remote}: {exc}")
    if failed:
        raise StorageError(
            "pruning failed on " + "; ".join(failed) + (" (the other destinations were pruned)" if results else "")
        )
    first = results[0]
    return PruneResult(first.remote, first.plan, first.deleted, dry_run, first.locked, copies=tuple(results))


async def _cleanup_uploads(store: Storage) -> None:
    """On S3, the multipart uploads a killed rclone never completed (older than a day): best effort."""
    from dbstash.storage.rclone_cli import RcloneCliStorage  # noqa: PLC0415

    if isinstance(store, RcloneCliStorage) and store.backend_type() == "s3":
        try:
            await store.cleanup_uploads()
            log.info("removed unfinished multipart uploads older than 24h (rclone backend cleanup)")
        except Exception as exc:
            log.warning("could not clean up unfinished multipart uploads: %s", exc)


async def _prune_many(settings: Settings, store: Storage, *, dry_run: bool, now: datetime | None) -> PruneResult:
    """A multi-database job: each database's series (and the globals') on its own, as its runs do it.

    Series are found in the listing (a database dropped from the server still has its backups
    pruned, its newest always kept); the decisions are reported together, series by series.
    """
    from dbstash.jobs.databases import GLOBALS_LABEL  # noqa: PLC0415
    from dbstash.restoring.listing import job_infos  # noqa: PLC0415 - listing imports config; keeps this module light

    entries = await store.list()
    series = sorted({i.database for i in job_infos(settings, entries) if i.database is not None})
    decisions: list[Decision] = []
    deleted: list[str] = []
    locked: list[str] = []
    for name in series:
        part = settings.for_globals() if name == GLOBALS_LABEL else settings.for_database(name)
        plan = await plan_retention(part, store, now=now, entries=entries)
        decisions += plan.decisions
        if not dry_run:
            applied = await apply_retention(plan, store, part.mode)
            deleted += applied.deleted
            locked += applied.locked
            await remove_stale_partials(part, part.template(), store, now or datetime.now(UTC), entries)
    if not dry_run:
        await _cleanup_uploads(store)
    return PruneResult(settings.remote, RetentionPlan(tuple(decisions)), tuple(deleted), dry_run, tuple(locked))


prune = blocking(
    aprune,
    """Apply this job's retention policy to its remote folder (blocking). See [`aprune()`][dbstash.aprune].

    Examples:
        >>> s = dbstash.Settings.create("sqlite:///srv/app.db", remote="/srv/backups",
        ...                             retention_keep={"daily": 7, "weekly": 4})  # doctest: +SKIP
        >>> for row in dbstash.prune(s, dry_run=True).plan.to_dict():  # doctest: +SKIP
        ...     print(row["action"], row["name"], row["reasons"])
    """,
)
