"""The public entry points: ``backup()`` and ``abackup()``. The CLI and the entrypoint call these too."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from dbstash.bridge import blocking
from dbstash.engines.base import Engine
from dbstash.jobs.backup import BackupResult, run_backup
from dbstash.jobs.dryrun import dry_run
from dbstash.jobs.hooks import Hook
from dbstash.jobs.multi import JobResult, run_job
from dbstash.jobs.prune import PruneResult, apply_plan, aprune, job_backups, plan_retention, prune, stale_partials
from dbstash.jobs.remote import job_storage, preflight
from dbstash.jobs.retention import RetentionPolicy
from dbstash.logs import get_logger
from dbstash.notify import Notifier
from dbstash.parts.pipeline import DEFAULT_STALL_TIMEOUT, Progress
from dbstash.settings.config import Settings
from dbstash.settings.options import RcloneOptions, RcOptions
from dbstash.storage.base import Storage

log = get_logger("dbstash")


async def abackup(
    uri: str | None = None,
    *,
    remote: str | Sequence[str] | None = None,
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
    engine: Engine | str | None = None,
    retention: RetentionPolicy | None = None,
    mode: str = "stream",
    temp_dir: str | None = None,
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
    encrypt_to: Sequence[str] | str | None = None,
    required_destinations: int | str | None = None,
) -> BackupResult:
    """Back up one database into an rclone remote; the async twin of [`backup()`][dbstash.backup].

    Examples:
        >>> result = await dbstash.abackup("sqlite:///srv/app.db", remote="/srv/backups")  # doctest: +SKIP
        >>> result.remote_path, result.size, result.sha256  # doctest: +SKIP

    Args:
        uri: the database, e.g. ``postgresql://app@db:5432/app`` or ``sqlite:///srv/app.db``; a
            password inside it is redacted everywhere, but prefer *password* or *password_file*.
        remote: an rclone remote path (``s3:bucket/pg``, a local folder), or several: one dump then
            goes to all of them at once (see *required_destinations*). Omit it with *storage*.
        settings: a complete [`Settings`][dbstash.Settings]; the other parameters then do not apply.
        progress: called with the number of bytes streamed so far.
        storage: any [`Storage`][dbstash.Storage] instead of rclone ([`MemorySink`][dbstash.MemorySink]
            in tests).
        password: the database password, passed to the dump tool through its environment or a
            private file, never its argv.
        password_file: a file holding the password (a mounted secret); not with *password*.
        name_template: the object name, e.g. ``{database}-{timestamp}{ext}`` (the default).
        compress: ``True`` for the dump tool's native compression (pg custom format, mongodump
            ``--gzip``); ``"zstd"`` / ``"gzip"`` (or ``"zstd:19"``) for compression by dbstash on
            the stream, any engine (appends ``.zst`` / ``.gz``).
        extension: the file extension instead of the engine's (``.sql``, ``.archive``...).
        dump_extra_args: more arguments for the dump tool (a list, or one shell-quoted string).
        retention_max_files: after a success, keep this many of this job's backups (0: all).
        retention_max_days: after a success, delete this job's backups older than this (0: none).
        retention_keep: grandfather-father-son counts, e.g. ``{"daily": 7, "weekly": 4}``.
        rclone: [`RcloneOptions`][dbstash.RcloneOptions] for the rclone CLI (config, flags, timeouts).
        rc: use a running ``rclone rcd`` ([`RcOptions`][dbstash.RcOptions]) instead of starting
            rclone for each step; *rclone* options then do not apply.
        timeout: seconds the whole run may take; ``None``: no limit.
        tz: the time zone of the timestamp in the name.
        notifiers: [`Notifier`][dbstash.Notifier]s told of the outcome (failures included).
        pre_hook: run before the dump; a failure stops the run before anything is uploaded.
        post_hook: run after the run, told whether it succeeded.
        engine: an [`Engine`][dbstash.Engine] object or key instead of the URI's scheme.
        retention: a [`RetentionPolicy`][dbstash.RetentionPolicy] instead of the ``retention_*``
            parameters (not with them).
        mode: ``stream`` (nothing on local disk), ``directory`` or ``tar`` (with *temp_dir*).
        temp_dir: the work folder of the ``directory`` and ``tar`` modes.
        stall_timeout: seconds without a byte from the dump before the run fails; ``None``: none.
        encrypt_to: age recipients (``age1...`` or SSH public keys): the stream is encrypted with
            ``age`` after compression (``.age`` appended; restore needs the identity).
        required_destinations: with several remotes, how many must commit: ``"all"`` (the
            default), ``"any"`` or a number ([`BackupResult.copies`][dbstash.BackupResult] tells
            what each one holds).

    Returns:
        The committed backup: where it is, its size and SHA-256.

    Raises:
        ConfigError: a parameter is malformed (nothing was dumped or uploaded).
        DumpFailed, UploadFailed, BackupTimeout: the run failed; nothing remains under the final name.
        ToolNotFound: the dump tool or rclone is missing or too old.
    """
    if settings is None:
        if remote is None and storage is None:
            raise TypeError("backup() needs remote= (an rclone remote path), storage= or settings=")
        kwargs: dict[str, object] = {
            "remote": remote if remote is not None else storage.remote,  # type: ignore[union-attr]  # one is set
            "engine": engine,
            "retention": retention,
            "mode": mode,
            "stall_timeout": stall_timeout,
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
            "encrypt_to": encrypt_to,
            "required_destinations": required_destinations,
        }
        if name_template is not None:
            kwargs["name_template"] = name_template
        if temp_dir is not None:
            kwargs["temp_dir"] = temp_dir
        if uri is None:
            raise TypeError("backup() needs a connection uri (or settings=)")
        settings = Settings.create(uri, **kwargs)  # type: ignore[arg-type]  # keywords are Settings.create's
        if storage is None:
            await _check_remotes(settings)
    return await run_backup(
        settings, progress=progress, storage=storage, notifiers=notifiers, pre_hook=pre_hook, post_hook=post_hook
    )


backup = blocking(
    abackup,
    """Back up one database into an rclone remote and return the committed backup (see [`abackup()`][dbstash.abackup]).

    Blocking; runs its own event loop. Inside async code use ``await dbstash.abackup(...)``:
    calling this from a running event loop raises RuntimeError instead of nesting loops.

    Examples:
        >>> import dbstash
        >>> r = dbstash.backup("postgresql://app@db/app", remote="s3:bucket/pg",
        ...                    password_file="/run/secrets/pg")  # doctest: +SKIP
        >>> r.remote_path, r.size, r.sha256, r.duration  # doctest: +SKIP
    """,
)


async def abackup_many(
    uri: str | None = None,
    *,
    remote: str | Sequence[str] | None = None,
    databases: str | Sequence[str] = "all",
    exclude: str | Sequence[str] = (),
    include_globals: bool | None = None,
    parallel: int = 1,
    settings: Settings | None = None,
    storage: Storage | None = None,
    progress: Progress | None = None,
    notifiers: Sequence[Notifier] | None = None,
    pre_hook: Hook | None = None,
    post_hook: Hook | None = None,
    **options: Any,
) -> JobResult:
    """Back up several databases of one server, one object each (the async twin of
    [`backup_many()`][dbstash.backup_many]).

    Examples:
        >>> run = await dbstash.abackup_many("postgresql://admin@db/", remote="s3:b/pg",
        ...                                  exclude=["test_*"], parallel=2)  # doctest: +SKIP
        >>> run.ok, [(o.database, o.result.name if o.result else o.error) for o in run.outcomes]  # doctest: +SKIP

    *databases*: ``"all"`` (every database but the system ones and *exclude*, names or globs), a
    list of names, or ``"all,postgres"`` to add a system database. *include_globals*: also back up
    roles/users and grants (``_globals`` object; default: where the engine can). *parallel*:
    databases dumped at once. *options*: any other keyword of [`Settings.create()`][dbstash.Settings.create]
    (``compress``, ``retention_max_files``, ``name_template`` with ``{db}``, ...).

    Returns a [`JobResult`][dbstash.JobResult] even when some databases failed (``.ok``,
    ``.failed``); each database's outcome holds its [`BackupResult`][dbstash.BackupResult] or its error.
    """
    if settings is None:
        if uri is None or (remote is None and storage is None):
            raise TypeError("backup_many() needs a connection uri and remote= (or storage=), or settings=")
        settings = Settings.create(
            uri,
            remote=remote if remote is not None else storage.remote,  # type: ignore[union-attr]  # one is set
            databases=databases,
            exclude=exclude,
            include_globals=include_globals,
            parallel=parallel,
            **options,
        )
        if storage is None:
            await _check_remotes(settings)
    return await run_job(
        settings, progress=progress, storage=storage, notifiers=notifiers, pre_hook=pre_hook, post_hook=post_hook
    )


backup_many = blocking(
    abackup_many,
    """Back up several databases of one server, one object each (blocking). See
    [`abackup_many()`][dbstash.abackup_many].""",
)


async def _check_remotes(settings: Settings) -> None:
    """The remotes are defined in rclone's config, before anything is dumped (the CLI transport; with
    *rc* the run's first call to rcd checks it, before the dump too)."""
    if settings.rc is None:
        await preflight(settings)


async def arun(settings: Settings, *, progress: Progress | None = None) -> BackupResult | JobResult:
    """Run the job *settings* describe: one database ([`run_backup()`][dbstash.run_backup]) or several
    ([`run_job()`][dbstash.run_job]).

    What the CLI and the container entrypoint call.
    """
    if settings.multi:
        return await run_job(settings, progress=progress)
    return await run_backup(settings, progress=progress)


__all__ = [
    "BackupResult",
    "JobResult",
    "PruneResult",
    "abackup",
    "abackup_many",
    "apply_plan",
    "aprune",
    "arun",
    "backup",
    "backup_many",
    "dry_run",
    "job_backups",
    "job_storage",
    "plan_retention",
    "preflight",
    "prune",
    "run_backup",
    "run_job",
    "stale_partials",
]
