"""dbstash: stream database dumps straight into any rclone remote, never leaving a truncated backup.

Example:
    >>> import dbstash
    >>> result = dbstash.backup("sqlite:///srv/app.db", remote="/srv/backups")  # doctest: +SKIP
    >>> print(result.remote_path, result.size, result.sha256)  # doctest: +SKIP
"""

from dbstash._version import __version__
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
from dbstash.engines import ENGINES, Connection, DumpCommand, DumpOptions, Engine, engine_for_uri, get_engine
from dbstash.errors import (
    BackupCancelled,
    BackupFailed,
    BackupTimeout,
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
from dbstash.sink import Sink, SinkUpload, StreamSink
from dbstash.source import CommandSource, DumpSource, Source, SourceStream, StreamSource
from dbstash.storage.base import Catalog, RemoteEntry, Storage, Upload
from dbstash.storage.memory import MemorySink
from dbstash.storage.rclone_cli import RcloneCliStorage, RcloneOptions
from dbstash.storage.rclone_rc import RcloneRcStorage, RcOptions
from dbstash.transforms import Compress, Progress, Transform, TransformStep
from dbstash.verify import VerifyResult, VerifyRun, averify, averify_many, verify, verify_many

__all__ = [
    "ENGINES",
    "GLOBALS_LABEL",
    "Backup",
    "BackupCancelled",
    "BackupFailed",
    "BackupInfo",
    "BackupResult",
    "BackupTimeout",
    "Catalog",
    "ChecksumMismatch",
    "CommandSource",
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
