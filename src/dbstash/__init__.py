"""dbstash: stream database dumps straight into any rclone remote, never leaving a truncated backup.

Examples:
    >>> import dbstash
    >>> result = dbstash.backup("sqlite:///srv/app.db", remote="/srv/backups")  # doctest: +SKIP
    >>> print(result.remote_path, result.size, result.sha256)  # doctest: +SKIP

The package's layers: ``parts`` (Source, Transform, Sink, the Pipeline), ``storage`` (rclone
destinations), ``engines``, ``jobs`` (a backup run, many databases, retention, prune),
``restoring`` (list, restore, verify), ``settings``, ``notify`` and ``service``; see
docs/architecture.md.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dbstash._version import __version__ as __version__
from dbstash.errors import (
    BackupCancelled as BackupCancelled,
    BackupFailed as BackupFailed,
    BackupNotFound as BackupNotFound,
    BackupTimeout as BackupTimeout,
    BackupUntrusted as BackupUntrusted,
    ChecksumMismatch as ChecksumMismatch,
    ConfigError as ConfigError,
    DbstashError as DbstashError,
    DumpFailed as DumpFailed,
    RestoreError as RestoreError,
    RestoreRefused as RestoreRefused,
    StorageError as StorageError,
    ToolNotFound as ToolNotFound,
    ToolVersionMismatch as ToolVersionMismatch,
    UploadFailed as UploadFailed,
)

#: The public names beyond the errors, by the module that defines them: the one table. They are
#: imported on first use (PEP 562): ``import dbstash`` alone takes 27 ms instead of 94 ms, which
#: framework users pay where they never back up (an Airflow DAG file is parsed every 30 s); a backup
#: run saves only ~5 ms (bench/bench_imports.py). The ``TYPE_CHECKING`` block below says the same
#: for type checkers; tests/unit/test_package.py checks the two agree and that every name resolves.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "dbstash.api": (
        "BackupResult",
        "JobResult",
        "PruneResult",
        "abackup",
        "abackup_many",
        "aprune",
        "arun",
        "backup",
        "backup_many",
        "dry_run",
        "plan_retention",
        "prune",
        "run_backup",
        "run_job",
    ),
    "dbstash.settings.config": ("Settings",),
    "dbstash.jobs.databases": (
        "GLOBALS_LABEL",
        "DatabaseSelection",
    ),
    "dbstash.parts.encryption": (
        "AgeEncryption",
        "AgeIdentity",
    ),
    "dbstash.engines": (
        "ENGINES",
        "Connection",
        "DumpCommand",
        "DumpOptions",
        "Engine",
        "engine_for_uri",
        "get_engine",
    ),
    "dbstash.jobs.hooks": (
        "Hook",
        "HookFailed",
        "ShellHook",
    ),
    "dbstash.jobs.multi": ("DatabaseOutcome",),
    "dbstash.jobs.naming": ("NameTemplate",),
    "dbstash.notify": (
        "DiscordNotifier",
        "EmailNotifier",
        "Notifier",
        "PingNotifier",
        "RunEvent",
        "SlackNotifier",
        "WebhookNotifier",
        "webhook_notifier",
    ),
    "dbstash.notify.apprise": ("AppriseNotifier",),
    "dbstash.parts.fanout": (
        "DestinationsFailed",
        "FanOut",
    ),
    "dbstash.parts.pipeline": (
        "Pipeline",
        "PipelineResult",
    ),
    "dbstash.restoring.restore": (
        "BackupInfo",
        "RestoreResult",
        "RestoreRun",
        "alist_backups",
        "arestore",
        "arestore_many",
        "list_backups",
        "restore",
        "restore_many",
    ),
    "dbstash.jobs.retention": (
        "Backup",
        "Decision",
        "RetentionPlan",
        "RetentionPolicy",
    ),
    "dbstash.jobs.signing": (
        "SigningKey",
        "TrustedKeys",
    ),
    "dbstash.parts.sink": (
        "Committed",
        "Copy",
        "RemoteEntry",
        "Sink",
        "SinkUpload",
        "StreamSink",
    ),
    "dbstash.parts.source": (
        "CommandSource",
        "DumpSource",
        "Source",
        "SourceAttribute",
        "SourceStream",
        "StreamSource",
    ),
    "dbstash.storage.base": (
        "Catalog",
        "Storage",
        "Upload",
    ),
    "dbstash.storage.memory": ("MemorySink",),
    "dbstash.storage.rclone_cli": ("RcloneCliStorage",),
    "dbstash.storage.rclone_rc": ("RcloneRcStorage",),
    "dbstash.settings.options": ("RcloneOptions", "RcOptions"),
    "dbstash.parts.transforms": (
        "Compress",
        "ProcessTransform",
        "Progress",
        "Transform",
        "TransformStep",
    ),
    "dbstash.restoring.verify": (
        "VerifyResult",
        "VerifyRun",
        "averify",
        "averify_many",
        "verify",
        "verify_many",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:
    from dbstash.api import (
        BackupResult as BackupResult,
        JobResult as JobResult,
        PruneResult as PruneResult,
        abackup as abackup,
        abackup_many as abackup_many,
        aprune as aprune,
        arun as arun,
        backup as backup,
        backup_many as backup_many,
        dry_run as dry_run,
        plan_retention as plan_retention,
        prune as prune,
        run_backup as run_backup,
        run_job as run_job,
    )
    from dbstash.engines import (
        ENGINES as ENGINES,
        Connection as Connection,
        DumpCommand as DumpCommand,
        DumpOptions as DumpOptions,
        Engine as Engine,
        engine_for_uri as engine_for_uri,
        get_engine as get_engine,
    )
    from dbstash.jobs.databases import GLOBALS_LABEL as GLOBALS_LABEL, DatabaseSelection as DatabaseSelection
    from dbstash.jobs.hooks import Hook as Hook, HookFailed as HookFailed, ShellHook as ShellHook
    from dbstash.jobs.multi import DatabaseOutcome as DatabaseOutcome
    from dbstash.jobs.naming import NameTemplate as NameTemplate
    from dbstash.jobs.retention import (
        Backup as Backup,
        Decision as Decision,
        RetentionPlan as RetentionPlan,
        RetentionPolicy as RetentionPolicy,
    )
    from dbstash.jobs.signing import SigningKey as SigningKey, TrustedKeys as TrustedKeys
    from dbstash.notify import (
        DiscordNotifier as DiscordNotifier,
        EmailNotifier as EmailNotifier,
        Notifier as Notifier,
        PingNotifier as PingNotifier,
        RunEvent as RunEvent,
        SlackNotifier as SlackNotifier,
        WebhookNotifier as WebhookNotifier,
        webhook_notifier as webhook_notifier,
    )
    from dbstash.notify.apprise import AppriseNotifier as AppriseNotifier
    from dbstash.parts.encryption import AgeEncryption as AgeEncryption, AgeIdentity as AgeIdentity
    from dbstash.parts.fanout import DestinationsFailed as DestinationsFailed, FanOut as FanOut
    from dbstash.parts.pipeline import Pipeline as Pipeline, PipelineResult as PipelineResult
    from dbstash.parts.sink import (
        Committed as Committed,
        Copy as Copy,
        RemoteEntry as RemoteEntry,
        Sink as Sink,
        SinkUpload as SinkUpload,
        StreamSink as StreamSink,
    )
    from dbstash.parts.source import (
        CommandSource as CommandSource,
        DumpSource as DumpSource,
        Source as Source,
        SourceAttribute as SourceAttribute,
        SourceStream as SourceStream,
        StreamSource as StreamSource,
    )
    from dbstash.parts.transforms import (
        Compress as Compress,
        ProcessTransform as ProcessTransform,
        Progress as Progress,
        Transform as Transform,
        TransformStep as TransformStep,
    )
    from dbstash.restoring.restore import (
        BackupInfo as BackupInfo,
        RestoreResult as RestoreResult,
        RestoreRun as RestoreRun,
        alist_backups as alist_backups,
        arestore as arestore,
        arestore_many as arestore_many,
        list_backups as list_backups,
        restore as restore,
        restore_many as restore_many,
    )
    from dbstash.restoring.verify import (
        VerifyResult as VerifyResult,
        VerifyRun as VerifyRun,
        averify as averify,
        averify_many as averify_many,
        verify as verify,
        verify_many as verify_many,
    )
    from dbstash.settings.config import Settings as Settings
    from dbstash.settings.options import RcloneOptions as RcloneOptions, RcOptions as RcOptions
    from dbstash.storage.base import Catalog as Catalog, Storage as Storage, Upload as Upload
    from dbstash.storage.memory import MemorySink as MemorySink
    from dbstash.storage.rclone_cli import RcloneCliStorage as RcloneCliStorage
    from dbstash.storage.rclone_rc import RcloneRcStorage as RcloneRcStorage


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:  # a subpackage or module (dbstash.parts, ...) that no one imported yet
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


#: the errors imported above, and every name of the table
_ERRORS = [name for name, value in globals().items() if isinstance(value, type) and issubclass(value, DbstashError)]
__all__ = sorted(["__version__", *_ERRORS, *_MODULE_OF])  # noqa: PLE0605 - computed from the table


# -- the flat module paths of dbstash 0.2 (dbstash.pipeline, dbstash.config, ...), kept importable ------
#: Old module path -> where it lives now. ``dbstash.restore``, ``dbstash.verify`` and ``dbstash.prune``
#: are not here: those names are the functions (their modules are dbstash.restoring.restore, ...).
MOVED_MODULES = {
    "dbstash.pipeline": "dbstash.parts.pipeline",
    "dbstash.relay": "dbstash.parts.relay",
    "dbstash.process": "dbstash.parts.process",
    "dbstash.source": "dbstash.parts.source",
    "dbstash.sink": "dbstash.parts.sink",
    "dbstash.transforms": "dbstash.parts.transforms",
    "dbstash.compression": "dbstash.parts.compression",
    "dbstash.encryption": "dbstash.parts.encryption",
    "dbstash.job": "dbstash.jobs.backup",
    "dbstash.multi": "dbstash.jobs.multi",
    "dbstash.retention": "dbstash.jobs.retention",
    "dbstash.naming": "dbstash.jobs.naming",
    "dbstash.manifest": "dbstash.jobs.manifest",
    "dbstash.modes": "dbstash.jobs.modes",
    "dbstash.hooks": "dbstash.jobs.hooks",
    "dbstash.lock": "dbstash.jobs.lock",
    "dbstash.databases": "dbstash.jobs.databases",
    "dbstash.dryrun": "dbstash.jobs.dryrun",
    "dbstash.signing": "dbstash.jobs.signing",
    "dbstash.remote": "dbstash.jobs.remote",
    "dbstash.listing": "dbstash.restoring.listing",
    "dbstash.config": "dbstash.settings.config",
    "dbstash.envparse": "dbstash.settings.env",
    "dbstash.envvars": "dbstash.settings.envvars",
    "dbstash.schedule": "dbstash.settings.schedule",
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a moved module's old path as the new module itself (one object: patches and
    isinstance checks see the same thing), with a DeprecationWarning."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        new = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} moved to {new}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


sys.meta_path.append(_MovedFinder())
