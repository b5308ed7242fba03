"""What ``dbstash run`` and ``dbstash backup`` do: settings from the environment (and flags), the
run lock, signals, the result on stdout, exit codes. :mod:`dbstash_cli.main` (the click CLI, the
console script) calls these; they hold no backup logic of their own.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NoReturn, TypeVar

import anyio

import dbstash
import dbstash.api
from dbstash.errors import ConfigError, DbstashError
from dbstash.jobs.lock import job_lock
from dbstash.logs import configure_logging, get_logger
from dbstash.redact import GLOBAL_REDACTOR
from dbstash.settings.config import Settings
from dbstash.units import human_bytes
from dbstash_cli.progress import TerminalProgress

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
log = get_logger("dbstash.cli")
T = TypeVar("T")

# CLI flag -> environment variable: flags mirror the spec's variables, and the environment is honoured.
FLAG_ENV = {
    "uri": "DB_URI",
    "uri_file": "DB_URI_FILE",
    "engine": "DB_ENGINE",
    "host": "DB_HOST",
    "port": "DB_PORT",
    "db_name": "DB_NAME",
    "db_exclude": "DB_EXCLUDE",
    "db_all_mode": "DB_ALL_MODE",
    "db_globals": "DB_GLOBALS",
    "db_parallel": "DB_PARALLEL",
    "user": "DB_USER",
    "password_file": "DB_PASSWORD_FILE",
    "remote": "RCLONE_REMOTE",
    "rclone_config_file": "RCLONE_CONFIG_FILE",
    "rclone_extra_args": "RCLONE_EXTRA_ARGS",
    "name_template": "BACKUP_NAME_TEMPLATE",
    "extension": "BACKUP_EXTENSION",
    "stream_compress": "BACKUP_COMPRESS",
    "auth_source": "DB_AUTH_SOURCE",
    "dump_extra_args": "DUMP_EXTRA_ARGS",
    "restore_extra_args": "RESTORE_EXTRA_ARGS",
    "retention_max_files": "RETENTION_MAX_FILES",
    "retention_max_days": "RETENTION_MAX_DAYS",
    "retention_keep_hourly": "RETENTION_KEEP_HOURLY",
    "retention_keep_daily": "RETENTION_KEEP_DAILY",
    "retention_keep_weekly": "RETENTION_KEEP_WEEKLY",
    "retention_keep_monthly": "RETENTION_KEEP_MONTHLY",
    "retention_keep_yearly": "RETENTION_KEEP_YEARLY",
    "timeout": "BACKUP_TIMEOUT",
    "tz": "TZ",
    "log_level": "LOG_LEVEL",
    "log_format": "LOG_FORMAT",
}


#: what the start-up check calls the settings it finds at fault: the environment's names
ENV_NAMES = {
    "remote_variable": "RCLONE_REMOTE",
    "rc_variable": "RCLONE_RC_URL",
    "rc_user_variable": "RCLONE_RC_USER",
    "commit_variable": "RCLONE_COMMIT",
}
#: environment variable -> the CLI flag that sets it (``DB_URI`` -> ``--uri``)
ENV_FLAG = {env: "--" + flag.replace("_", "-") for flag, env in FLAG_ENV.items()}
#: library parameters a run can name after start-up: the variable that set them
PARAM_ENV = {"uri": "DB_URI", "remote": "RCLONE_REMOTE", "rc": "RCLONE_RC_URL", "target": "VERIFY_TARGET_URI"}
#: library parameters the CLI passes from a flag of its own: named as the flag
PARAM_FLAG = {"target": "--target", "database": "--database", "databases": "--database", "backup": "--backup"}


def explain(exc: DbstashError, *, flags: bool = True) -> str:
    """*exc*'s message for a person at the CLI, redacted: a setting named by its variable and its flag
    (``DB_URI (--uri)``), a refusal's way through as the flag (``--force``), not the library's
    ``force=True``. With *flags* False (``dbstash run``: the environment only) variables alone."""
    if isinstance(exc, ConfigError):
        name = exc.variable
        if flags and name in PARAM_FLAG:
            name = PARAM_FLAG[name]
            if exc.missing and exc.variable in PARAM_ENV:  # either sets it: say both
                name += f" (or {PARAM_ENV[exc.variable]})"
        else:
            name = PARAM_ENV.get(name, name)
            if flags and name in ENV_FLAG:
                name = f"{name} ({ENV_FLAG[name]})"
        return GLOBAL_REDACTOR(exc.describe(name))
    message = str(exc)
    if exc.override:
        message = message.replace(f"{exc.override}=True", "--" + exc.override.replace("_", "-"))
    return GLOBAL_REDACTOR(message)


def echo(text: str, *, err: bool = False) -> None:
    """A line to stdout (or stderr), flushed: what click.echo does for these commands."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _fail_config(exc: ConfigError, as_json: bool, *, flags: bool = True) -> NoReturn:
    message = explain(exc, flags=flags)
    if as_json:
        echo(json.dumps({"ok": False, "exit_code": EXIT_CONFIG, "error": message, "variable": exc.variable}))
    echo(f"dbstash: configuration error: {message}", err=True)
    sys.exit(EXIT_CONFIG)


