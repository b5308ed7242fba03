"""One backup job around one Pipeline: hooks, notifications, the manifest, retention, the result.

(Over 400 lines on purpose: one run from its envelope to its result, the manifest and retention included.)
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TypeVar

import anyio

from dbstash._version import __version__
from dbstash.engines.base import DumpCommand, Engine
from dbstash.errors import BackupTimeout, ConfigError, DbstashError
from dbstash.jobs.hooks import Hook, HookFailed
from dbstash.jobs.manifest import Manifest, manifest_name, signature_name
from dbstash.jobs.modes import FolderStats, dump_to_folder, folder_stats, tar_command, upload_folder, work_folder
from dbstash.jobs.naming import NameTemplate
from dbstash.jobs.prune import apply_retention, plan_retention, remove_stale_partials
from dbstash.jobs.remote import job_storages
from dbstash.jobs.retention import Backup
from dbstash.logs import get_logger, log_context
from dbstash.notify import Notifier, RunEvent, notify
from dbstash.parts.fanout import FANOUT_STALL_GRACE, DestinationsFailed, FanOut
from dbstash.parts.pipeline import Pipeline, PipelineResult, Progress
from dbstash.parts.sink import Committed, Copy, Sink
from dbstash.parts.source import CommandSource, DumpSource
from dbstash.parts.transforms import Compress, Progress as ProgressTransform, Transform
from dbstash.redact import GLOBAL_REDACTOR
from dbstash.settings.config import Settings
from dbstash.storage.base import Storage, store_sidecars, taken

log = get_logger("dbstash")

R = TypeVar("R")


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
        locked: names retention meant to remove but the remote refused to delete (retained, locked).
        retention_error: why retention could not run, if it failed (the backup itself stands).
        dump_size: bytes the dump tool wrote (more than *size* when dbstash compressed the stream).
        compression: in-stream compression by dbstash (``zstd:3``), or None.
        encryption: ``age`` when the stored bytes are encrypted (size and sha256 are the ciphertext's).
        copies: with several destinations, what each one holds (the fields above are the first
            committed destination's; *deleted* and *locked* are summed up over all of them).

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
    locked: tuple[str, ...] = ()
    dump_size: int | None = None
    compression: str | None = None
    encryption: str | None = None
    copies: tuple[CopyResult, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data (timestamps as ISO 8601 UTC)."""
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat()
        data["deleted"] = list(self.deleted)
        data["copies"] = [asdict(c) for c in self.copies]
        return data


