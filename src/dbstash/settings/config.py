"""Settings: typed, immutable, validated once; built in code or from the spec's environment variables.

(Over 400 lines on purpose: the Settings types and the library-side checks, one field list.)
"""

from __future__ import annotations

import hashlib
import math
import os
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from dbstash.engines import engine_for_uri, get_engine
from dbstash.engines.base import Connection, DumpOptions, Engine, check_ports
from dbstash.errors import ConfigError
from dbstash.jobs.databases import GLOBALS_LABEL, DatabaseSelection, parse_selection
from dbstash.jobs.hooks import ShellHook
from dbstash.jobs.naming import DEFAULT_TEMPLATE, NameTemplate
from dbstash.jobs.retention import RetentionPolicy
from dbstash.jobs.signing import SigningKey, TrustedKeys
from dbstash.notify import EmailNotifier, Notifier, PingNotifier, webhook_notifier
from dbstash.notify.base import NotifyOn
from dbstash.parts.compression import StreamCompression, parse_compress
from dbstash.parts.encryption import AgeEncryption, AgeIdentity, describe as describe_encryption
from dbstash.redact import GLOBAL_REDACTOR
from dbstash.settings.env import (
    DEFAULT_HEALTH_PORT,
    DEFAULT_TEMP_DIR,
    check_extension,
    check_rc,
    check_tz,
    parse_encryption,
    parse_identity_file,
    parse_remotes,
    parse_required,
    parse_retention,
    read_secret_file,
    settings_from_env,
)
from dbstash.settings.options import DEFAULT_STALL_TIMEOUT, RcloneOptions, RcOptions

