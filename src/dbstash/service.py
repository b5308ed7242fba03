"""Service mode: backups on a cron schedule, one at a time, with a health and metrics endpoint.

(Over 400 lines on purpose: the scheduler, its signals and its HTTP endpoint share one lifetime.)

``dbstash run`` uses `Service` when ``BACKUP_SCHEDULE`` is a cron expression, and
`run_lock()` around the single run of ``BACKUP_SCHEDULE=once``.
"""

from __future__ import annotations

import errno
import json
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from dbstash.api import BackupResult, run_backup, run_job
from dbstash.errors import ConfigError, DbstashError, RestoreError
from dbstash.jobs.backup import CopyResult
from dbstash.jobs.lock import LockHeld, job_lock
from dbstash.jobs.multi import DatabaseOutcome
from dbstash.logs import get_logger
from dbstash.parts.fanout import DestinationsFailed
from dbstash.settings.config import Settings
from dbstash.settings.schedule import next_run, seconds_until

log = get_logger("dbstash.service")

#: When the next run is due, given the time now (the cron schedule, or a test's own function).
NextTime = Callable[[datetime], datetime]


@dataclass
class ServiceState:
    """What the health endpoint reports. Updated by the scheduler, read by the HTTP thread."""

    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    running: bool = False
    last_status: str | None = None
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_duration: float | None = None
    last_size: int | None = None
    last_remote_path: str | None = None
    next_run_at: datetime | None = None
    verify_status: str | None = None
    verify_at: datetime | None = None
    verify_error: str | None = None
    verify_counts: dict[str, int] | None = None
    verify_running: bool = False
    #: the last run's outcome per database (one entry for a one-database job)
    databases: dict[str, dict[str, str | None]] = field(default_factory=dict)
    #: with several destinations: the last run's outcome on each
    destinations: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def healthy(self) -> bool:
        """200 while the last run (and the last verify, with ``VERIFY_SCHEDULE``) succeeded or none has run yet."""
        return self.last_status in (None, "success") and self.verify_status in (None, "success")

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of ``/healthz``."""

        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "status": "ok" if self.healthy else "failing",
            "running": self.running,
            "last_run": {
                "status": self.last_status,
                "at": iso(self.last_run_at),
                "duration": self.last_duration,
                "size": self.last_size,
                "remote_path": self.last_remote_path,
                "error": self.last_error,
            },
            "databases": self.databases,
            "destinations": self.destinations or None,
            "last_success": iso(self.last_success_at),
            "next_run": iso(self.next_run_at),
            "started_at": iso(self.started_at),
            "last_verify": {
                "status": self.verify_status,
                "at": iso(self.verify_at),
                "error": self.verify_error,
                "counts": self.verify_counts,
            },
        }


def health_error(exc: BaseException) -> str:
    """What /healthz says about a failure: its kind only. The endpoint listens on 0.0.0.0 by default,
    and error texts name hosts, users and paths; the full text is in the logs and notifications."""
    return f"{type(exc).__name__} (the logs have the details)"


class Metrics:
    """Prometheus metrics in a registry of their own (no process-global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.last_success = Gauge(
            "dbstash_last_success_timestamp_seconds", "Unix time of the last successful backup", registry=self.registry
        )
        self.last_duration = Gauge(
            "dbstash_last_run_duration_seconds", "Duration of the last backup run", registry=self.registry
        )
        self.last_size = Gauge(
            "dbstash_last_backup_size_bytes", "Size of the last successful backup", registry=self.registry
        )
        self.next_run = Gauge(
            "dbstash_next_run_timestamp_seconds", "Unix time of the next scheduled run", registry=self.registry
        )
        self.runs = Counter("dbstash_runs", "Backup runs by outcome", ["outcome"], registry=self.registry)
        self.database_runs = Counter(
            "dbstash_database_runs", "Backups by database and outcome", ["database", "outcome"], registry=self.registry
        )
        self.database_last_success = Gauge(
            "dbstash_database_last_success_timestamp_seconds",
            "Unix time of each database's last successful backup",
            ["database"],
            registry=self.registry,
        )
        self.database_last_size = Gauge(
            "dbstash_database_last_backup_size_bytes",
            "Size of each database's last successful backup",
            ["database"],
            registry=self.registry,
        )
        for outcome in ("success", "failure", "skipped"):
            self.runs.labels(outcome=outcome)
        self.destination_runs = Counter(
            "dbstash_destination_runs",
            "Copies by destination and outcome (jobs with several destinations)",
            ["remote", "outcome"],
            registry=self.registry,
        )
        self.destination_last_success = Gauge(
            "dbstash_destination_last_success_timestamp_seconds",
            "Unix time of the last run that committed on each destination (jobs with several destinations)",
            ["remote"],
            registry=self.registry,
        )
        self.verify_last_success = Gauge(
            "dbstash_verify_last_success_timestamp_seconds",
            "Unix time of the last successful restore drill (VERIFY_SCHEDULE)",
            registry=self.registry,
        )
        self.verify_runs = Counter(
            "dbstash_verify_runs", "Restore drills by outcome", ["outcome"], registry=self.registry
        )
        for outcome in ("success", "failure", "skipped"):
            self.verify_runs.labels(outcome=outcome)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class HealthServer:
    """``/healthz`` (200 or 503, JSON) and ``/metrics`` (Prometheus) on a small threaded HTTP server."""

    def __init__(self, state: ServiceState, metrics: Metrics, addr: str, port: int) -> None:
        self.state, self.metrics = state, metrics
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a slow client never holds a thread for long

            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/healthz":
                    with outer.state.lock:
                        healthy, body = outer.state.healthy, json.dumps(outer.state.to_dict()).encode()
                    self._send(200 if healthy else 503, "application/json", body)
                elif self.path.split("?")[0] == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, outer.metrics.render())
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("health: " + format, *args)

        try:
            self.httpd = ThreadingHTTPServer((addr, port), Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    "HEALTH_PORT", f"a free port to serve /healthz on ({exc.strerror})", str(port)
                ) from None
            raise ConfigError(
                "HEALTH_ADDR", f"an address of this host to serve /healthz on ({exc.strerror})", addr
            ) from None
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="dbstash-health", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked the OS for one)."""
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self.thread.start()
        host = self.httpd.server_address[0]
        shown = host.decode() if isinstance(host, bytes) else host
        log.info("health endpoint listening", extra={"health": f"http://{shown}:{self.port}"})

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Service:
    """Runs backups on a schedule until SIGTERM/SIGINT. Never two at once.

    - A tick while a run is in progress is skipped with a warning (``BACKUP_LOCK``), and so is a
      tick while another process holds the lock file.
    - A failed run is logged and recorded; the schedule goes on.
    - SIGTERM/SIGINT between runs: exit code 0 at once. During a run: the run is aborted (the upload
      too, by the commit protocol) and the exit code is 1.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        next_time: NextTime | None = None,
        max_runs: int | None = None,
        on_result: Callable[[BackupResult | None], None] | None = None,
    ) -> None:
        self.settings = settings
        self.state = ServiceState()
        self.metrics = Metrics()
        self._next_time = next_time or (lambda now: next_run(settings.service.schedule, now, settings.zone))
        self._max_runs = max_runs
        self._on_result = on_result
        self._runs = 0
        self._job_size: int | None = None
        self._run_scope: anyio.CancelScope | None = None
        self.exit_code = 0
        self.health: HealthServer | None = None
        if settings.service.health_port:
            self.health = HealthServer(
                self.state, self.metrics, settings.service.health_addr, settings.service.health_port
            )

    async def run(self) -> int:
        """Serve until a signal (or *max_runs* runs, for tests); returns the process exit code."""
        if self.health:
            self.health.start()
        for warning in self.settings.warnings():
            log.warning(warning)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_signals, tg.cancel_scope)
                if self.settings.service.verify_schedule:
                    tg.start_soon(self._verify_loop, tg)
                if self.settings.service.on_start:
                    await self._tick(tg)
                while self._max_runs is None or self._runs < self._max_runs:
                    now = datetime.now(UTC)
                    due = self._next_time(now)
                    with self.state.lock:
                        self.state.next_run_at = due
                    self.metrics.next_run.set(due.timestamp())
                    log.info("next backup at %s", due.isoformat(), extra={"next_run": due.isoformat()})
                    await anyio.sleep(seconds_until(due, datetime.now(UTC)))
                    await self._tick(tg)
                # max_runs reached: let the last run finish, then stop
                while self.state.running:
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
        finally:
            if self.health:
                self.health.stop()
        return self.exit_code

    async def _verify_loop(self, tg: anyio.abc.TaskGroup) -> None:
        """``VERIFY_SCHEDULE``: the restore drill on its own cron, one at a time."""
        assert self.settings.service.verify_schedule is not None
        schedule = self.settings.service.verify_schedule
        while True:
            due = next_run(schedule, datetime.now(UTC), self.settings.zone)
            log.info("next verify at %s", due.isoformat(), extra={"next_verify": due.isoformat()})
            await anyio.sleep(seconds_until(due, datetime.now(UTC)))
            if self.state.verify_running:
                log.warning("skipped a scheduled verify: the previous one is still running")
                self.metrics.verify_runs.labels(outcome="skipped").inc()
                continue
            with self.state.lock:
                self.state.verify_running = True
            tg.start_soon(self.verify_once)

    async def verify_once(self) -> None:
        """One restore drill: record it for /healthz and /metrics, and notify (never ping monitors)."""
        from dbstash.notify import PingNotifier, RunEvent, notify  # noqa: PLC0415
        from dbstash.restoring.verify import averify, averify_many  # noqa: PLC0415

        started = datetime.now(UTC)
        counts: dict[str, int] | None = None
        error: DbstashError | None = None
        try:
            if self.settings.multi:
                run = await averify_many(self.settings)
                counts = run.counts
                if not run.ok:
                    raise RestoreError("verify failed for " + "; ".join(f"{d}: {e}" for d, e in run.failed))
            else:
                result = await averify(self.settings)
                counts = result.counts
        except DbstashError as exc:
            error = exc
            log.error("verify failed: %s", exc, extra={"error_type": type(exc).__name__})
        outcome = "success" if error is None else "failure"
        self.metrics.verify_runs.labels(outcome=outcome).inc()
        if error is None:
            self.metrics.verify_last_success.set(time.time())
        with self.state.lock:
            self.state.verify_running = False
            self.state.verify_status = outcome
            self.state.verify_at = started
            self.state.verify_error = health_error(error) if error else None
            self.state.verify_counts = counts
        c = self.settings.connection
        event = RunEvent(
            stage=outcome,  # type: ignore[arg-type]
            engine=c.engine,
            database=self.settings.database_label,
            backup_id="verify-" + started.strftime("%Y%m%dT%H%M%S"),
            error=str(error) if error else None,
            error_type=type(error).__name__ if error else None,
            kind="verify",
            detail=", ".join(f"{k}={v}" for k, v in (counts or {}).items()) or None,
        )
        notifiers = [n for n in self.settings.notifiers() if not isinstance(n, PingNotifier)]
        with anyio.CancelScope(shield=True), anyio.move_on_after(120):
            await notify(notifiers, event)

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if self.state.running:
                    log.warning("received %s during a backup: aborting it", name)
                    self.exit_code = 1
                else:
                    log.info("received %s between runs: exiting", name)
                scope.cancel()
                return

    async def _tick(self, tg: anyio.abc.TaskGroup) -> None:
        if self.state.running and self.settings.service.lock:
            log.warning("skipped a scheduled backup: the previous one is still running (BACKUP_LOCK=true)")
            self.metrics.runs.labels(outcome="skipped").inc()
            return
        self._runs += 1
        with self.state.lock:
            self.state.running = True
        tg.start_soon(self._one)
        await anyio.sleep(0)  # let the run start before the next tick is computed

    async def _one(self) -> None:
        t0 = time.monotonic()
        started = datetime.now(UTC)
        result: BackupResult | None = None
        error: str | None = None
        outcome = "failure"
        try:
            with job_lock(self.settings):
                if self.settings.multi:
                    job = await run_job(self.settings)
                    self._record_databases(job.outcomes)
                    result = next((o.result for o in job.outcomes if o.result is not None), None)
                    self._record_destinations([c for o in job.outcomes if o.result for c in o.result.copies])
                    outcome = "success" if job.ok else "failure"
                    if not job.ok:
                        error = f"DatabasesFailed: {', '.join(job.failed)} (the logs have the details)"
                        result = None
                    else:
                        self._job_size = job.size
                else:
                    result = await run_backup(self.settings)
                    outcome = "success"
                    self._record_databases((DatabaseOutcome(result.database, result=result),))
                    self._record_destinations(result.copies)
        except LockHeld as exc:
            log.warning("%s", exc)
            outcome, error = "skipped", str(exc)
        except DbstashError as exc:
            error = health_error(exc)
            # the library raises without logging: logged here in full, with the failed run's context
            log.error("backup failed: %s", exc, extra={"error_type": type(exc).__name__, **exc.context})
            if isinstance(exc, DestinationsFailed):
                self._record_destinations([CopyResult(c.destination, c.committed is not None) for c in exc.copies])
        except anyio.get_cancelled_exc_class():
            error = "aborted by a signal"
            self._record(outcome, started, time.monotonic() - t0, None, error)
            raise
        self._record(outcome, started, time.monotonic() - t0, result, error)
        if self._on_result is not None:
            self._on_result(result)

    def _record_destinations(self, copies: Sequence[CopyResult]) -> None:
        """Per-destination metrics and /healthz lines: a destination succeeded when every copy it got committed."""
        if not copies:
            return
        status: dict[str, str] = {}
        for c in copies:
            status[c.remote] = "success" if c.committed and status.get(c.remote) != "failure" else "failure"
        now = time.time()
        for remote, outcome in status.items():
            self.metrics.destination_runs.labels(remote=remote, outcome=outcome).inc()
            if outcome == "success":
                self.metrics.destination_last_success.labels(remote=remote).set(now)
        with self.state.lock:
            self.state.destinations = status

    def _record_databases(self, outcomes: Sequence[DatabaseOutcome]) -> None:
        """Per-database metrics and /healthz lines (one per database of a multi-database job)."""
        for o in outcomes:
            self.metrics.database_runs.labels(database=o.database, outcome="success" if o.ok else "failure").inc()
            if o.result is not None:
                self.metrics.database_last_success.labels(database=o.database).set(o.result.finished_at.timestamp())
                self.metrics.database_last_size.labels(database=o.database).set(o.result.size)
        with self.state.lock:
            self.state.databases = {
                o.database: {"status": "success" if o.ok else "failure", "error_type": o.error_type} for o in outcomes
            }

    def _record(
        self, outcome: str, started: datetime, duration: float, result: BackupResult | None, error: str | None
    ) -> None:
        self.metrics.runs.labels(outcome=outcome).inc()
        with self.state.lock:
            self.state.running = False
            if outcome == "skipped":
                return
            self.state.last_status = outcome
            self.state.last_run_at = started
            self.state.last_duration = round(duration, 3)
            self.state.last_error = error
            if result is not None:
                self.state.last_success_at = result.finished_at
                self.state.last_size = result.size
                self.state.last_remote_path = result.remote_path
        self.metrics.last_duration.set(duration)
        if result is not None:
            size = self._job_size if self._job_size is not None else result.size
            self.metrics.last_success.set(result.finished_at.timestamp())
            self.metrics.last_size.set(size)
            with self.state.lock:
                self.state.last_size = size
        self._job_size = None
