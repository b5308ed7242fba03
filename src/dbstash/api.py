"""The public entry points: ``backup()`` and ``abackup()``. The CLI and the entrypoint call these too."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

import anyio

from dbstash._version import __version__
from dbstash.config import Settings
from dbstash.engines import same_family
from dbstash.engines.base import DumpCommand, Engine
from dbstash.errors import BackupTimeout, ConfigError, DbstashError, StorageError, UploadFailed
from dbstash.hooks import Hook, HookFailed
from dbstash.logs import get_logger, log_context
from dbstash.manifest import Manifest, manifest_name
from dbstash.modes import dump_to_folder, folder_stats, tar_command, upload_folder, work_folder
from dbstash.naming import NameTemplate, is_partial, partial_target
from dbstash.notify import Notifier, RunEvent, notify
from dbstash.pipeline import Progress, TransferStats, transfer
from dbstash.redact import GLOBAL_REDACTOR
from dbstash.retention import Backup, RetentionPlan
from dbstash.storage.base import RemoteEntry, Storage, remote_name, taken
from dbstash.storage.rclone_cli import RcloneCliStorage, RcloneOptions
from dbstash.storage.rclone_rc import RcloneRcStorage, RcOptions

log = get_logger("dbstash")


@dataclass(frozen=True, slots=True)
class BackupResult:
    """A committed backup: where it is and what it holds.

    Attributes:
        remote_path: the full rclone path of the backup (``s3:bucket/pg/app-2026-02-07-020000.sql``).
        name: the file name inside the remote folder.
        size: bytes stored on the remote (confirmed by the remote before commit).
        sha256: hex digest of exactly the stored bytes.
        duration: seconds from start to commit.
        deleted: names removed by retention after this backup.
        retention_error: why retention could not run, if it failed (the backup itself stands).
        dump_size: bytes the dump tool wrote (more than *size* when dbstash compressed the stream).
        compression: in-stream compression by dbstash (``zstd:3``), or None.

    Every committed backup has its manifest (``NAME.dbstash-manifest.json``): a run whose manifest
    could not be stored fails instead.
    """

    remote_path: str
    name: str
    size: int
    sha256: str
    duration: float
    started_at: datetime
    finished_at: datetime
    engine: str
    database: str
    backup_id: str
    tool_version: str | None
    dbstash_version: str
    deleted: tuple[str, ...] = ()
    retention_error: str | None = None
    dump_size: int | None = None
    compression: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data (timestamps as ISO 8601 UTC)."""
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat()
        data["deleted"] = list(self.deleted)
        return data


@contextlib.asynccontextmanager
async def _job_storage(settings: Settings, storage: Storage | None) -> AsyncIterator[Storage]:
    """The caller's storage as given, or this job's rclone storage, released when the block ends.

    RcloneCliStorage opens itself on first use, so an error there (no rclone) surfaces inside the
    caller's own error handling.
    """
    if storage is not None:
        yield storage
        return
    store: RcloneCliStorage | RcloneRcStorage
    if settings.rc is not None:
        store = RcloneRcStorage(settings.remote, settings.rc, redactor=GLOBAL_REDACTOR)
    else:
        store = RcloneCliStorage(settings.remote, settings.rclone, redactor=GLOBAL_REDACTOR)
    try:
        yield store
    finally:
        store.close()


async def preflight(settings: Settings, *, remote_variable: str = "RCLONE_REMOTE") -> None:
    """Start-up checks that need rclone or the network, so bad input fails before anything is dumped.

    With the CLI transport: the remote that *settings* name is defined in rclone's config. With the
    rc transport: rcd answers and takes the credentials.

    Raises:
        ConfigError: the remote is not defined (names *remote_variable*), rcd refused the
            credentials (names ``RCLONE_RC_USER``) or the URL is not an rcd.
        StorageError: rcd cannot be reached.
        ToolNotFound: rclone is not installed.
    """
    async with _job_storage(settings, None) as store:
        if isinstance(store, RcloneRcStorage):
            await store.open()
            log.info("using the rclone daemon at %s (rclone %s)", store.options.display_url(), store.version)
            return
        assert isinstance(store, RcloneCliStorage)
        name = remote_name(settings.remote)
        if name is None:
            return
        defined = await store.remotes()
        if name not in defined:
            raise ConfigError(
                remote_variable,
                f"a remote defined in the rclone config (no remote called {name!r}; defined: "
                + (", ".join(defined) or "none")
                + "), or a local path",
                settings.remote,
            )