MODES = ("stream", "directory", "tar")


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """How the entrypoint runs jobs (``BACKUP_SCHEDULE``, ``BACKUP_LOCK``, ``HEALTH_*``, ``LOG_*``, ...).

    Nothing in a single backup reads these; `Service` and the CLI do.
    """

    schedule: str = "once"
    log_level: str = "INFO"
    log_format: str = "json"
    on_start: bool = False
    lock: bool = True
    lock_file: str | None = None
    dry_run: bool = False
    health_port: int = DEFAULT_HEALTH_PORT
    health_addr: str = "0.0.0.0"  # noqa: S104 - the container's health endpoint is meant to be reachable
    #: ``VERIFY_SCHEDULE``: a cron expression on which service mode runs ``verify``
    verify_schedule: str | None = None


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """Who hears about a run (``NOTIFY_*``) and what runs around it (``HOOK_*``); builds the parts."""

    on: str = "failure"
    webhook_url: str | None = field(default=None, repr=False)
    webhook_format: str = "auto"
    ping_url: str | None = field(default=None, repr=False)
    email_to: tuple[str, ...] = ()
    email_from: str | None = None
    smtp_url: str | None = field(default=None, repr=False)
    smtp_password: str | None = field(default=None, repr=False)
    timeout: float = 10.0
    hook_pre: str | None = None
    hook_post: str | None = None
    hook_timeout: float = 300.0
    #: notifiers of installed packages (``dbstash.notifiers`` entry points), configured by their own variables
    plugins: tuple[Notifier, ...] = field(default=(), repr=False)
    #: ``NOTIFY_URLS``: apprise URLs (secrets: tokens ride in them)
    urls: tuple[str, ...] = field(default=(), repr=False)

    def notifiers(self) -> list[Notifier]:
        """The notifiers configured here."""
        on: NotifyOn = self.on  # type: ignore[assignment]  # validated by from_env
        found: list[Notifier] = list(self.plugins)
        if self.webhook_url:
            found.append(webhook_notifier(self.webhook_url, on, self.webhook_format, self.timeout))
        if self.urls:
            from dbstash.notify.apprise import AppriseNotifier  # noqa: PLC0415 - an optional extra

            found.append(AppriseNotifier(self.urls, on, timeout=self.timeout))
        if self.ping_url:
            parts = urlsplit(self.ping_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError("NOTIFY_PING_URL", "an http(s):// ping URL such as https://hc-ping.com/<uuid>")
            found.append(PingNotifier(self.ping_url, timeout=self.timeout))
        if self.smtp_url or self.email_to:
            if not self.smtp_url:
                raise ConfigError(
                    "NOTIFY_SMTP_URL", "an SMTP URL such as smtp+starttls://user@host:587 with NOTIFY_EMAIL_TO"
                )
            found.append(
                EmailNotifier(
                    self.smtp_url,
                    list(self.email_to),
                    self.email_from,
                    password=self.smtp_password,
                    notify_on=on,
                    timeout=max(self.timeout, 5.0),
                )
            )
        return found

    def hooks(self) -> tuple[ShellHook | None, ShellHook | None]:
        """(pre, post) hooks from ``HOOK_PRE_BACKUP`` / ``HOOK_POST_BACKUP``."""
        pre = ShellHook(self.hook_pre, name="HOOK_PRE_BACKUP", timeout=self.hook_timeout) if self.hook_pre else None
        post = ShellHook(self.hook_post, name="HOOK_POST_BACKUP", timeout=self.hook_timeout) if self.hook_post else None
        return pre, post


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything one backup job needs. Build with `create()` (code) or `from_env()`.

    Examples:
        >>> s = Settings.create("sqlite:///srv/app.db", remote="/srv/backups", retention_max_files=7)
        >>> s.engine_key, s.database_label, s.retention.max_files
        ('sqlite', 'app', 7)
    """

    connection: Connection
    #: the destination (the first one, when there are several: list and restore read it first)
    remote: str
    #: more destinations the same stream goes to at once (``RCLONE_REMOTE`` with several paths)
    extra_remotes: tuple[str, ...] = ()
    #: how many destinations must commit for a run to succeed (``BACKUP_REQUIRED_DESTINATIONS``; None: all)
    required_destinations: int | None = None
    #: several databases per job (``DB_NAME`` a list or ``all``): the connection is then server-level
    databases: DatabaseSelection | None = None
    name_template: str = DEFAULT_TEMPLATE
    compress: bool = False
    extension: str | None = None
    dump_extra_args: tuple[str, ...] = ()
    #: ``RESTORE_EXTRA_ARGS``: flags appended to the restore tool (psql/pg_restore, mysql, mongorestore)
    restore_extra_args: tuple[str, ...] = ()
    #: gzip/zstd done by dbstash on the stream (``BACKUP_COMPRESS=gzip|zstd``); ``compress`` is the tool's own
    stream_compress: StreamCompression | None = None
    #: ``BACKUP_MODE``: ``stream`` (default), ``directory`` or ``tar``
    mode: str = "stream"
    #: ``BACKUP_TEMP_DIR``: where directory and tar modes dump (one private subfolder per run)
    temp_dir: str = DEFAULT_TEMP_DIR
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    rclone: RcloneOptions = field(default_factory=RcloneOptions)
    #: the rc transport: set when a running ``rclone rcd`` is to be used instead of spawning rclone
    rc: RcOptions | None = None
    timeout: float | None = None
    #: ``BACKUP_STALL_TIMEOUT``: seconds without a byte moving before a run fails (None: never)
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT
    tz: str = "UTC"
    #: how the entrypoint runs jobs: schedule, lock, health endpoint, logs
    service: ServiceSettings = field(default_factory=ServiceSettings)
    #: notifications and hooks around each run
    notify: NotifySettings = field(default_factory=NotifySettings)
    #: ``VERIFY_TARGET_URI``: the scratch database ``verify`` restores into (its data is dropped afterwards)
    verify_target: str | None = field(default=None, repr=False)
    #: an Engine object given in code (``engine=``); None: the registered engine of the URI's scheme
    engine_object: Engine | None = field(default=None, repr=False, compare=False)
    #: one database of a multi-database job: dumped in the tool's archive format where it has one
    archive: bool = False
    #: the globals object of a multi-database job (roles, users, grants): ``{db}`` is ``_globals``
    globals_only: bool = False
    #: ``BACKUP_ENCRYPT=age``: the stream is encrypted to these recipients (``.age`` appended)
    encryption: AgeEncryption | None = None
    #: ``AGE_IDENTITY_FILE``: the private key restore and verify decrypt with (never needed to back up)
    identity_file: str | None = None
    #: ``BACKUP_SIGNING_KEY_FILE``: every manifest a run writes is signed with it (``<manifest>.sig``)
    signing_key: SigningKey | None = field(default=None, repr=False, compare=False)
    #: ``BACKUP_TRUSTED_KEYS``: restore, verify, list, latest and retention accept only backups signed by these
    trusted_keys: TrustedKeys | None = field(default=None, repr=False)

    # -- several destinations ----------------------------------------------------------------------
    @property
    def remotes(self) -> tuple[str, ...]:
        """Every destination of this job, the first one first."""
        return (self.remote, *self.extra_remotes)

    @property
    def required(self) -> int:
        """How many destinations must commit for a run to succeed."""
        return self.required_destinations or len(self.remotes)

    def for_remote(self, remote: str) -> Settings:
        """These settings with *remote* as their only destination (listing, retention, restore per destination)."""
        from dataclasses import replace  # noqa: PLC0415

        return replace(self, remote=remote, extra_remotes=(), required_destinations=None)

    # -- many databases per job ------------------------------------------------------------------
    @property
    def multi(self) -> bool:
        """Whether this job backs up several databases (one object each)."""
        return self.databases is not None

    def for_database(self, name: str) -> Settings:
        """The settings of one database of this multi-database job (its own name series and retention)."""
        from dataclasses import replace  # noqa: PLC0415

        engine = self.engine()
        return replace(self, connection=engine.for_database(self.connection, name), databases=None, archive=True)

    def for_globals(self) -> Settings:
        """The settings of this job's globals object (stream mode, plain SQL, ``{db}`` = ``_globals``)."""
        from dataclasses import replace  # noqa: PLC0415

        return replace(self, databases=None, globals_only=True, mode="stream", extension=None, compress=False)

    def notifiers(self) -> list[Notifier]:
        """The notifiers these settings configure (``NOTIFY_*``)."""
        return self.notify.notifiers()

    def hooks(self) -> tuple[ShellHook | None, ShellHook | None]:
        """(pre, post) hooks from ``HOOK_PRE_BACKUP`` / ``HOOK_POST_BACKUP``."""
        return self.notify.hooks()

    # -- derived -----------------------------------------------------------------------------
    @property
    def engine_key(self) -> str:
        """The engine's registry key (``pg``, ``sqlite``, ...)."""
        return self.connection.engine

    def engine(self) -> Engine:
        """The engine given in code, or a fresh one of the registered kind for this job."""
        return self.engine_object if self.engine_object is not None else get_engine(self.engine_key)

    @property
    def lock_path(self) -> str:
        """``BACKUP_LOCK_FILE``, or one per job in the temp dir: ``dbstash-<hash of engine, database, remote>.lock``.

        Two different jobs on one host never block each other; processes that must not overlap
        across machines share a volume and set ``BACKUP_LOCK_FILE`` to a path on it.
        """
        if self.service.lock_file:
            return self.service.lock_file
        c = self.connection
        identity = "|".join([c.engine, c.host or "", c.port or "", c.database or "", self.remote])
        digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
        return os.path.join(tempfile.gettempdir(), f"dbstash-{digest}.lock")

    @property
    def dump_options(self) -> DumpOptions:
        """The dump options (compression, extra args)."""
        if self.globals_only:
            return DumpOptions()
        return DumpOptions(compress=self.compress, extra_args=self.dump_extra_args, archive=self.archive)

    @property
    def database_label(self) -> str:
        """The ``{db}`` token's value (``_globals`` for a job's globals; for a multi-database job, what it selects)."""
        if self.globals_only:
            return GLOBALS_LABEL
        if self.databases is not None and not self.databases.every:
            return ",".join(self.databases.names)
        return self.engine().database_label(self.connection)

    @property
    def zone(self) -> ZoneInfo:
        """The job's time zone (``TZ``)."""
        return ZoneInfo(self.tz)

    def template(self) -> NameTemplate:
        """The name template bound to this job (validated)."""
        engine = self.engine()
        ext = self.extension
        if self.mode == "directory":
            ext = ""  # a folder: the template's name as it is
        elif ext is None:
            ext = ".tar" if self.mode == "tar" else engine.extension(self.dump_options, self.connection)
            if self.stream_compress is not None:
                ext += self.stream_compress.suffix
        if self.encryption is not None and self.mode != "directory":
            ext += self.encryption.suffix
        return NameTemplate.parse(self.name_template, db=self.database_label, engine=self.engine_key, extension=ext)

    def warnings(self) -> list[str]:
        """What deserves a warning in these settings (the run still proceeds): logged at start-up and per run."""
        engine = self.engine()
        found = []
        conflicts = engine.stream_conflicts(self.dump_extra_args)
        if conflicts:
            found.append(
                "DUMP_EXTRA_ARGS has flags that make the dump tool write to disk instead of stdout in stream mode: "
                + " ".join(conflicts)
            )
        if self.compress and not engine.native_compression(self.connection):
            found.append(
                f"BACKUP_COMPRESS=true: {engine.key} has no native compression here; the dump is not compressed "
                "(BACKUP_COMPRESS=zstd or gzip compresses any engine's stream in dbstash)"
            )
        if not self.template().unique:
            found.append(
                "the name template has no {ts}, {date}+{time} or {uuid}: a new backup replaces the previous one"
            )
        return found

    def redacted(self) -> dict[str, object]:
        """The resolved settings as plain data with every secret masked (for dry runs and logs)."""
        return {
            "engine": self.engine_key,
            "database": self.connection.display_uri(),
            "databases": {
                "select": self.databases.describe(),
                "globals": self.databases.include_globals,
                "parallel": self.databases.parallel,
            }
            if self.databases
            else None,
            "remote": self.remote,
            "remotes": list(self.remotes) if self.extra_remotes else None,
            "required_destinations": self.required if self.extra_remotes else None,
            "name_template": self.name_template,
            "extension": self.template().extension,
            "compress": str(self.stream_compress) if self.stream_compress else ("native" if self.compress else False),
            "mode": self.mode,
            "encryption": describe_encryption(self.encryption.recipients) if self.encryption else None,
            "signing_key": self.signing_key.fingerprint if self.signing_key else None,
            "trusted_keys": sorted(self.trusted_keys.keys) if self.trusted_keys else None,
            "temp_dir": self.temp_dir if self.mode != "stream" else None,
            "dump_extra_args": list(self.dump_extra_args),
            "restore_extra_args": list(self.restore_extra_args),
            "retention_max_files": self.retention.max_files,
            "retention_max_days": self.retention.max_days,
            "retention_keep": self.retention.keep_rules,
            "rclone_config": "inline (RCLONE_CONFIG)"
            if self.rclone.config_text is not None
            else self.rclone.config_file,
            "rclone_extra_args": list(self.rclone.extra_args),
            "transport": f"rc {self.rc.display_url()}" if self.rc else "rclone cli",
            "timeout": self.timeout,
            "stall_timeout": self.stall_timeout,
            "tz": self.tz,
            "schedule": self.service.schedule,
            "on_start": self.service.on_start,
            "lock": self.service.lock,
            "lock_file": self.lock_path,
            "health": f"{self.service.health_addr}:{self.service.health_port}" if self.service.health_port else None,
        }

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        uri: str,
        *,
        remote: str | Sequence[str],
        required_destinations: int | str | None = None,
        password: str | None = None,
        password_file: str | os.PathLike[str] | None = None,
        name_template: str = DEFAULT_TEMPLATE,
        compress: bool | str = False,
        extension: str | None = None,
        dump_extra_args: Sequence[str] | str = (),
        restore_extra_args: Sequence[str] | str = (),
        retention_max_files: int = 0,
        retention_max_days: float = 0,
        retention_keep: Mapping[str, int] | None = None,
        rclone: RcloneOptions | None = None,
        rc: RcOptions | None = None,
        mode: str = "stream",
        temp_dir: str = DEFAULT_TEMP_DIR,
        timeout: float | None = None,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        tz: str = "UTC",
        engine: Engine | str | None = None,
        retention: RetentionPolicy | None = None,
        databases: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] = (),
        include_globals: bool | None = None,
        parallel: int = 1,
        encrypt_to: Sequence[str] | str | None = None,
        identity_file: str | os.PathLike[str] | None = None,
        signing_key: SigningKey | str | os.PathLike[str] | None = None,
        trusted_keys: TrustedKeys | str | Sequence[str] | None = None,
    ) -> Settings:
        """Validate library arguments into settings; errors name the parameter at fault.

        *remote*: an rclone path, or several: one dump goes to all of them at once, each copy
        committed on its own; *required_destinations* (``"all"``, the default, ``"any"`` or a number)
        says how many must commit for the run to succeed.

        *stall_timeout*: seconds without a byte moving from the dump to the upload before the run
        fails (a frozen server or a dead remote); None or 0 turns it off. *engine*: an Engine object
        (or registry key) instead of the one the URI's scheme names. *retention*: a
        [`RetentionPolicy`][dbstash.RetentionPolicy] instead of the ``retention_*`` numbers.

        *databases*: several databases of the URI's server, one backup each: ``"all"`` (every
        database but the system ones and *exclude*, names or globs), a list of names, or
        ``"all,postgres"``; *include_globals* (default: where the engine can) adds the roles/users
        and grants as one more object; *parallel* databases are dumped at once.

        *encrypt_to*: age recipients (``age1...`` or SSH public keys; a list, or one string with
        commas or new lines): every backup is encrypted with ``age`` (``.age`` appended).
        *identity_file*: the age identity (mode 0600) that [`restore()`][dbstash.restore] and
        [`verify()`][dbstash.verify]
        decrypt with; backing up never needs it.

        *signing_key*: a [`SigningKey`][dbstash.SigningKey], or the path of an OpenSSH ed25519
        private key file (mode 0600/0400): every manifest is signed (``<manifest>.sig``, checkable
        with ``ssh-keygen -Y verify``). *trusted_keys*: a [`TrustedKeys`][dbstash.TrustedKeys], or
        OpenSSH public key lines (one string, or a list): restore, verify, list, ``latest`` and
        retention then accept only backups signed by one of them.
        """
        _check_arguments(
            password=password,
            password_file=password_file,
            retention=retention,
            retention_numbers=(retention_max_files, retention_max_days, retention_keep),
            timeout=timeout,
            stall_timeout=stall_timeout,
        )
        engine_object = engine if isinstance(engine, Engine) else None
        if isinstance(engine, str):
            engine = get_engine(engine, variable="engine")
        if engine is None:
            engine = engine_for_uri(uri, variable="uri")
        connection = engine.parse_uri(uri, variable="uri")
        check_ports(connection, "uri")
        if password_file is not None:
            password = read_secret_file(os.fspath(password_file), "password_file")
        if password is not None and connection.password is None:
            connection = connection.with_password(password)
        connection, selection = _selection(
            engine, connection, databases, exclude=exclude, include_globals=include_globals, parallel=parallel
        )
        native, stream_compress = parse_compress(compress, "compress")
        remotes = parse_remotes([remote] if isinstance(remote, str) else remote, "remote")
        settings = cls(
            connection=connection,
            databases=selection,
            remote=remotes[0],
            extra_remotes=remotes[1:],
            required_destinations=parse_required(required_destinations, len(remotes), "required_destinations"),
            name_template=name_template,
            compress=native,
            stream_compress=stream_compress,
            mode=mode,
            temp_dir=temp_dir,
            extension=check_extension(extension, "extension"),
            dump_extra_args=_args(dump_extra_args),
            restore_extra_args=_args(restore_extra_args),
            retention=retention
            if retention is not None
            else parse_retention(retention_max_files, retention_max_days, retention_keep, check_tz(tz, "tz")),
            rclone=rclone or RcloneOptions(),
            rc=check_rc(rc, "rc") if rc is not None else None,
            timeout=timeout or None,
            stall_timeout=stall_timeout or None,
            tz=check_tz(tz, "tz"),
            engine_object=engine_object,
            encryption=parse_encryption(encrypt_to, "encrypt_to"),
            identity_file=parse_identity_file(identity_file, "identity_file"),
            signing_key=_signing_key(signing_key),
            trusted_keys=_trusted_keys(trusted_keys),
        )
        settings._validate(template_variable="name_template", db_variable="databases" if selection else "uri")
        return settings

    def identity(self) -> AgeIdentity:
        """The age identity restore and verify decrypt with; ConfigError names AGE_IDENTITY_FILE if none."""
        if self.identity_file is None:
            raise ConfigError(
                "AGE_IDENTITY_FILE",
                "the path of the age identity (private key) the backup was encrypted to, to decrypt it",
                missing=True,
            )
        return AgeIdentity.from_file(self.identity_file)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read the spec's environment variables from *environ* (pass ``os.environ`` explicitly).

        Raises [`ConfigError`][dbstash.ConfigError] naming the first bad variable; nothing has been touched by then.
        """
        return settings_from_env(cls, environ)

    def _validate(
        self,
        *,
        template_variable: str,
        mode_variable: str = "mode",
        db_variable: str = "DB_NAME",
        temp_dir_variable: str = "temp_dir",
    ) -> None:
        GLOBAL_REDACTOR.add(self.connection.password)
        engine = self.engine()
        if self.mode not in MODES:
            raise ConfigError(mode_variable, "stream, directory or tar", self.mode)
        if self.databases is not None:
            if not engine.lists_databases:
                raise ConfigError(db_variable, f"one database: {engine.key} jobs back up one database or file")
            if "{db}" not in self.name_template:
                raise ConfigError(
                    template_variable,
                    "a template with {db} when the job backs up several databases (one series per database)",
                    self.name_template,
                )
        probe = engine.for_database(self.connection, "x") if self.databases is not None else self.connection
        if self.mode not in engine.supported_modes(probe):
            raise ConfigError(
                mode_variable,
                f"{' or '.join(engine.supported_modes(probe))} for {engine.key} (the spec's mode "
                f"matrix: this {engine.key} dump has no multi-file form)",
                self.mode,
            )
        if self.mode != "stream" and not os.path.isabs(self.temp_dir):
            raise ConfigError(temp_dir_variable, "an absolute path for directory and tar modes", self.temp_dir)
        if self.mode == "directory" and self.encryption is not None:
            raise ConfigError(
                mode_variable,
                "stream or tar with encryption (directory mode copies the dump's files as they are)",
                self.mode,
            )
        if self.mode == "directory" and self.rc is not None:
            raise ConfigError(
                mode_variable,
                "stream or tar with RCLONE_RC_URL (directory mode copies a local folder: the rclone CLI transport)",
                self.mode,
            )
        try:
            self.template()
        except ConfigError as exc:
            if exc.variable == "DB_NAME":  # the database name, not the template, is what cannot be a file name
                raise ConfigError(db_variable, exc.expected, exc.value) from None
            raise ConfigError(template_variable, exc.expected, exc.value) from None


def _check_arguments(
    *,
    password: str | None,
    password_file: object,
    retention: RetentionPolicy | None,
    retention_numbers: tuple[int, float, Mapping[str, int] | None],
    timeout: float | None,
    stall_timeout: float | None,
) -> None:
    """[`Settings.create()`][dbstash.Settings.create]'s pairs that exclude each other and its ranges."""
    if password is not None and password_file is not None:
        raise ConfigError("password_file", "either password= or password_file=, not both")
    max_files, max_days, keep = retention_numbers
    if retention is not None and (max_files or max_days or keep):
        raise ConfigError(
            "retention", "either a RetentionPolicy or the retention_max_files/_max_days/_keep numbers, not both"
        )
    for name, value in (("timeout", timeout), ("stall_timeout", stall_timeout)):
        if value is not None and (not isinstance(value, (int, float)) or math.isnan(value) or value < 0):
            raise ConfigError(name, "a number of seconds > 0 (0 or None: no limit)", str(value))


