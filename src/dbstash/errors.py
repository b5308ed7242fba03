"""Typed errors. Every message is already redacted: it is safe to log, print or send."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


class DbstashError(Exception):
    """Base class of every error dbstash raises on purpose.

    ``stderr_tail`` holds the last lines a tool wrote to stderr (redacted; empty when none), which
    the message repeats on its next lines; ``summary`` is the message without them.
    """

    exit_code: int = 1
    #: the library parameter that lets the refused operation through (``force``, ``allow_unverified``),
    #: named in the message as ``force=True``; the CLI shows its own flag instead
    override: str | None = None
    #: the run's log context (engine, database, backup_id) when it failed inside a job: whoever logs
    #: the error (the CLI, the entrypoint, your code) can log it with these fields
    context: Mapping[str, str] = MappingProxyType({})
    #: a restore's failure that is the stored copy's (unreadable, unreachable, corrupted, not this job's)
    #: and left the target as it was: with several destinations, the restore reads the next one's copy
    copy_at_fault: bool = False

    def __init__(self, message: str = "", *, stderr_tail: str = "") -> None:
        self.stderr_tail = stderr_tail
        self.summary = message
        super().__init__(f"{message}\n{stderr_tail}" if stderr_tail else message)


class ConfigError(DbstashError):
    """A setting is missing or malformed. Raised before anything is dumped, uploaded or deleted.

    ``variable`` names the environment variable (or library parameter) at fault, ``value`` is the
    offending value with secrets already masked, and ``expected`` says what form would be accepted.
    """

    exit_code = 2

    def __init__(self, variable: str, expected: str, value: str | None = None, *, missing: bool = False) -> None:
        if value is not None and "secret-key-" in value.lower():
            value = "(hidden: it holds a private key)"  # an age key pasted where it does not belong, in any case
        self.variable = variable
        self.expected = expected
        self.value = value
        #: the setting is required and was not given (the message says "not set", not "invalid value")
        self.missing = missing
        super().__init__(self.describe(variable))

    def describe(self, name: str) -> str:
        """The message with the setting called *name* (the CLI passes ``DB_URI (--uri)``)."""
        if self.missing:
            return f"{name}: not set; expected {self.expected}"
        shown = "" if self.value is None else f" {self.value!r}"
        return f"{name}: invalid value{shown}; expected {self.expected}"


class BackupNotFound(ConfigError):
    """The backup asked for (``latest``, a name, or a time) is not one of the job's complete backups
    on the remote. ``variable`` is the parameter (``backup``); ``value`` what was asked for."""

    def describe(self, name: str) -> str:
        return f"{name}: {self.expected}"


class BackupFailed(DbstashError):
    """A backup run started but did not produce a committed backup. Nothing remains under the final name."""


class DumpFailed(BackupFailed):
    """The dump tool failed (non-zero exit, killed, or output that proves an incomplete dump)."""

    def __init__(self, message: str, *, exit_status: int | None = None, stderr_tail: str = "") -> None:
        self.exit_status = exit_status
        super().__init__(message, stderr_tail=stderr_tail)


class ToolVersionMismatch(DumpFailed):
    """The installed dump tools cannot dump this server (e.g. every ``pg_dump`` is older than it)."""


class UploadFailed(BackupFailed):
    """rclone (or the remote behind it) did not confirm every byte."""


class BackupTimeout(BackupFailed):
    """The run exceeded its timeout; the dump and the upload were stopped and the upload aborted."""


class BackupCancelled(BackupFailed):
    """The run was cancelled (a signal or the caller); the upload was aborted."""


class StorageError(DbstashError):
    """A storage operation other than the upload itself failed (list, delete, move, stat)."""

    copy_at_fault = True


class ToolNotFound(DbstashError):
    """A required executable (dump tool, rclone) is not installed or not usable."""

    exit_code = 2


class RestoreError(DbstashError):
    """A restore (or verify) did not complete: the backup could not be read or the tool failed."""


class ChecksumMismatch(RestoreError):
    """The bytes read back differ from the backup's manifest: it is corrupted or truncated."""


class RestoreRefused(DbstashError):
    """Nothing was touched: the target already holds data and ``force`` was not given, or the backup
    is not this job's (its manifest names another object)."""

    exit_code = 2


class BackupUntrusted(RestoreRefused):
    """Nothing was touched: with trusted keys, the backup is not signed by one of them for this object
    (the message says which check failed). Exit code 1: the remote's content is at fault, not the input."""

    exit_code = 1
