"""dbstash: stream database dumps straight into any rclone remote, never leaving a truncated backup.

Example:
    >>> import dbstash
    >>> result = dbstash.backup("sqlite:///srv/app.db", remote="/srv/backups")  # doctest: +SKIP
    >>> print(result.remote_path, result.size, result.sha256)  # doctest: +SKIP
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from dbstash._version import __version__
from dbstash.errors import (
    BackupCancelled,
    BackupFailed,
    BackupTimeout,
    BackupUntrusted,
    ChecksumMismatch,
    ConfigError,
    DbstashError,
    DumpFailed,
    RestoreError,
    RestoreRefused,
    StorageError,
    ToolNotFound,
    ToolVersionMismatch,
    UploadFailed,
)

#: Functions named like their modules: the first import of ``dbstash.restore`` (the module) makes
#: Python set the package's attribute ``restore`` to it, hiding the function. The package's class
#: (below) refuses that one assignment, so the function stays what ``dbstash.restore`` means while
#: the modules load only when used (a backup needs neither a restore's nor a verify's code).
_SHADOWED = frozenset({"prune", "restore", "verify"})


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return  # the submodule stays reachable as sys.modules["dbstash." + name]
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if TYPE_CHECKING:
    from dbstash.api import (
        BackupResult,
        JobResult,
        PruneResult,
        abackup,
        abackup_many,
        aprune,
        arun,
        backup,
        backup_many,
        dry_run,
        plan_retention,
        prune,
        run_backup,
        run_job,
    )
    from dbstash.config import Settings
    from dbstash.databases import GLOBALS_LABEL, DatabaseSelection
    from dbstash.encryption import AgeEncryption, AgeIdentity
    from dbstash.engines import ENGINES, Connection, DumpCommand, DumpOptions, Engine, engine_for_uri, get_engine
    from dbstash.errors import (
        BackupCancelled,
        BackupFailed,
        BackupTimeout,
        BackupUntrusted,
        ChecksumMismatch,
        ConfigError,
        DbstashError,
        DumpFailed,
        RestoreError,
        RestoreRefused,
        StorageError,
        ToolNotFound,
        ToolVersionMismatch,
        UploadFailed,
    )
    from dbstash.hooks import Hook, HookFailed, ShellHook
    from dbstash.multi import DatabaseOutcome
    from dbstash.naming import NameTemplate
    from dbstash.notify import (
        DiscordNotifier,
        EmailNotifier,
        Notifier,
        PingNotifier,
        RunEvent,
        SlackNotifier,
        WebhookNotifier,
        webhook_notifier,
    )
    from dbstash.notify.apprise import AppriseNotifier
    from dbstash.pipeline import Pipeline, PipelineResult
    from dbstash.restore import (
        BackupInfo,
        RestoreResult,
        RestoreRun,
        alist_backups,
        arestore,
        arestore_many,
        list_backups,
        restore,
        restore_many,
    )
    from dbstash.retention import Backup, Decision, RetentionPlan, RetentionPolicy
    from dbstash.signing import SigningKey, TrustedKeys
    from dbstash.sink import Committed, RemoteEntry, Sink, SinkUpload, StreamSink
    from dbstash.source import CommandSource, DumpSource, Source, SourceStream, StreamSource
    from dbstash.storage.base import Catalog, Storage, Upload
    from dbstash.storage.memory import MemorySink
    from dbstash.storage.rclone_cli import RcloneCliStorage, RcloneOptions
    from dbstash.storage.rclone_rc import RcloneRcStorage, RcOptions
    from dbstash.transforms import Compress, ProcessTransform, Progress, Transform, TransformStep
    from dbstash.verify import VerifyResult, VerifyRun, averify, averify_many, verify, verify_many

#: Everything else is imported on first use (PEP 562): ``import dbstash`` stays cheap, and a run of the
#: CLI loads only the parts it uses (a restore's, a verify's or a dry run's modules are not on a
#: backup's path). Each name's module is below.
_LAZY = {
    "prune": "dbstash.prune",
    "restore": "dbstash.restore",
    "verify": "dbstash.verify",
    "BackupResult": "dbstash.api",
    "JobResult": "dbstash.api",
    "PruneResult": "dbstash.api",
    "abackup": "dbstash.api",
    "abackup_many": "dbstash.api",
    "aprune": "dbstash.api",
    "arun": "dbstash.api",
    "backup": "dbstash.api",
    "backup_many": "dbstash.api",
    "dry_run": "dbstash.api",
    "plan_retention": "dbstash.api",
    "run_backup": "dbstash.api",
    "run_job": "dbstash.api",
    "Settings": "dbstash.config",
    "GLOBALS_LABEL": "dbstash.databases",
    "DatabaseSelection": "dbstash.databases",
    "ENGINES": "dbstash.engines",
    "Connection": "dbstash.engines",
    "DumpCommand": "dbstash.engines",
    "DumpOptions": "dbstash.engines",
    "Engine": "dbstash.engines",
    "engine_for_uri": "dbstash.engines",
    "get_engine": "dbstash.engines",
    "Hook": "dbstash.hooks",
    "HookFailed": "dbstash.hooks",
    "ShellHook": "dbstash.hooks",
    "DatabaseOutcome": "dbstash.multi",
    "NameTemplate": "dbstash.naming",
    "DiscordNotifier": "dbstash.notify",
    "EmailNotifier": "dbstash.notify",
    "Notifier": "dbstash.notify",
    "PingNotifier": "dbstash.notify",
    "RunEvent": "dbstash.notify",
    "SlackNotifier": "dbstash.notify",
    "WebhookNotifier": "dbstash.notify",
    "webhook_notifier": "dbstash.notify",
    "Pipeline": "dbstash.pipeline",
    "PipelineResult": "dbstash.pipeline",
    "BackupInfo": "dbstash.restore",
    "RestoreResult": "dbstash.restore",
    "RestoreRun": "dbstash.restore",
    "alist_backups": "dbstash.restore",
    "arestore": "dbstash.restore",
    "arestore_many": "dbstash.restore",
    "list_backups": "dbstash.restore",
    "restore_many": "dbstash.restore",
    "Backup": "dbstash.retention",
    "Decision": "dbstash.retention",
    "RetentionPlan": "dbstash.retention",
    "RetentionPolicy": "dbstash.retention",
    "Committed": "dbstash.sink",
    "Sink": "dbstash.sink",
    "SinkUpload": "dbstash.sink",
    "StreamSink": "dbstash.sink",
    "CommandSource": "dbstash.source",
    "DumpSource": "dbstash.source",
    "Source": "dbstash.source",
    "SourceStream": "dbstash.source",
    "StreamSource": "dbstash.source",
    "Catalog": "dbstash.storage.base",
    "RemoteEntry": "dbstash.sink",
    "Storage": "dbstash.storage.base",
    "Upload": "dbstash.storage.base",
    "MemorySink": "dbstash.storage.memory",
    "RcloneCliStorage": "dbstash.storage.rclone_cli",
    "RcloneOptions": "dbstash.storage.rclone_cli",
    "RcloneRcStorage": "dbstash.storage.rclone_rc",
    "RcOptions": "dbstash.storage.rclone_rc",
    "Compress": "dbstash.transforms",
    "ProcessTransform": "dbstash.transforms",
    "AgeEncryption": "dbstash.encryption",
    "AgeIdentity": "dbstash.encryption",
    "SigningKey": "dbstash.signing",
    "TrustedKeys": "dbstash.signing",
    "AppriseNotifier": "dbstash.notify.apprise",
    "Progress": "dbstash.transforms",
    "Transform": "dbstash.transforms",
    "TransformStep": "dbstash.transforms",
    "VerifyResult": "dbstash.verify",
    "VerifyRun": "dbstash.verify",
    "averify": "dbstash.verify",
    "averify_many": "dbstash.verify",
    "verify_many": "dbstash.verify",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:  # a submodule (dbstash.api, ...) that no one imported yet
        try:
            return importlib.import_module(f"dbstash.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"dbstash.{name}":
                raise
        raise AttributeError(f"module 'dbstash' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "ENGINES",
    "GLOBALS_LABEL",
    "AgeEncryption",
    "AgeIdentity",
    "AppriseNotifier",
    "Backup",
    "BackupCancelled",
    "BackupFailed",
    "BackupInfo",
    "BackupResult",
    "BackupTimeout",
    "BackupUntrusted",
    "Catalog",
    "ChecksumMismatch",
    "CommandSource",
    "Committed",
    "Compress",
    "ConfigError",
    "Connection",
    "DatabaseOutcome",
    "DatabaseSelection",
    "DbstashError",
    "Decision",
    "DiscordNotifier",
    "DumpCommand",
    "DumpFailed",
    "DumpOptions",
    "DumpSource",
    "EmailNotifier",
    "Engine",
    "Hook",
    "HookFailed",
    "JobResult",
    "MemorySink",
    "NameTemplate",
    "Notifier",
    "PingNotifier",
    "Pipeline",
    "PipelineResult",
    "ProcessTransform",
    "Progress",
    "PruneResult",
    "RcOptions",
    "RcloneCliStorage",
    "RcloneOptions",
    "RcloneRcStorage",
    "RemoteEntry",
    "RestoreError",
    "RestoreRefused",
    "RestoreResult",
    "RestoreRun",
    "RetentionPlan",
    "RetentionPolicy",
    "RunEvent",
    "Settings",
    "ShellHook",
    "SigningKey",
    "Sink",
    "SinkUpload",
    "SlackNotifier",
    "Source",
    "SourceStream",
    "Storage",
    "StorageError",
    "StreamSink",
    "StreamSource",
    "ToolNotFound",
    "ToolVersionMismatch",
    "Transform",
    "TransformStep",
    "TrustedKeys",
    "Upload",
    "UploadFailed",
    "VerifyResult",
    "VerifyRun",
    "WebhookNotifier",
    "__version__",
    "abackup",
    "abackup_many",
    "alist_backups",
    "aprune",
    "arestore",
    "arestore_many",
    "arun",
    "averify",
    "averify_many",
    "backup",
    "backup_many",
    "dry_run",
    "engine_for_uri",
    "get_engine",
    "list_backups",
    "plan_retention",
    "prune",
    "restore",
    "restore_many",
    "run_backup",
    "run_job",
    "verify",
    "verify_many",
    "webhook_notifier",
]
