"""The ``dbstash`` command. Exit codes: 0 success, 1 backup failed, 2 bad configuration or missing tool."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import NoReturn

import click

import dbstash
import dbstash.api
from dbstash.errors import DbstashError
from dbstash.logs import configure_logging
from dbstash.settings.config import Settings
from dbstash.units import human_bytes
from dbstash_cli.core import (
    EXIT_FAILED,
    EXIT_OK,
    backup_from,
    environ_with_flags,
    explain,
    load_settings,
    log,
    run_from_env,
)
from dbstash_cli.show import result_lines

#: The tools whose versions ``--version`` reports, when installed.
VERSION_TOOLS = ("rclone", "pg_dump", "mysqldump", "mariadb-dump", "mongodump", "redis-cli", "sqlite3")


def _print_versions(ctx: click.Context) -> None:
    """``dbstash --version``: dbstash first (as Click prints it), then each installed tool's version line."""
    import shutil  # noqa: PLC0415

    from dbstash.engines.base import tool_version  # noqa: PLC0415

    click.echo(f"dbstash, version {dbstash.__version__}")
    venv_bin = os.path.dirname(sys.executable)
    for tool in VERSION_TOOLS:
        path = shutil.which(tool) or shutil.which(tool, path=venv_bin)
        if path:
            click.echo(f"{tool}: {tool_version(path) or 'version unknown'}")
    ctx.exit(0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _print_versions(ctx) if value else None,
    help="Show the dbstash, rclone and dump tool versions and exit.",
)
def cli() -> None:
    """Stream database dumps into any rclone remote.

    Exit codes: 0 success, 1 backup failed (nothing complete-looking was left), 2 bad configuration.
    """


_CONNECTION = [
    click.option("--uri", help="Connection URI (DB_URI), e.g. sqlite:///srv/app.db or postgresql://app@db/app."),
    click.option("--uri-file", type=click.Path(), help="File holding the URI (DB_URI_FILE)."),
    click.option(
        "--engine", help="Engine key when no URI is given (DB_ENGINE): pg, mysql, mariadb, redis, mongo, sqlite."
    ),
    click.option("--host", help="Database host (DB_HOST)."),
    click.option("--port", help="Database port (DB_PORT)."),
    click.option("--db-name", help="Database name, a comma-separated list, or all (DB_NAME)."),
    click.option("--db-exclude", help="With --db-name all: names or globs left out (DB_EXCLUDE)."),
    click.option(
        "--db-all-mode",
        type=click.Choice(["separate", "single"]),
        help="all: one object per database (separate) or one whole-server stream (DB_ALL_MODE).",
    ),
    click.option("--db-globals", help="Several databases: also back up roles/users, true or false (DB_GLOBALS)."),
    click.option("--user", help="Database user (DB_USER)."),
    click.option("--auth-source", help="MongoDB auth database (DB_AUTH_SOURCE), default admin."),
    click.option("--password-file", type=click.Path(), help="File holding the password (DB_PASSWORD_FILE)."),
    click.option(
        "--remote",
        multiple=True,
        help="rclone remote path (RCLONE_REMOTE), e.g. s3:bucket/pg or ./backups; repeat it for several destinations.",
    ),
    click.option("--rclone-config-file", type=click.Path(), help="rclone.conf to use (RCLONE_CONFIG_FILE)."),
    click.option("--rclone-extra-args", help="Extra rclone flags (RCLONE_EXTRA_ARGS)."),
    click.option("--name-template", help="Name template (BACKUP_NAME_TEMPLATE), default {db}-{date}-{time}."),
]
_COMPRESSION = [
    click.option("--compress/--no-compress", default=None, help="Native compression (BACKUP_COMPRESS=true)."),
    click.option(
        "--stream-compress",
        metavar="zstd|gzip[:LEVEL]",
        help="Compress the stream in dbstash, any engine (BACKUP_COMPRESS=zstd); wins over --compress.",
    ),
    click.option("--extension", help="File extension override (BACKUP_EXTENSION)."),
]
_DUMP = [
    click.option("--dump-extra-args", help="Extra dump tool flags (DUMP_EXTRA_ARGS)."),
    click.option("--timeout", help="Maximum run time, e.g. 1h, 30m (BACKUP_TIMEOUT)."),
    click.option("--db-parallel", help="Several databases: how many are dumped at once (DB_PARALLEL)."),
]
_RETENTION = [
    click.option("--retention-max-files", help="Keep at most N backups (RETENTION_MAX_FILES)."),
    click.option("--retention-max-days", help="Delete backups older than N days (RETENTION_MAX_DAYS)."),
    *(
        click.option(
            f"--retention-keep-{p}", help=f"Keep the newest backup of the last N {u} (RETENTION_KEEP_{p.upper()})."
        )
        for p, u in (
            ("hourly", "hours"),
            ("daily", "days"),
            ("weekly", "ISO weeks"),
            ("monthly", "months"),
            ("yearly", "years"),
        )
    ),
]
_OUTPUT = [
    click.option("--tz", help="Time zone for names and retention periods (TZ)."),
    click.option("--log-level", help="debug, info, warn, error (LOG_LEVEL)."),
    click.option("--log-format", help="json or text (LOG_FORMAT); text by default on a terminal."),
    click.option("--json", "as_json", is_flag=True, help="Print the result (or the error) as JSON on stdout."),
]