@dataclass(frozen=True, slots=True)
class CopyResult:
    """One destination of a run with several: whether it holds the backup, and what its retention did.

    *remote_path* and *name* are set when it committed; *error* says why it does not hold the backup.
    """

    remote: str
    committed: bool
    remote_path: str | None = None
    name: str | None = None
    error: str | None = None
    deleted: tuple[str, ...] = ()
    locked: tuple[str, ...] = ()
    retention_error: str | None = None


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
    if settings.databases is not None:
        raise ConfigError(
            "databases", "one database for run_backup()/backup(): a job of several databases runs with run_job()"
        )
    engine = settings.engine()
    template = settings.template()
    backup_id = secrets.token_hex(6)
    started = datetime.now(settings.zone)
    name = template.render(started, uuid=backup_id[:8])

    async def work(stores: Sequence[Storage]) -> BackupResult:
        return await run_one(
            settings,
            engine,
            template,
            stores,
            backup_id=backup_id,
            database=settings.database_label,
            progress=progress,
            started=started,
            name=name,
        )

    def succeeded(result: BackupResult, start: RunEvent) -> RunEvent:
        copies = "; ".join(
            f"{c.remote}: {'committed' if c.committed else f'FAILED ({c.error})'}" for c in result.copies
        )
        return replace(
            start,
            stage="success",
            size=result.size,
            sha256=result.sha256,
            duration=result.duration,
            detail=GLOBAL_REDACTOR(f"copies: {copies}") if copies else None,
        )

    return await enveloped(
        settings,
        Envelope(engine.key, settings.database_label, backup_id, storage, notifiers, pre_hook, post_hook),
        remote_path=lambda stores: stores[0].path(name),
        work=work,
        outcome=succeeded,
    )


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every run has around its work: who it is (engine, database, id), where it goes (*storage*:
    None for the one the settings describe), and who hears about it (None: what the settings configure)."""

    engine: str
    database: str
    backup_id: str
    storage: Storage | None = None
    notifiers: Sequence[Notifier] | None = None
    pre_hook: Hook | None = None
    post_hook: Hook | None = None


async def enveloped(
    settings: Settings,
    envelope: Envelope,
    *,
    remote_path: Callable[[Sequence[Storage]], str],
    work: Callable[[Sequence[Storage]], Awaitable[R]],
    outcome: Callable[[R, RunEvent], RunEvent],
) -> R:
    """The one job envelope, shared by the one-database and the multi-database job: the log context,
    the storage, the start notification, the pre-hook, *work*, then (shielded, bounded) the post-hook
    and one notification of the run's *outcome* event, or of its failure."""
    e = envelope
    notifiers, pre_hook, post_hook = run_parts(settings, e.notifiers, e.pre_hook, e.post_hook)
    with log_context(engine=e.engine, database=e.database, backup_id=e.backup_id):
        async with job_storages(settings, e.storage) as stores:
            start = RunEvent(
                "start", engine=e.engine, database=e.database, backup_id=e.backup_id, remote_path=remote_path(stores)
            )
            await notify(notifiers, start)
            event: RunEvent | None = None
            error: BaseException | None = None
            try:
                await run_pre_hook(pre_hook, start)
                result = await work(stores)
                event = outcome(result, start)
                return result
            except DbstashError as exc:
                error = exc
                # raised, not logged: the caller decides (the CLI and the entrypoint log it with this context)
                exc.context = {"engine": e.engine, "database": e.database, "backup_id": e.backup_id}
                log.debug("backup failed: %s", exc, extra={"error_type": type(exc).__name__})
                raise
            except BaseException as exc:  # cancellation (a signal) or a bug: reported as a failure all the same
                error = exc
                raise
            finally:
                await after_run(event, error, start, post_hook, notifiers)


def run_parts(
    settings: Settings, notifiers: Sequence[Notifier] | None, pre_hook: Hook | None, post_hook: Hook | None
) -> tuple[Sequence[Notifier], Hook | None, Hook | None]:
    """The notifiers and hooks of a run: those given from Python, else those *settings* configure."""
    if notifiers is None:
        notifiers = settings.notifiers()
    if pre_hook is None and post_hook is None:
        pre_hook, post_hook = settings.hooks()
    return notifiers, pre_hook, post_hook


async def run_pre_hook(pre_hook: Hook | None, start: RunEvent) -> None:
    """Run the pre-hook; a non-zero exit aborts the run before anything is dumped."""
    if pre_hook is not None:
        status = await pre_hook.run(start)
        if status != 0:
            raise HookFailed(f"HOOK_PRE_BACKUP exited with status {status}: the backup was not started")


#: Seconds for the post-hook and notifications of a cancelled (signalled) run, after its bounded abort.
CANCELLED_AFTER_BUDGET = 3.0


async def after_run(
    outcome: RunEvent | None,
    error: BaseException | None,
    start: RunEvent,
    post_hook: Hook | None,
    notifiers: Sequence[Notifier],
) -> None:
    """Post-hook, then notifications, once per run. Bounded and shielded: they run even when the run was
    cancelled. *outcome*: the event of a run that finished (None: it raised *error*)."""
    if outcome is not None:
        event = outcome
    elif isinstance(error, DbstashError):
        event = replace(start, stage="failure", error=GLOBAL_REDACTOR(str(error)), error_type=type(error).__name__)
    else:
        stopped = "the backup was stopped (signal or cancellation)"
        event = replace(start, stage="failure", error=stopped, error_type="BackupCancelled")
    cancelled = error is not None and not isinstance(error, Exception)
    # after a SIGTERM the abort took up to 5 s: the rest must fit in Docker's 10 s stop grace
    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCELLED_AFTER_BUDGET if cancelled else 600):
        if post_hook is not None:
            status = await post_hook.run(event)
            if status != 0:
                log.warning("HOOK_POST_BACKUP exited with status %s (the backup's outcome is unchanged)", status)
        await notify(notifiers, event, limit=CANCELLED_AFTER_BUDGET if cancelled else 120)