async def abackup(
    uri: str | None = None,
    *,
    remote: str | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
    storage: Storage | None = None,
    password: str | None = None,
    password_file: str | os.PathLike[str] | None = None,
    name_template: str | None = None,
    compress: bool | str = False,
    extension: str | None = None,
    dump_extra_args: Sequence[str] | str = (),
    retention_max_files: int = 0,
    retention_max_days: float = 0,
    retention_keep: Mapping[str, int] | None = None,
    rclone: RcloneOptions | None = None,
    rc: RcOptions | None = None,
    timeout: float | None = None,
    tz: str = "UTC",
    notifiers: Sequence[Notifier] | None = None,
    pre_hook: Hook | None = None,
    post_hook: Hook | None = None,
) -> BackupResult:
    """Back up one database into an rclone remote; the async twin of :func:`backup`.

    Example:
        >>> result = await dbstash.abackup("sqlite:///srv/app.db", remote="/srv/backups")  # doctest: +SKIP
        >>> result.remote_path, result.size, result.sha256  # doctest: +SKIP

    *compress*: ``True`` for the dump tool's native compression (pg custom format, mongodump
    ``--gzip``), ``"zstd"`` / ``"gzip"`` (or ``"zstd:19"``) for compression by dbstash on the stream,
    any engine (appends ``.zst`` / ``.gz``). *rc*: use a running ``rclone rcd`` (:class:`RcOptions`)
    instead of starting rclone for each step; *rclone* options then do not apply.

    Raises:
        ConfigError: a parameter is malformed (nothing was dumped or uploaded).
        DumpFailed, UploadFailed, BackupTimeout: the run failed; nothing remains under the final name.
        ToolNotFound: the dump tool or rclone is missing or too old.
    """
    if settings is None:
        if remote is None:
            raise TypeError("backup() needs remote= (an rclone remote path) or settings=")
        kwargs: dict[str, object] = {
            "remote": remote,
            "password": password,
            "password_file": password_file,
            "compress": compress,
            "extension": extension,
            "dump_extra_args": dump_extra_args,
            "retention_max_files": retention_max_files,
            "retention_max_days": retention_max_days,
            "retention_keep": retention_keep,
            "rclone": rclone,
            "rc": rc,
            "timeout": timeout,
            "tz": tz,
        }
        if name_template is not None:
            kwargs["name_template"] = name_template
        if uri is None:
            raise TypeError("backup() needs a connection uri (or settings=)")
        settings = Settings.create(uri, **kwargs)  # type: ignore[arg-type]  # keywords are Settings.create's
    return await run_backup(
        settings, progress=progress, storage=storage, notifiers=notifiers, pre_hook=pre_hook, post_hook=post_hook
    )


def backup(
    uri: str | None = None,
    *,
    remote: str | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
    storage: Storage | None = None,
    password: str | None = None,
    password_file: str | os.PathLike[str] | None = None,
    name_template: str | None = None,
    compress: bool | str = False,
    extension: str | None = None,
    dump_extra_args: Sequence[str] | str = (),
    retention_max_files: int = 0,
    retention_max_days: float = 0,
    retention_keep: Mapping[str, int] | None = None,
    rclone: RcloneOptions | None = None,
    rc: RcOptions | None = None,
    timeout: float | None = None,
    tz: str = "UTC",
    notifiers: Sequence[Notifier] | None = None,
    pre_hook: Hook | None = None,
    post_hook: Hook | None = None,
) -> BackupResult:
    """Back up one database into an rclone remote and return the committed backup.

    Blocking; runs its own event loop. Inside async code use ``await dbstash.abackup(...)``:
    calling this from a running event loop raises RuntimeError instead of nesting loops.

    Example:
        >>> import dbstash
        >>> r = dbstash.backup("postgresql://app@db/app", remote="s3:bucket/pg",
        ...                    password_file="/run/secrets/pg")  # doctest: +SKIP
        >>> r.remote_path, r.size, r.sha256, r.duration  # doctest: +SKIP
    """
    try:
        anyio.get_current_task()
    except RuntimeError:  # no event loop in this thread: the normal case
        pass
    else:
        raise RuntimeError(
            "dbstash.backup() was called from inside a running event loop; use 'await dbstash.abackup(...)'"
        )
    return anyio.run(
        lambda: abackup(
            uri,
            remote=remote,
            settings=settings,
            progress=progress,
            storage=storage,
            password=password,
            password_file=password_file,
            name_template=name_template,
            compress=compress,
            extension=extension,
            dump_extra_args=dump_extra_args,
            retention_max_files=retention_max_files,
            retention_max_days=retention_max_days,
            retention_keep=retention_keep,
            rclone=rclone,
            rc=rc,
            timeout=timeout,
            tz=tz,
            notifiers=notifiers,
            pre_hook=pre_hook,
            post_hook=post_hook,
        )
    )


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
    """This job's partial uploads among *entries* that no run can still be writing (see :data:`STALE_PARTIAL_AGE`)."""
    limit = max(STALE_PARTIAL_AGE, timeout or 0)
    found = []
    for e in entries:
        target = partial_target(e.name)
        if target is not None and template.matches(target) and (now - e.modtime).total_seconds() > limit:
            found.append(e.name)
    return found


