"""Dry runs: what a run would do, with secrets masked, touching neither the database nor the remote."""

from __future__ import annotations

from datetime import UTC, datetime

from dbstash.engines.base import DumpCommand
from dbstash.errors import DbstashError
from dbstash.jobs.prune import plan_retention
from dbstash.jobs.remote import job_storage
from dbstash.jobs.retention import Backup
from dbstash.logs import get_logger
from dbstash.settings.config import Settings
from dbstash.storage.base import Storage
from dbstash.storage.rclone_cli import RcloneCliStorage
from dbstash.storage.rclone_rc import RcloneRcStorage

log = get_logger("dbstash")


async def dry_run(settings: Settings, *, storage: Storage | None = None) -> dict[str, object]:
    """What a run would do, with secrets masked — without contacting the database or changing the remote.

    Logs and returns the resolved settings, the exact dump argv, the rclone commands and the
    retention plan the run would carry out. The plan needs one read-only listing of the remote; if
    that fails the plan is reported as unknown (a dry run still succeeds).
    """
    if settings.multi:
        return await _dry_run_many(settings, storage)
    engine = settings.engine()
    template = settings.template()
    now = datetime.now(settings.zone)
    name = template.render(now, uuid="xxxxxxxx")
    command = engine.preview_command(settings.connection, settings.dump_options)
    async with job_storage(settings, storage) as store:
        return await _dry_run(settings, store, command, name, now)


async def _dry_run_many(settings: Settings, storage: Storage | None) -> dict[str, object]:
    """A multi-database job: the globals' and every database's command and name. ``DB_NAME=all`` asks
    the server for its list of databases (read-only); if it cannot, the list is reported as unknown."""
    from dbstash.jobs.multi import resolve_databases  # noqa: PLC0415 - multi imports job, which imports this module's users

    assert settings.databases is not None
    engine = settings.engine()
    now = datetime.now(settings.zone)
    names: list[str] | None
    excluded: list[str] = []
    try:
        names, excluded = await resolve_databases(settings, engine)
    except DbstashError as exc:
        names = None
        log.warning("dry run: cannot list the server's databases (%s): the list is unknown", exc)
    parts: list[Settings] = [settings.for_globals()] if settings.databases.include_globals else []
    parts += [settings.for_database(n) for n in names or []]
    items = []
    async with job_storage(settings, storage) as store:
        for part in parts:
            if part.globals_only:
                command = engine.preview_globals_command(part.connection, part.dump_options)
            else:
                command = engine.preview_command(part.connection, part.dump_options)
            name = part.template().render(now, uuid="xxxxxxxx")
            log.info("dry run: %s: %s -> %s", part.database_label, command.display(), store.path(name))
            items.append(
                {
                    "database": part.database_label,
                    "dump_argv": list(command.argv),
                    "backup_name": name,
                    "remote_path": store.path(name),
                }
            )
    warnings = settings.warnings()
    for warning in warnings:
        log.warning("dry run: %s", warning)
    log.info("dry run: configuration", extra={"settings": settings.redacted()})
    return {
        "settings": settings.redacted(),
        "selection": settings.databases.describe(),
        "databases": items if names is not None else None,
        "excluded": excluded,
        "warnings": warnings,
    }


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
    if isinstance(store, RcloneCliStorage) and store.commits_directly():
        data["upload_argv"] = store.argv("rcat", store.path(name))
        data["commit"] = (
            f"direct ({store.backend_type()}): rclone runs under a guardian and completes the upload only after "
            "the dump exited 0 and the manifest is stored; no rename"
        )
    elif isinstance(store, RcloneCliStorage):
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