class _ManifestMaker:
    """Makes the manifest (and signature) of the backup being committed: what the upload stores beside it."""

    def __init__(self, settings: Settings, engine: Engine, *, backup_id: str, database: str, started: datetime) -> None:
        self.settings, self.engine = settings, engine
        self.backup_id, self.database, self.started = backup_id, database, started
        self.files: dict[str, tuple[int, str]] | None = None
        self.written: Manifest | None = None
        #: when the bytes were all confirmed: the first destination's commit (every copy's manifest says the same)
        self.finished: str | None = None

    async def __call__(self, name: str, stats: PipelineResult, command: DumpCommand | None) -> dict[str, bytes]:
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
            tool_version=command.tool_version if command is not None else None,
            dbstash_version=__version__,
            started_at=self.started.astimezone(UTC).isoformat(),
            finished_at=self.finished or datetime.now(UTC).isoformat(),
            dump_size=stats.source_size,
            backup_id=self.backup_id,
            files={p: [size, digest] for p, (size, digest) in self.files.items()} if self.files is not None else None,
            encryption={"kind": "age", "recipients": list(s.encryption.fingerprints())}
            if s.encryption is not None and s.mode != "directory"
            else None,
            series=s.template().series,
            signed_by=s.signing_key.fingerprint if s.signing_key is not None else None,
        )
        self.finished = manifest.finished_at
        text = manifest.to_json()
        written = {manifest_name(name): text}
        if s.signing_key is not None:  # stored with the manifest, both before the backup is visible
            written[signature_name(manifest_name(name))] = s.signing_key.sign(text)
        self.written = manifest
        return written


def _transforms(settings: Settings, progress: Progress | None) -> list[Transform]:
    found: list[Transform] = []
    if settings.stream_compress is not None:
        found.append(Compress(settings.stream_compress))
    if progress is not None:
        found.append(ProgressTransform(progress))
    if settings.encryption is not None:  # last: what age writes is what is stored
        found.append(settings.encryption)
    return found


def _sink(settings: Settings, stores: Sequence[Storage]) -> Sink:
    """The one destination, or a FanOut over several (each dropped when it fails or stalls)."""
    if len(stores) == 1:
        return stores[0]
    return FanOut(
        stores, labels=[s.remote for s in stores], required=settings.required, stall_timeout=settings.stall_timeout
    )


def _stall_timeout(settings: Settings, stores: Sequence[Storage]) -> float | None:
    """The pipeline's stall timeout: with several destinations a FanOut drops a stalled one first."""
    if settings.stall_timeout is None or len(stores) == 1:
        return settings.stall_timeout
    return settings.stall_timeout + FANOUT_STALL_GRACE