async def _remove_stale_partials(settings: Settings, template: NameTemplate, storage: Storage, now: datetime) -> None:
    """Delete leftovers of earlier aborted runs of this job; a failure is logged, never fatal."""
    try:
        stale = stale_partials(await storage.list(), template, now, settings.timeout)
        if stale:
            await storage.delete_many(stale)
            log.info("removed %d stale partial upload(s) of earlier runs", len(stale), extra={"removed": stale})
    except Exception as exc:
        log.warning("could not remove stale partial uploads: %s", exc)


async def plan_retention(
    settings: Settings, storage: Storage, *, now: datetime | None = None, ensure: Backup | None = None
) -> RetentionPlan:
    """List the remote once and plan retention for this job (no deletion).

    Only this job's backups take part: names the template matches, and, where a backup has a
    manifest, only if the manifest names this job's engine and database (another job whose names
    happen to match is never touched). A backup whose manifest cannot be read takes no part either.
    *ensure* adds a backup the listing may not show yet (eventually consistent backends), so the
    one just written always counts as the newest.
    """
    template = settings.template()
    entries = await storage.list()
    backups = await _own_backups(settings, storage, entries, job_backups(entries, template, settings))
    if ensure is not None and all(b.name != ensure.name for b in backups):
        backups.append(ensure)
    return settings.retention.plan(backups, now or datetime.now(UTC))


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


async def apply_plan(plan: RetentionPlan, storage: Storage, mode: str = "stream") -> list[str]:
    """Delete what *plan* says, logging each with its reason. Folders (directory mode) are purged."""
    doomed = plan.delete
    if mode == "directory":
        for b, _ in doomed:
            await storage.purge(b.name)
        await storage.delete_many([manifest_name(b.name) for b, _ in doomed])
    else:
        # each backup with its manifest (missing manifests of older backups are not an error)
        await storage.delete_many([n for b, _ in doomed for n in (b.name, manifest_name(b.name))])
    for b, reason in doomed:
        log.info("retention removed %s (%s)", b.name, reason, extra={"removed": b.name})
    return [b.name for b, _ in doomed]


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What :func:`prune` decided and did. With ``dry_run`` nothing was deleted."""

    remote: str
    plan: RetentionPlan
    deleted: tuple[str, ...]
    dry_run: bool

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data."""
        return {
            "remote": self.remote,
            "dry_run": self.dry_run,
            "deleted": list(self.deleted),
            "backups": self.plan.to_dict(),
        }


async def aprune(
    settings: Settings, *, dry_run: bool = False, storage: Storage | None = None, now: datetime | None = None
) -> PruneResult:
    """Apply this job's retention policy to its remote folder now (the async twin of :func:`prune`).

    Lists the folder once, keeps only this job's complete backups (template matches, partial uploads
    never, manifests naming this job), plans with :meth:`RetentionPolicy.plan`, and deletes unless
    *dry_run*, along with partial uploads that aborted runs of this job left behind
    (:func:`stale_partials`). The newest backup is never deleted. Raises
    :class:`~dbstash.errors.StorageError` if the remote cannot be listed.
    """
    async with _job_storage(settings, storage) as store:
        plan = await plan_retention(settings, store, now=now)
        deleted = [] if dry_run else await apply_plan(plan, store, settings.mode)
        if not dry_run:
            await _remove_stale_partials(settings, settings.template(), store, now or datetime.now(UTC))
        return PruneResult(settings.remote, plan, tuple(deleted), dry_run)