def _selection(
    engine: Engine,
    connection: Connection,
    databases: str | Sequence[str] | None,
    *,
    exclude: str | Sequence[str],
    include_globals: bool | None,
    parallel: int,
) -> tuple[Connection, DatabaseSelection | None]:
    """[`Settings.create()`][dbstash.Settings.create]'s *databases*, *exclude*, *include_globals* and *parallel*: the
    server-level connection and the selection, or the connection as it is and None."""
    if databases is None:
        if exclude:
            raise ConfigError("exclude", "empty unless databases= selects several databases", str(exclude))
        return connection, None
    problem = engine.globals_supported()
    if include_globals and problem is not None:
        raise ConfigError("include_globals", f"False: {problem}", str(include_globals))
    selection = parse_selection(
        databases if isinstance(databases, str) else ",".join(databases),
        exclude=exclude,
        include_globals=include_globals if include_globals is not None else problem is None,
        parallel=parallel,
        variable="databases",
        exclude_variable="exclude",
    )
    # the login stays where the URI's database put it (MongoDB's authSource), then the server itself
    return (engine.for_database(connection, "") if connection.database else connection).server(), selection


def _args(value: Sequence[str] | str) -> tuple[str, ...]:
    """Extra tool flags: a list, or one shell-quoted string."""
    return tuple(shlex.split(value)) if isinstance(value, str) else tuple(value)


def _signing_key(value: SigningKey | str | os.PathLike[str] | None) -> SigningKey | None:
    return value if isinstance(value, SigningKey) or value is None else SigningKey.from_file(value, "signing_key")


def _trusted_keys(value: TrustedKeys | str | Sequence[str] | None) -> TrustedKeys | None:
    if isinstance(value, TrustedKeys) or value is None:
        return value
    return TrustedKeys.parse(value if isinstance(value, str) else "\n".join(value), "trusted_keys")