async def _upload_folders(
    settings: Settings,
    stores: Sequence[Storage],
    folder: str,
    name: str,
    *,
    alternative: str | None,
    found: FolderStats,
    sidecars: Callable[[str], Awaitable[dict[str, bytes]]],
) -> tuple[Copy, ...]:
    """Directory mode: copy the dump's folder to every destination at once, each with its manifest (its
    completion marker: no manifest, no backup); a destination that fails is purged again."""

    async def upload(storage: Storage) -> Copy:
        chosen = name
        if alternative is not None and taken(await storage.list(), name):
            log.warning("%s is already taken (another run of this job?): stored as %s", name, alternative)
            chosen = alternative
        await upload_folder(storage, folder, chosen, found)
        try:
            await store_sidecars(storage, await sidecars(chosen))
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(120), contextlib.suppress(Exception):
                await storage.purge(chosen)
            raise
        return Copy(storage.remote, Committed(chosen, found.size))

    if len(stores) == 1:
        return (await upload(stores[0]),)
    copies: dict[int, Copy] = {}

    async def one(i: int) -> None:
        try:
            copies[i] = await upload(stores[i])
        except DbstashError as exc:
            log.warning("destination %s dropped: %s", stores[i].remote, exc)
            copies[i] = Copy(stores[i].remote, None, str(exc))

    async with anyio.create_task_group() as tg:
        for i in range(len(stores)):
            tg.start_soon(one, i)
    done = tuple(copies[i] for i in range(len(stores)))
    if sum(c.committed is not None for c in done) < settings.required:
        reasons = "; ".join(f"{c.destination}: {c.error}" for c in done if c.error)
        raise DestinationsFailed(f"committed on too few destinations ({settings.required} required): {reasons}", done)
    return done


async def _run_multi_file(
    settings: Settings,
    engine: Engine,
    stores: Sequence[Storage],
    name: str,
    progress: Progress | None,
    *,
    manifest: _ManifestMaker,
    alternative: str | None,
) -> tuple[PipelineResult, DumpCommand]:
    """Directory and tar modes: dump into a private temp folder, then copy it (directory) or stream a tar."""
    try:
        with anyio.fail_after(settings.timeout):
            async with work_folder(settings) as folder:
                command = await dump_to_folder(settings, engine, folder)
                found = await anyio.to_thread.run_sync(folder_stats, folder)
                log.info("dump written to the work folder", extra={"files": len(found.files), "size": found.size})
                manifest.files = found.files
                if settings.mode == "directory":
                    stats = PipelineResult(name, found.size, found.sha256, found.size, fast_path=False)

                    async def sidecars(chosen: str) -> dict[str, bytes]:
                        return await manifest(chosen, replace(stats, name=chosen), command)

                    copies = await _upload_folders(
                        settings, stores, folder, name, alternative=alternative, found=found, sidecars=sidecars
                    )
                    first = next(c.committed for c in copies if c.committed is not None)
                    return replace(stats, name=first.name, copies=copies if len(stores) > 1 else ()), command
                tar = tar_command(folder)
                pipeline = Pipeline(
                    CommandSource(tar.argv, env=tar.env),
                    _sink(settings, stores),
                    _transforms(settings, progress),
                    stall_timeout=_stall_timeout(settings, stores),
                )
                done = await pipeline.run(
                    name, alternative=alternative, before_publish=lambda final, r: manifest(final, r, command)
                )
                return replace(done, source_size=found.size), command
    except TimeoutError:
        raise BackupTimeout(f"the backup exceeded its timeout of {settings.timeout:g}s and was aborted") from None


async def _run_stream(
    settings: Settings,
    engine: Engine,
    stores: Sequence[Storage],
    name: str,
    progress: Progress | None,
    *,
    manifest: _ManifestMaker,
    alternative: str | None,
) -> PipelineResult:
    """Stream mode: the dump tool's output through the transforms into the destinations."""
    globals_command = (
        (lambda: engine.globals_command(settings.connection, settings.dump_options)) if settings.globals_only else None
    )
    source = DumpSource(engine, settings.connection, settings.dump_options, command=globals_command)
    pipeline = Pipeline(
        source,
        _sink(settings, stores),
        _transforms(settings, progress),
        timeout=settings.timeout,
        stall_timeout=_stall_timeout(settings, stores),
        size_hint=lambda: engine.estimate_size(settings.connection),
    )
    return await pipeline.run(
        name, alternative=alternative, before_publish=lambda final, r: manifest(final, r, r.command)
    )