def prune(settings: Settings, *, dry_run: bool = False, now: datetime | None = None) -> PruneResult:
    """Apply this job's retention policy to its remote folder (blocking). See :func:`aprune`.

    Example:
        >>> s = dbstash.Settings.create("sqlite:///srv/app.db", remote="/srv/backups",
        ...                             retention_keep={"daily": 7, "weekly": 4})  # doctest: +SKIP
        >>> for row in dbstash.prune(s, dry_run=True).plan.to_dict():  # doctest: +SKIP
        ...     print(row["action"], row["name"], row["reasons"])
    """
    return anyio.run(lambda: aprune(settings, dry_run=dry_run, now=now))


async def dry_run(settings: Settings, *, storage: Storage | None = None) -> dict[str, object]:
    """What a run would do, with secrets masked — without contacting the database or changing the remote.

    Logs and returns the resolved settings, the exact dump argv, the rclone commands and the
    retention plan the run would carry out. The plan needs one read-only listing of the remote; if
    that fails the plan is reported as unknown (a dry run still succeeds).
    """
    engine = settings.engine()
    template = settings.template()
    now = datetime.now(settings.zone)
    name = template.render(now, uuid="xxxxxxxx")
    command = engine.preview_command(settings.connection, settings.dump_options)
    async with _job_storage(settings, storage) as store:
        return await _dry_run(settings, store, command, name, now)


async def _dry_run(
    settings: Settings, store: Storage, command: DumpCommand, name: str, now: datetime
) -> dict[str, object]:
    data: dict[str, object] = {
        "settings": settings.redacted(),
        "dump_argv": list(command.argv),
        "dump_tool": command.tool_version,
        "backup_name": name,
        "remote_path": store.path(name),
        "stream_compression": str(settings.stream_compress) if settings.stream_compress else None,
        "warnings": settings.warnings(),
    }
    for warning in data["warnings"]:  # type: ignore[attr-defined]
        log.warning("dry run: %s", warning)
    partial = f"{name}.<id>.dbstash-partial"
    if isinstance(store, RcloneCliStorage):
        data["upload_argv"] = store.argv("rcat", store.path(partial))
        data["commit_argv"] = store.argv("moveto", store.path(partial), store.path(name))
    elif isinstance(store, RcloneRcStorage):
        url = store.options.display_url()
        data["upload_rc"] = f"POST {url}/operations/uploadfile fs={store.remote} file={partial}"
        data["commit_rc"] = f"POST {url}/operations/stat, then operations/movefile {partial} -> {name}"
    log.info("dry run: configuration", extra={"settings": data["settings"]})
    log.info("dry run: dump command: %s", command.display(), extra={"dump_argv": data["dump_argv"]})
    log.info(
        "dry run: would upload to %s",
        data["remote_path"],
        extra={"upload_argv": data.get("upload_argv"), "upload_rc": data.get("upload_rc")},
    )
    if settings.retention.enabled:
        try:
            plan = await plan_retention(settings, store, ensure=Backup(name, now.astimezone(UTC), -1))
            data["retention"] = plan.to_dict()
            for d in plan.decisions:
                log.info("dry run: retention would %s %s (%s)", "keep" if d.keep else "delete", d.backup.name, d.reason)
        except DbstashError as exc:
            data["retention"] = None
            log.warning("dry run: cannot list the remote to plan retention: %s", exc)
    else:
        data["retention"] = []
        log.info("dry run: no retention variable is set: nothing would be deleted")
    return data


