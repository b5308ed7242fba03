"""Many databases per job: one pipeline per database (and one for the server's globals), one result each.

A multi-database job (``DB_NAME=app,billing`` or ``all``) is a composition of one-database runs:
each database gets its own object under its own ``{db}`` name, its own manifest, its own retention
series and its own line in the result. One database failing does not stop the others; the run's
outcome is a failure if any failed. Hooks and notifications happen once per run.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import anyio

from dbstash.engines.base import Engine
from dbstash.errors import ConfigError, DbstashError, DumpFailed, ToolNotFound
from dbstash.jobs.backup import BackupResult, Envelope, enveloped, run_one
from dbstash.jobs.databases import GLOBALS_LABEL
from dbstash.jobs.hooks import Hook
from dbstash.logs import get_logger, log_context
from dbstash.notify import Notifier, RunEvent
from dbstash.notify.base import RunItem
from dbstash.parts.pipeline import Progress
from dbstash.redact import GLOBAL_REDACTOR
from dbstash.settings.config import Settings
from dbstash.storage.base import Storage

log = get_logger("dbstash")

#: Why a run that selected nothing (``DB_EXCLUDE='*'`` without the globals) fails.
NOTHING_SELECTED = "the selection matches no database on the server and the globals are off: nothing was backed up"
#: Seconds to list the server's databases at the start of a run.
LIST_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class DatabaseOutcome:
    """One database (or the globals, ``_globals``) of a multi-database run: its backup, or why it failed."""

    database: str
    result: BackupResult | None = None
    error: str | None = None
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        """Whether this database's backup was committed."""
        return self.result is not None

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data."""
        data: dict[str, object] = {"database": self.database, "ok": self.ok}
        if self.result is not None:
            data.update(self.result.to_dict())
            data["database"] = self.database
        else:
            data.update(error=self.error, error_type=self.error_type)
        return data


@dataclass(frozen=True, slots=True)
class JobResult:
    """A multi-database run: one [`DatabaseOutcome`][dbstash.DatabaseOutcome] per database, the globals first.

    Every committed object shares the run's ``backup_id`` (in its manifest), which is how ``restore
    --database all`` finds the databases of one run.

    Examples:
        >>> from datetime import UTC, datetime
        >>> now = datetime.now(UTC)
        >>> run = JobResult("pg", "a1b2c3d4e5f6", now, now, 1.5,
        ...                 (DatabaseOutcome("app", error="pg_dump exited with status 1", error_type="DumpFailed"),))
        >>> run.ok, run.failed, run.exit_code, run.size
        (False, ['app'], 1, 0)
    """

    engine: str
    backup_id: str
    started_at: datetime
    finished_at: datetime
    duration: float
    outcomes: tuple[DatabaseOutcome, ...]
    #: databases on the server that the selection left out (system databases, ``DB_EXCLUDE``)
    excluded: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every database (and the globals) was backed up; a run that backed up nothing is not ok."""
        return bool(self.outcomes) and all(o.ok for o in self.outcomes)

    @property
    def failed(self) -> list[str]:
        """The databases whose backup failed."""
        return [o.database for o in self.outcomes if not o.ok]

    @property
    def size(self) -> int:
        """Bytes stored by this run, all databases together."""
        return sum(o.result.size for o in self.outcomes if o.result is not None)

    @property
    def exit_code(self) -> int:
        """0 when every database was backed up, else 1."""
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data."""
        return {
            "ok": self.ok,
            "engine": self.engine,
            "backup_id": self.backup_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration": self.duration,
            "size": self.size,
            "failed": self.failed,
            "error": None if self.outcomes else NOTHING_SELECTED,
            "excluded": list(self.excluded),
            "databases": [o.to_dict() for o in self.outcomes],
        }


async def resolve_databases(settings: Settings, engine: Engine | None = None) -> tuple[list[str], list[str]]:
    """(the databases this run backs up, the ones on the server it leaves out), asking the server.

    Raises [`DumpFailed`][dbstash.DumpFailed] when the server cannot be asked.
    """
    assert settings.databases is not None
    engine = engine or settings.engine()
    selection = settings.databases
    if not selection.every:
        return sorted(selection.names), []
    try:
        with anyio.fail_after(LIST_TIMEOUT):
            available = await engine.list_databases(settings.connection)
    except TimeoutError:
        raise DumpFailed(f"the server did not list its databases within {LIST_TIMEOUT:.0f}s") from None
    except ToolNotFound:
        raise
    except DbstashError as exc:
        raise DumpFailed(
            f"cannot list the databases of {settings.connection.display_uri()}: {exc}",
            stderr_tail=exc.stderr_tail,
        ) from None
    chosen = selection.resolve(available, system=engine.system_databases)
    return chosen, [name for name in available if name not in chosen]


async def run_job(
    settings: Settings,
    *,
    progress: Progress | None = None,
    storage: Storage | None = None,
    notifiers: Sequence[Notifier] | None = None,
    pre_hook: Hook | None = None,
    post_hook: Hook | None = None,
) -> JobResult:
    """Back up every database *settings* select (``settings.databases``), each as its own object.

    Returns a [`JobResult`][dbstash.JobResult] whether or not every database succeeded (check ``.ok`` /
    ``.exit_code``); raises only when the run could not start (pre-hook, listing the databases) or
    was cancelled, in which case nothing of the databases still running is committed.
    """
    if settings.databases is None:
        raise TypeError("run_job() needs settings that select several databases (databases=...); use run_backup()")
    engine = settings.engine()
    backup_id = secrets.token_hex(6)
    selection = settings.databases
    t0 = time.monotonic()
    started = datetime.now(UTC)

    async def work(stores: Sequence[Storage]) -> JobResult:
        names, excluded = await resolve_databases(settings, engine)
        log.info(
            "backing up %d database(s)%s: %s",
            len(names),
            " and the globals" if selection.include_globals else "",
            ", ".join(names) or "none",
            extra={"databases": names, "excluded": excluded, "parallel": selection.parallel},
        )
        if not names and not selection.include_globals:
            log.error("%s (%s)", NOTHING_SELECTED, selection.describe())
        elif not names:
            log.warning("the selection (%s) matches no database on the server", selection.describe())
        outcomes = await _run_all(settings, engine, stores, names, backup_id=backup_id, progress=progress)
        result = JobResult(
            engine=engine.key,
            backup_id=backup_id,
            started_at=started,
            finished_at=datetime.now(UTC),
            duration=round(time.monotonic() - t0, 3),
            outcomes=tuple(outcomes),
            excluded=tuple(excluded),
        )
        log.info(
            "run complete: %d of %d backed up%s",
            len(outcomes) - len(result.failed),
            len(outcomes),
            f"; FAILED: {', '.join(result.failed)}" if result.failed else "",
            extra={"failed": result.failed, "size": result.size, "duration": result.duration},
        )
        return result

    return await enveloped(
        settings,
        Envelope(engine.key, settings.database_label, backup_id, storage, notifiers, pre_hook, post_hook),
        remote_path=lambda stores: stores[0].path(""),
        work=work,
        outcome=_job_event,
    )


async def _run_all(
    settings: Settings,
    engine: Engine,
    stores: Sequence[Storage],
    names: Sequence[str],
    *,
    backup_id: str,
    progress: Progress | None,
) -> list[DatabaseOutcome]:
    """The globals first, then the databases, *parallel* at a time; each failure stays its own.

    Every object of the run is named with the run's start time, so one run's objects share their
    time stamp (``app-2026-02-07-020000.dump``, ``billing-2026-02-07-020000.dump``, ...).
    """
    assert settings.databases is not None
    started = datetime.now(settings.zone)
    outcomes: dict[str, DatabaseOutcome] = {}  # the databases' (a database may be called _globals too)
    globals_outcome: list[DatabaseOutcome] = []
    parallel = settings.databases.parallel
    if settings.databases.include_globals:
        globals_outcome.append(
            await _one(settings.for_globals(), engine, stores, backup_id=backup_id, started=started, progress=None)
        )
    limiter = anyio.CapacityLimiter(parallel)

    async def one(name: str) -> None:
        async with limiter:
            try:  # a name that cannot be a database's settings (an object name) fails its own line only
                if name == GLOBALS_LABEL:
                    raise ConfigError(
                        "DB_NAME", f"a database not named {GLOBALS_LABEL} (the name of the job's globals series)", name
                    )
                part = settings.for_database(name)
                part.template()
            except DbstashError as exc:
                log.error("backup of %s failed: %s", name, exc, extra={"error_type": type(exc).__name__})
                outcomes[name] = DatabaseOutcome(name, error=GLOBAL_REDACTOR(str(exc)), error_type=type(exc).__name__)
                return
            outcomes[name] = await _one(
                part,
                engine,
                stores,
                backup_id=backup_id,
                started=started,
                progress=progress if parallel == 1 else None,
            )

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(one, name)
    return globals_outcome + [outcomes[k] for k in names]


async def _one(
    settings: Settings,
    engine: Engine,
    stores: Sequence[Storage],
    *,
    backup_id: str,
    started: datetime,
    progress: Progress | None,
) -> DatabaseOutcome:
    """One database's run (the one-database job without hooks and notifications)."""
    label = settings.database_label
    with log_context(database=label):
        try:
            template = settings.template()
            name = template.render(started, uuid=backup_id[:8])
            result = await run_one(
                settings,
                engine,
                template,
                stores,
                backup_id=backup_id,
                database=label,
                progress=progress,
                started=started,
                name=name,
            )
        except DbstashError as exc:
            log.error("backup of %s failed: %s", label, exc, extra={"error_type": type(exc).__name__})
            return DatabaseOutcome(label, error=GLOBAL_REDACTOR(str(exc)), error_type=type(exc).__name__)
        except Exception as exc:  # a bug in one database's run must not cost the others theirs
            log.exception("backup of %s failed unexpectedly", label)
            return DatabaseOutcome(label, error=GLOBAL_REDACTOR(f"{type(exc).__name__}: {exc}"), error_type="Bug")
    return DatabaseOutcome(label, result=result)


def _job_event(result: JobResult, start: RunEvent) -> RunEvent:
    """The run's one notification: a line per database."""
    items = tuple(
        RunItem(
            o.database,
            o.ok,
            size=o.result.size if o.result else None,
            remote_path=o.result.remote_path if o.result else None,
            error=o.error,
            error_type=o.error_type,
        )
        for o in result.outcomes
    )
    failed = result.failed
    summary = f"{len(failed)} of {len(items)} failed: {', '.join(failed)}" if failed else None
    return replace(
        start,
        stage="success" if result.ok else "failure",
        size=result.size,
        duration=result.duration,
        items=items,
        error=summary or (None if items else NOTHING_SELECTED),
        error_type="DatabasesFailed" if failed else (None if items else "NothingSelected"),
    )