async def run_one(
    settings: Settings,
    engine: Engine,
    template: NameTemplate,
    stores: Sequence[Storage],
    *,
    backup_id: str,
    database: str,
    progress: Progress | None,
    started: datetime,
    name: str,
) -> BackupResult:
    t0 = time.monotonic()
    for warning in settings.warnings():
        log.warning(warning)
    if engine.backup_note:
        log.info(engine.backup_note)
    paths = [s.path(name) for s in stores]
    where = paths if len(paths) > 1 else paths[0]
    log.info("backup started", extra={"remote_path": where, "source": settings.connection.display_uri()})
    writer = _ManifestMaker(settings, engine, backup_id=backup_id, database=database, started=started)
    alternative = template.alternative(name, backup_id, started)
    if settings.mode == "stream":
        stats = await _run_stream(settings, engine, stores, name, progress, manifest=writer, alternative=alternative)
        command = stats.command
        assert command is not None
        log.debug("dump command: %s", command.display())
    else:
        stats, command = await _run_multi_file(
            settings, engine, stores, name, progress, manifest=writer, alternative=alternative
        )
    finished = datetime.now(UTC)
    duration = time.monotonic() - t0
    copies = stats.copies or (Copy(stores[0].remote, Committed(stats.name, stats.size, stats.listing)),)
    results = [
        await _after_commit(settings, template, store, copy, started=started, finished=finished)
        for store, copy in zip(stores, copies, strict=True)
    ]
    remote_path = next(r.remote_path for r in results if r.remote_path is not None)
    deleted, locked, retention_error = _retention_of(results)
    result = BackupResult(
        remote_path=remote_path,
        name=stats.name,
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
        deleted=deleted,
        locked=locked,
        retention_error=retention_error,
        dump_size=stats.source_size,
        compression=str(settings.stream_compress) if settings.stream_compress else None,
        encryption=str(settings.encryption)
        if settings.encryption is not None and settings.mode != "directory"
        else None,
        copies=tuple(results) if len(stores) > 1 else (),
    )
    log.info(
        "backup complete",
        extra={
            "remote_path": remote_path,
            "size": stats.size,
            "dump_size": stats.source_size,
            "sha256": stats.sha256,
            "duration": result.duration,
            "deleted": list(result.deleted),
            "copies": [r.remote_path or f"{r.remote}: {r.error}" for r in result.copies] or None,
        },
    )
    return result


def _retention_of(results: Sequence[CopyResult]) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """What retention did, over every destination: the result's *deleted*, *locked* and *retention_error*."""
    several = len(results) > 1
    errors = [
        f"{r.remote}: {r.retention_error}" if several else r.retention_error for r in results if r.retention_error
    ]
    deleted = tuple(d for r in results for d in r.deleted)
    return deleted, tuple(d for r in results for d in r.locked), "; ".join(errors) or None


async def _after_commit(
    settings: Settings,
    template: NameTemplate,
    storage: Storage,
    copy: Copy,
    *,
    started: datetime,
    finished: datetime,
) -> CopyResult:
    """One destination after the commit: retention and the stale-upload sweep where it holds the backup.

    One listing serves the commit, retention and the stale-partial sweep: the commit's (or the direct
    upload's claim) when there was one; else retention lists once. No listing at hand and no
    retention: no sweep this run (a direct upload leaves at most a zero-byte claim; prune sweeps).
    """
    done = copy.committed
    if done is None:
        return CopyResult(storage.remote, False, error=copy.error)
    deleted: tuple[str, ...] = ()
    locked: tuple[str, ...] = ()
    retention_error = None
    entries = list(done.listing) if done.listing is not None else None
    if settings.retention.enabled:
        try:
            if entries is None:
                entries = await storage.list()
            plan = await plan_retention(
                settings,
                storage,
                now=finished,
                ensure=Backup(done.name, started.astimezone(UTC), done.size),
                entries=entries,
            )
            applied = await apply_retention(plan, storage, settings.mode)
            deleted, locked = tuple(applied.deleted), applied.locked
        except Exception as exc:
            retention_error = str(exc)
            log.error("retention failed on %s (the new backup is complete): %s", storage.remote, exc)
    if entries is not None:
        await remove_stale_partials(settings, template, storage, finished, entries)
    return CopyResult(storage.remote, True, storage.path(done.name), done.name, None, deleted, locked, retention_error)