async def run_backup(
    settings: Settings,
    *,
    progress: Progress | None = None,
    storage: Storage | None = None,
    notifiers: Sequence[Notifier] | None = None,
    pre_hook: Hook | None = None,
    post_hook: Hook | None = None,
) -> BackupResult:
    """Run one backup job described by *settings*: hooks, dump, upload, commit, retention, notifications.

    *notifiers* and the hooks default to what *settings* configure (``NOTIFY_*``, ``HOOK_*``); pass
    your own objects (or ``[]``) from Python. A failing notifier or post-hook is logged and never
    changes the outcome; a pre-hook that exits non-zero aborts the run before anything is dumped.
    """
    engine = settings.engine()
    template = settings.template()
    backup_id = secrets.token_hex(6)
    database = settings.database_label
    if notifiers is None:
        notifiers = settings.notifiers()
    if pre_hook is None and post_hook is None:
        pre_hook, post_hook = settings.hooks()
    started = datetime.now(settings.zone)
    name = template.render(started, uuid=backup_id[:8])
    with log_context(engine=engine.key, database=database, backup_id=backup_id):
        async with _job_storage(settings, storage) as store:
            remote_path = store.path(name)
            start = RunEvent(
                "start", engine=engine.key, database=database, backup_id=backup_id, remote_path=remote_path
            )
            await notify(notifiers, start)
            result: BackupResult | None = None
            error: BaseException | None = None
            try:
                if pre_hook is not None:
                    status = await pre_hook.run(start)
                    if status != 0:
                        raise HookFailed(f"HOOK_PRE_BACKUP exited with status {status}: the backup was not started")
                result = await _run(
                    settings,
                    engine,
                    template,
                    store,
                    backup_id=backup_id,
                    database=database,
                    progress=progress,
                    started=started,
                    name=name,
                )
                return result
            except DbstashError as exc:
                error = exc
                # logged here, inside the job's context, so the record carries engine/database/backup_id
                log.error("backup failed: %s", exc, extra={"error_type": type(exc).__name__})
                raise
            except BaseException as exc:  # cancellation (a signal) or a bug: reported as a failure all the same
                error = exc
                raise
            finally:
                await _after(result, error, start, post_hook, notifiers)


async def _after(
    result: BackupResult | None,
    error: BaseException | None,
    start: RunEvent,
    post_hook: Hook | None,
    notifiers: Sequence[Notifier],
) -> None:
    """Post-hook, then notifications. Bounded and shielded: they run even when the run was cancelled."""
    if result is not None:
        event = replace(start, stage="success", size=result.size, sha256=result.sha256, duration=result.duration)
    elif isinstance(error, DbstashError):
        event = replace(start, stage="failure", error=GLOBAL_REDACTOR(str(error)), error_type=type(error).__name__)
    else:
        stopped = "the backup was stopped (signal or cancellation)"
        event = replace(start, stage="failure", error=stopped, error_type="BackupCancelled")
    cancelled = error is not None and not isinstance(error, Exception)
    with anyio.CancelScope(shield=True), anyio.move_on_after(15 if cancelled else 600):
        if post_hook is not None:
            status = await post_hook.run(event)
            if status != 0:
                log.warning("HOOK_POST_BACKUP exited with status %s (the backup's outcome is unchanged)", status)
        await notify(notifiers, event, limit=10 if cancelled else 120)


class _ManifestWriter:
    """Writes the manifest of the backup being committed, before it appears under its name."""

    def __init__(
        self, settings: Settings, engine: Engine, storage: Storage, *, backup_id: str, database: str, started: datetime
    ) -> None:
        self.settings, self.engine, self.storage = settings, engine, storage
        self.backup_id, self.database, self.started = backup_id, database, started
        self.files: dict[str, tuple[int, str]] | None = None
        self.written: Manifest | None = None

    async def __call__(self, name: str, stats: TransferStats, command: DumpCommand) -> None:
        s = self.settings
        manifest = Manifest(
            name=name,
            size=stats.size,
            sha256=stats.sha256,
            engine=self.engine.key,
            database=self.database,
            mode=s.mode,
            compression=str(s.stream_compress) if s.stream_compress else None,
            native_compression=s.compress and self.engine.native_compression(s.connection),
            tool_version=command.tool_version,
            dbstash_version=__version__,
            started_at=self.started.astimezone(UTC).isoformat(),
            finished_at=datetime.now(UTC).isoformat(),
            dump_size=stats.dump_size,
            backup_id=self.backup_id,
            files={p: [size, digest] for p, (size, digest) in self.files.items()} if self.files is not None else None,
        )
        try:
            await self.storage.write_verified(manifest_name(name), manifest.to_json())
        except StorageError as exc:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10), contextlib.suppress(Exception):
                await self.storage.delete(manifest_name(name))
            raise UploadFailed(
                f"{exc}: the backup was not committed (a backup without its manifest is not one)"
            ) from None
        self.written = manifest