def load_settings(
    environ: Mapping[str, str], as_json: bool, *, flags: bool = True, uri_needed_for: str | None = None
) -> Settings:
    """Settings from *environ*, or exit 2 with the message. *uri_needed_for* says, when no database
    is given, why the command needs one (``list`` finds the job's backups by its database name)."""
    try:
        return Settings.from_env(environ)
    except ConfigError as exc:
        if exc.missing and exc.variable == "DB_URI" and uri_needed_for:
            exc = ConfigError("DB_URI", f"{exc.expected}: {uri_needed_for}", missing=True)
        _fail_config(exc, as_json, flags=flags)


async def _with_signals(func: Callable[[], Awaitable[T]]) -> T:
    """Run *func*, cancelling it on SIGTERM/SIGINT (the pipeline then aborts the upload)."""
    received: list[int] = []
    outcome: list[T] = []
    error: list[Exception] = []

    async def watch(scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                received.append(signum)
                log.warning("received %s: aborting the backup", signal.Signals(signum).name)
                scope.cancel()
                return

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as job_scope:
            tg.start_soon(watch, job_scope)
            try:
                outcome.append(await func())
            except Exception as exc:  # handed out of the task group unwrapped
                error.append(exc)
        tg.cancel_scope.cancel()
    if error:
        raise error[0]
    if received or not outcome:
        name = signal.Signals(received[0]).name if received else "cancellation"
        raise dbstash.BackupCancelled(f"backup stopped by {name}; the upload was aborted")
    return outcome[0]


class _StartupConfigError(Exception):
    """A ConfigError of the start-up check: exit 2 with the configuration message, not a failed run."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


async def _preflight(settings: Settings) -> None:
    """The start-up check that needs rclone (nothing is dumped or uploaded when it fails)."""
    try:
        await dbstash.api.preflight(settings, **ENV_NAMES)
    except ConfigError as exc:
        raise _StartupConfigError(exc) from None
    except DbstashError as exc:  # rcd unreachable or not up yet (a sidecar starting): the run reports it
        log.warning("start-up check failed: %s", GLOBAL_REDACTOR(str(exc)))


async def _size_estimate(settings: Settings) -> int | None:
    """What the progress bar takes as 100 %: the engine's estimate of the dump's size, when the bytes
    streamed are the dump's own (no compression: a compressed stream is a fraction of it)."""
    if settings.multi or settings.compress or settings.stream_compress is not None:
        return None
    try:
        with anyio.fail_after(10):
            return await settings.engine().estimate_size(settings.connection)
    except (DbstashError, TimeoutError, OSError):  # no estimate, no percentage: the run itself reports problems
        return None


def _run_once(settings: Settings, *, as_json: bool, show_progress: bool, flags: bool = True) -> int:
    shown: list[TerminalProgress] = []

    async def job() -> dbstash.BackupResult | dbstash.JobResult:
        await _preflight(settings)  # in the run's own event loop: one loop per process on the hot path
        with job_lock(settings):
            if show_progress:
                shown.append(TerminalProgress(await _size_estimate(settings)))
            return await dbstash.arun(settings, progress=shown[0] if shown else None)

    try:
        with TerminalProgress.logs_above_the_bar() if show_progress else contextlib.nullcontext():
            result = anyio.run(_with_signals, job)
    except _StartupConfigError as exc:
        _fail_config(exc.error, as_json, flags=flags)
    except DbstashError as exc:
        for bar in shown:
            bar.finish()
        message = explain(exc, flags=flags)
        code = exc.exit_code
        # the library raises without logging: the record carries the failed run's context (backup_id, ...)
        log.error("backup failed: %s", message, extra={"error_type": type(exc).__name__, **exc.context})
        if as_json:
            echo(json.dumps({"ok": False, "exit_code": code, "error": message, "error_type": type(exc).__name__}))
        return code
    for bar in shown:
        bar.finish()
    if isinstance(result, dbstash.JobResult):
        if as_json:
            echo(json.dumps(result.to_dict()))
        else:
            for o in result.outcomes:
                if o.result is not None:
                    echo(f"ok      {o.database:<24} {human_bytes(o.result.size):>10}  {o.result.remote_path}")
                else:
                    echo(f"FAILED  {o.database:<24} {o.error_type}: {o.error}")
        return result.exit_code
    if as_json:
        echo(json.dumps({"ok": True, **result.to_dict()}))
    elif flags:  # dbstash backup: one line a person reads (the entrypoint's logs say it already)
        echo(
            f"backed up {result.database} to {result.remote_path}: {human_bytes(result.size)} in "
            f"{result.duration:.1f}s, sha256 {result.sha256[:12]}"
        )
    return EXIT_OK


def environ_with_flags(compress: bool | None, flags: Mapping[str, str | Sequence[str] | None]) -> dict[str, str]:
    environ = dict(os.environ)
    environ.setdefault("BACKUP_SCHEDULE", "once")
    if "LOG_FORMAT" not in environ and sys.stderr.isatty():
        environ["LOG_FORMAT"] = "text"
    for flag, given in flags.items():
        # a repeatable flag (--remote) gives a tuple: one value per line, as the variable takes them
        value = ("\n".join(given) or None) if isinstance(given, tuple) else given
        if value is not None:
            environ[FLAG_ENV[flag]] = str(value)
    if flags.get("remote"):
        environ.pop("RCLONE_REMOTE_FILE", None)
    if compress is not None and flags.get("stream_compress") is None:
        environ["BACKUP_COMPRESS"] = "true" if compress else "false"
    if flags.get("uri") is not None:
        environ.pop("DB_URI_FILE", None)
    return environ


def backup_from(environ: dict[str, str], *, as_json: bool = False) -> int:
    """``dbstash backup`` once its flags are in *environ*: the exit code."""
    settings = load_settings(environ, as_json)
    configure_logging(settings.service.log_level, settings.service.log_format)
    if settings.service.dry_run:
        return _dry_run(settings, as_json=as_json)
    bar = sys.stderr.isatty() and not as_json and settings.service.log_format != "json"
    return _run_once(settings, as_json=as_json, show_progress=bar)


def run_from_env() -> int:
    """``dbstash run``: configured only by the environment; the exit code."""
    settings = load_settings(os.environ, as_json=False, flags=False)
    configure_logging(settings.service.log_level, settings.service.log_format)
    if settings.service.dry_run:
        return _dry_run(settings, as_json=False)
    if settings.service.schedule == "once":
        return _run_once(settings, as_json=False, show_progress=False, flags=False)
    try:
        anyio.run(functools.partial(dbstash.api.preflight, settings, **ENV_NAMES))
    except ConfigError as exc:
        _fail_config(exc, False, flags=False)
    except DbstashError as exc:  # rcd not up yet (a sidecar starting): each run reports it if it persists
        log.warning("start-up check failed: %s", GLOBAL_REDACTOR(str(exc)))
    from dbstash.service import Service  # noqa: PLC0415 - prometheus-client only for cron mode

    try:
        service = Service(settings)
    except ConfigError as exc:
        _fail_config(exc, False, flags=False)
    return int(anyio.run(service.run))


def _dry_run(settings: Settings, *, as_json: bool) -> int:
    try:
        plan = anyio.run(dbstash.dry_run, settings)
    except DbstashError as exc:
        log.error("dry run failed: %s", GLOBAL_REDACTOR(str(exc)))
        return exc.exit_code
    if as_json:
        echo(json.dumps({"ok": True, "dry_run": True, **plan}, default=str))
    return EXIT_OK