def job_options(
    *, compression: bool = False, dump: bool = False, retention: bool = False
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The flags a subcommand uses, each mirroring one environment variable: the job's connection,
    remote and names always; compression (which changes names), dump and retention flags only where
    they mean something (``restore --help`` lists no retention flag)."""
    options = [
        *_CONNECTION,
        *(_COMPRESSION if compression else []),
        *(_DUMP if dump else []),
        *(_RETENTION if retention else []),
        *_OUTPUT,
    ]

    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


@cli.command()
@job_options(compression=True, dump=True, retention=True)
@click.option("--dry-run", is_flag=True, help="Show what would happen (DRY_RUN); touch nothing.")
def backup(as_json: bool, dry_run: bool, compress: bool | None = None, **flags: str | None) -> None:
    """Run one backup now. Flags override the matching environment variables."""
    environ = environ_with_flags(compress, flags)
    if dry_run:
        environ["DRY_RUN"] = "true"
    sys.exit(backup_from(environ, as_json=as_json))


@cli.command()
@job_options(compression=True, retention=True)
@click.option("--dry-run", is_flag=True, help="Show what would be kept (and by which rule) and what would go.")
def prune(as_json: bool, dry_run: bool, compress: bool | None = None, **flags: str | None) -> None:
    """Apply the retention policy to this job's backups now.

    Only names this job's template produces are considered; partial uploads never count; the newest
    backup is never deleted. With --dry-run nothing is deleted.
    """
    settings = load_settings(environ_with_flags(compress, flags), as_json)
    configure_logging(settings.service.log_level, settings.service.log_format)
    if not settings.retention.enabled:
        log.warning(
            "no retention variable is set (RETENTION_MAX_FILES, RETENTION_MAX_DAYS, RETENTION_KEEP_*): "
            "every backup is kept"
        )
    try:
        result = dbstash.prune(settings, dry_run=dry_run)
    except DbstashError as exc:
        message = explain(exc)
        log.error("prune failed: %s", message, extra={"error_type": type(exc).__name__})
        if as_json:
            click.echo(json.dumps({"ok": False, "exit_code": exc.exit_code, "error": message}))
        sys.exit(exc.exit_code)
    if as_json:
        click.echo(json.dumps({"ok": True, **result.to_dict()}))
        return
    verb = "would delete" if dry_run else "deleted"
    locked = set(result.locked)
    for d in result.plan.decisions:
        action = "keep" if d.keep else ("locked" if d.backup.name in locked else verb)
        when = d.backup.taken_at.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M")
        reason = f"{d.reason}; the remote refused to delete it: retained (locked)" if action == "locked" else d.reason
        click.echo(f"{action:<12} {when}  {d.backup.name}  ({reason})")
    kept = sum(1 for d in result.plan.decisions if d.keep)
    gone = len(result.plan.decisions) - kept - len(locked)
    summary = f"{kept} kept, {gone} {verb}" + (f", {len(locked)} retained (locked)" if locked else "")
    click.echo(summary + (" (dry run: nothing was deleted)" if dry_run else ""))


@cli.command()
def run() -> None:
    """The container entrypoint: configured only by environment variables (see the docs).

    BACKUP_SCHEDULE=once runs one backup and exits 0 or 1; a cron expression runs backups on that
    schedule, serving /healthz and /metrics, until SIGTERM (exit 0 between runs, 1 during one).
    DRY_RUN=true shows what would happen and exits 0 without touching the database or the remote.
    """
    sys.exit(run_from_env())


#: why list/restore/verify need the job's database even to read the remote
_WHY_URI = {
    "backups": "dbstash list finds this job's backups by the names its template gives them, which hold the "
    "database's name ({db}); pass --uri (or DB_HOST and DB_NAME)",
    "restore": "dbstash restore needs the database the backups are of (to find them) and to restore into "
    "(unless --target); pass --uri",
    "verify": "dbstash verify needs the database the backups are of, to find them; pass --uri",
}


def _restore_job(
    name: str, as_json: bool, compress: bool | None, flags: Mapping[str, str | None], job: Callable[[Settings], object]
) -> None:
    """Shared by list/restore/verify: settings from env + flags, run *job*, map errors to exit codes and JSON."""
    settings = load_settings(environ_with_flags(compress, flags), as_json, uri_needed_for=_WHY_URI[name])
    configure_logging(settings.service.log_level, settings.service.log_format)
    try:
        result = job(settings)
    except DbstashError as exc:
        message = explain(exc)
        log.error("%s failed: %s", name, message, extra={"error_type": type(exc).__name__})
        if as_json:
            out = {"ok": False, "exit_code": exc.exit_code, "error": message, "error_type": type(exc).__name__}
            click.echo(json.dumps(out))
        sys.exit(exc.exit_code)
    if as_json:
        if isinstance(result, list):
            click.echo(json.dumps({"ok": True, name: [r.to_dict() for r in result]}))
        else:
            click.echo(json.dumps({"ok": True, **result.to_dict()}))  # type: ignore[attr-defined]
        if getattr(result, "ok", True) is False:
            sys.exit(EXIT_FAILED)
        return
    if isinstance(result, list):
        now = datetime.now(UTC)
        for info in result:
            d = info.to_dict(now)
            state = "complete" if d["complete"] else "PARTIAL (a killed run's leftover)"
            problem = d["manifest_problem"]  # shown first: a size mismatch or another job's manifest
            if not problem and d["untrusted"]:  # with BACKUP_TRUSTED_KEYS: not signed by a trusted key
                problem = f"untrusted ({d['untrusted']})"
            check = str(problem) if problem else ("sha256 " + str(d["sha256"])[:12] if d["sha256"] else "")
            if not problem and d["signed_by"]:
                check += f"  signed {d['signed_by']}"
            when = info.taken_at.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M:%S")
            if settings.extra_remotes:  # several destinations: where a proven copy is
                missing = [r for r in settings.remotes if r not in info.copies]
                check += f"  copies {len(info.copies)}/{len(settings.remotes)}"
                check += f" (none on {', '.join(missing)})" if missing else ""
            click.echo(f"{when}  {human_bytes(info.size):>10}  {state:<10}  {info.name}  {check}")
        if not result:
            click.echo("no backups of this job on the remote yet")
        return
    for line in result_lines(result):
        click.echo(line)
    if getattr(result, "ok", True) is False:  # a run of several databases where some failed
        sys.exit(EXIT_FAILED)


@cli.command(name="list")
@job_options()
def list_(as_json: bool, compress: bool | None = None, **flags: str | None) -> None:
    """List this job's backups on the remote, newest first: size, time, complete or partial, checksum."""
    _restore_job("backups", as_json, compress, flags, dbstash.list_backups)


_UNSIGNED_HELP = (
    "With BACKUP_TRUSTED_KEYS: accept a backup that has no signature (one from before signing; a warning is "
    "logged). A bad signature or an untrusted key is never accepted."
)
_BACKUP_HELP = "Which backup: latest (default), a name, or a time such as 2026-02-07T02:00 (newest at or before)."


@cli.command()
@job_options()
@click.option("--backup", "which", default="latest", show_default=True, help=_BACKUP_HELP)
@click.option(
    "--target",
    help="Restore into this URI (same engine) instead of the job's database; SQLite: a new file; Redis: the RDB path.",
)
@click.option("--force", is_flag=True, help="Restore even if the target already holds data.")
@click.option("--restore-extra-args", help="Extra flags for the restore tool (RESTORE_EXTRA_ARGS).")
@click.option(
    "--allow-unverified",
    is_flag=True,
    help="Restore a backup that has no usable manifest (its bytes cannot be proven complete).",
)
@click.option("--allow-unsigned", is_flag=True, help=_UNSIGNED_HELP)
@click.option(
    "--database",
    "database",
    help="A job of several databases: which one, or 'all' (every database of the run, the globals first).",
)
@click.option("--globals", "globals_", is_flag=True, help="A job of several databases: restore its roles/users only.")
def restore(  # noqa: PLR0917 - click passes every option by keyword
    as_json: bool,
    which: str,
    target: str | None,
    force: bool,
    allow_unverified: bool,
    allow_unsigned: bool,
    database: str | None,
    globals_: bool,
    compress: bool | None = None,
    **flags: str | None,
) -> None:
    """Stream a backup from the remote into the database with its native tool, checking its sha256."""
    if globals_:
        database = dbstash.GLOBALS_LABEL

    def job(s: Settings) -> object:
        if database is not None and s.multi and database.lower() == "all":
            return dbstash.restore_many(
                s, which, target=target, force=force, allow_unverified=allow_unverified, allow_unsigned=allow_unsigned
            )
        return dbstash.restore(
            s,
            which,
            target=target,
            force=force,
            allow_unverified=allow_unverified,
            database=database,
            allow_unsigned=allow_unsigned,
        )

    _restore_job("restore", as_json, compress, flags, job)


@cli.command()
@job_options()
@click.option("--backup", "which", default="latest", show_default=True, help=_BACKUP_HELP)
@click.option("--target", help="Scratch database URI to restore into (VERIFY_TARGET_URI); its data is dropped after.")
@click.option("--restore-extra-args", help="Extra flags for the restore tool (RESTORE_EXTRA_ARGS).")
@click.option("--database", "database", help="A job of several databases: verify this one (default: every one).")
@click.option("--allow-unsigned", is_flag=True, help=_UNSIGNED_HELP)
def verify(  # noqa: PLR0917 - click passes every option by keyword
    as_json: bool,
    which: str,
    target: str | None,
    database: str | None,
    allow_unsigned: bool,
    compress: bool | None = None,
    **flags: str | None,
) -> None:
    """The restore drill: restore into a scratch target, check the sha256, count rows per table, clean up."""

    def job(s: Settings) -> object:
        if s.multi and (database is None or database.lower() == "all"):
            return dbstash.verify_many(s, which, target=target, allow_unsigned=allow_unsigned)
        return dbstash.verify(s, which, target=target, database=database, allow_unsigned=allow_unsigned)

    _restore_job("verify", as_json, compress, flags, job)


@cli.command()
@click.option("--url", help="Health endpoint to ask (default http://127.0.0.1:$HEALTH_PORT/healthz).")
@click.option("--timeout", "timeout", default=5.0, show_default=True, help="Seconds to wait for the answer.")
def healthcheck(url: str | None, timeout: float) -> None:
    """Exit 0 if the running service reports healthy, else 1 (for Docker's HEALTHCHECK)."""
    import requests  # noqa: PLC0415 - only this command needs it; keeps `dbstash run` start-up lean

    if url is None:
        port = os.environ.get("HEALTH_PORT", "").strip() or "8080"
        url = f"http://127.0.0.1:{port}/healthz"
    try:
        reply = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        click.echo(f"unhealthy: {type(exc).__name__}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(reply.text.strip())
    sys.exit(EXIT_OK if reply.status_code == 200 else EXIT_FAILED)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point: runs the command and ends the process with its exit code (through
    :func:`sys.exit`, so atexit handlers run)."""
    cli.main(args=argv, prog_name="dbstash")
    sys.exit(0)