async def _run_multi_file(
    settings: Settings,
    engine: Engine,
    storage: Storage,
    name: str,
    progress: Progress | None,
    *,
    manifest: _ManifestWriter,
    alternative: str | None,
) -> tuple[TransferStats, DumpCommand, str]:
    """Directory and tar modes: dump into a private temp folder, then copy it (directory) or stream a tar."""
    try:
        with anyio.fail_after(settings.timeout):
            async with work_folder(settings) as folder:
                command = await dump_to_folder(settings, engine, folder)
                found = await anyio.to_thread.run_sync(folder_stats, folder)
                log.info("dump written to the work folder", extra={"files": len(found.files), "size": found.size})
                manifest.files = found.files
                if settings.mode == "directory":
                    if alternative is not None and taken(await storage.list(), name):
                        log.warning("%s is already taken (another run of this job?): stored as %s", name, alternative)
                        name = alternative
                    stats = TransferStats(found.size, found.sha256, b"", dump_size=found.size)
                    await upload_folder(storage, folder, name, found)
                    try:  # the manifest is the folder's completion marker: no manifest, no backup
                        await manifest(name, stats, command)
                    except BaseException:
                        with anyio.CancelScope(shield=True), anyio.move_on_after(120), contextlib.suppress(Exception):
                            await storage.purge(name)
                        raise
                    return stats, command, name
                done = await transfer(
                    engine,
                    tar_command(folder),
                    storage,
                    name,
                    redactor=GLOBAL_REDACTOR,
                    progress=progress,
                    compression=settings.stream_compress,
                    check_tail=False,
                    alternative=alternative,
                    before_publish=lambda final, stats, _: manifest(final, stats, command),
                    stall_timeout=settings.stall_timeout,
                )
                return TransferStats(done.stats.size, done.stats.sha256, b"", found.size), command, done.name
    except TimeoutError:
        raise BackupTimeout(f"the backup exceeded its timeout of {settings.timeout:g}s and was aborted") from None


async def _run(
    settings: Settings,
    engine: Engine,
    template: NameTemplate,
    storage: Storage,
    *,
    backup_id: str,
    database: str,
    progress: Progress | None,
    started: datetime,
    name: str,
) -> BackupResult:
    t0 = time.monotonic()
    options = settings.dump_options
    for warning in settings.warnings():
        log.warning(warning)
    if engine.key == "redis":
        log.info("the Redis RDB holds the whole instance (every database), whatever the URI's /N says")
    log.info("backup started", extra={"remote_path": storage.path(name), "source": settings.connection.display_uri()})

    async def prepare() -> DumpCommand:
        command = await engine.dump_command(settings.connection, options)
        log.debug("dump command: %s", command.display())
        return command

    writer = _ManifestWriter(settings, engine, storage, backup_id=backup_id, database=database, started=started)
    alternative = template.alternative(name, backup_id)
    if settings.mode == "stream":
        done = await transfer(
            engine,
            prepare,
            storage,
            name,
            redactor=GLOBAL_REDACTOR,
            timeout=settings.timeout,
            progress=progress,
            compression=settings.stream_compress,
            alternative=alternative,
            before_publish=writer,
            stall_timeout=settings.stall_timeout,
        )
        stats, command, name = done.stats, done.command, done.name
    else:
        stats, command, name = await _run_multi_file(
            settings, engine, storage, name, progress, manifest=writer, alternative=alternative
        )
    remote_path = storage.path(name)
    finished = datetime.now(UTC)
    duration = time.monotonic() - t0
    await _remove_stale_partials(settings, template, storage, finished)
    deleted: list[str] = []
    retention_error = None
    if settings.retention.enabled:
        try:
            plan = await plan_retention(
                settings, storage, now=finished, ensure=Backup(name, started.astimezone(UTC), stats.size)
            )
            deleted = await apply_plan(plan, storage, settings.mode)
        except Exception as exc:
            retention_error = str(exc)
            log.error("retention failed (the new backup is complete): %s", exc)
    result = BackupResult(
        remote_path=remote_path,
        name=name,
        size=stats.size,
        sha256=stats.sha256,
        duration=round(duration, 3),
        started_at=started.astimezone(UTC),
        finished_at=finished,
        engine=engine.key,
        database=database,
        backup_id=backup_id,
        tool_version=command.tool_version,
        dbstash_version=__version__,
        deleted=tuple(deleted),
        retention_error=retention_error,
        dump_size=stats.dump_size,
        compression=str(settings.stream_compress) if settings.stream_compress else None,
    )
    log.info(
        "backup complete",
        extra={
            "remote_path": remote_path,
            "size": stats.size,
            "dump_size": stats.dump_size,
            "sha256": stats.sha256,
            "duration": result.duration,
            "deleted": deleted,
        },
    )
    return result
