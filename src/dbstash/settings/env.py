"""Reading the spec's environment variables into [`Settings`][dbstash.Settings], and the checks behind it.

The one env parser: every variable is read here, and every error names the variable. The parts it
builds never read configuration themselves. (Over 400 lines on purpose: one reader for all ~60
variables and their checks keeps the variable list in one place, which tests/unit/test_envvars.py
compares with the documented list.)
"""

from __future__ import annotations

import base64
import binascii
import configparser
import dataclasses
import ipaddress
import math
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dbstash.engines import ENGINES, engine_for_uri, get_engine, same_family, target_connection
from dbstash.engines.base import Connection, Engine, check_ports, one_database
from dbstash.errors import ConfigError
from dbstash.jobs.databases import ALL_MODES, DatabaseSelection, parse_selection
from dbstash.jobs.manifest import MANIFEST_SUFFIX
from dbstash.jobs.naming import DEFAULT_TEMPLATE, PARTIAL_MARK
from dbstash.jobs.retention import RetentionPolicy
from dbstash.jobs.signing import SigningKey, trusted_keys_from
from dbstash.notify import FORMATS, plugin_notifiers
from dbstash.parts.compression import parse_compress
from dbstash.parts.encryption import RECIPIENTS_EXPECTED, AgeEncryption, AgeIdentity, age_binary, parse_recipients
from dbstash.redact import GLOBAL_REDACTOR, Redactor, uri_secrets
from dbstash.settings.connstring import parse_connection_string
from dbstash.settings.options import COMMIT_MODES, DEFAULT_STALL_TIMEOUT, RcloneOptions, RcOptions
from dbstash.settings.schedule import validate_cron

if TYPE_CHECKING:
    from dbstash.settings.config import NotifySettings, ServiceSettings, Settings

DEFAULT_RCLONE_CONFIG_FILE = "/config/rclone.conf"
DEFAULT_TEMP_DIR = "/tmp/dbstash-work"  # noqa: S108 - the spec's default; a private mkdtemp subfolder per run
DEFAULT_HEALTH_PORT = 8080
LOG_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING", "error": "ERROR"}
LOG_FORMATS = ("json", "text")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
_SECRET_CONF_KEY = re.compile(r"pass|secret|key|token|sas_url|credentials", re.IGNORECASE)


def settings_from_env(cls: type[Settings], environ: Mapping[str, str]) -> Settings:
    """See [`Settings.from_env()`][dbstash.Settings.from_env]. One reader per section, in the order their errors are
    reported."""
    env = dict(environ)
    get = _getter(env)
    engine, connection, db_var = _connection_from_env(env)
    connection, databases = _databases_from_env(env, engine, connection, db_var)
    remote_var = "RCLONE_REMOTE_FILE" if get("RCLONE_REMOTE_FILE") else "RCLONE_REMOTE"
    remote = _secret_or_file(env, "RCLONE_REMOTE")
    if remote is None:
        raise ConfigError(
            "RCLONE_REMOTE", "an rclone remote path such as s3:my-bucket/backups or /backups", missing=True
        )
    rclone = _rclone_from_env(env)
    timeout, stall_timeout = _timeouts_from_env(env)
    if get("RCLONE_COMMIT") and rclone.commit == "direct" and (env.get("RCLONE_RC_URL") or "").strip():
        raise ConfigError(
            "RCLONE_COMMIT",
            "unset or auto with RCLONE_RC_URL (the rc transport always uploads to a partial name and moves it)",
            rclone.commit,
        )
    native_compress, stream_compress = parse_compress(env.get("BACKUP_COMPRESS"))
    tz = check_tz(get("TZ") or "UTC", "TZ")
    schedule = (get("BACKUP_SCHEDULE") or "0 2 * * *").strip()
    remotes = parse_remotes(remote, remote_var)  # several, separated by whitespace
    if len(remotes) > 1 and os.path.isdir(remote.strip()):  # one folder whose path holds a space, not several
        raise ConfigError(
            remote_var,
            "destinations separated by whitespace (a folder whose path holds a space is named through an rclone "
            "alias remote: [backups] type = alias, remote = /path with space)",
            remote,
        )
    required = parse_required(get("BACKUP_REQUIRED_DESTINATIONS"), len(remotes), "BACKUP_REQUIRED_DESTINATIONS")
    name_template = get("BACKUP_NAME_TEMPLATE") or DEFAULT_TEMPLATE
    extension = check_extension(get("BACKUP_EXTENSION"), "BACKUP_EXTENSION")
    dump_extra_args = _split_args(env.get("DUMP_EXTRA_ARGS", ""), "DUMP_EXTRA_ARGS")
    restore_extra_args = _split_args(env.get("RESTORE_EXTRA_ARGS", ""), "RESTORE_EXTRA_ARGS")
    retention = _retention_from_env(env, tz)
    rc = _rc_from_env(env)
    service = _service_from_env(env, schedule)
    notify = _notify_from_env(env)
    settings = cls(
        connection=connection,
        databases=databases,
        remote=remotes[0],
        extra_remotes=remotes[1:],
        required_destinations=required,
        name_template=name_template,
        compress=native_compress,
        stream_compress=stream_compress,
        mode=(get("BACKUP_MODE") or "stream").strip().lower(),
        temp_dir=get("BACKUP_TEMP_DIR") or DEFAULT_TEMP_DIR,
        extension=extension,
        dump_extra_args=dump_extra_args,
        restore_extra_args=restore_extra_args,
        retention=retention,
        rclone=rclone,
        rc=rc,
        timeout=timeout,
        stall_timeout=stall_timeout,
        tz=tz,
        service=service,
        notify=notify,
        verify_target=_check_verify_target(get("VERIFY_TARGET_URI"), engine),
        encryption=_encryption_from_env(env),
        identity_file=parse_identity_file(get("AGE_IDENTITY_FILE"), "AGE_IDENTITY_FILE"),
        signing_key=_signing_key_from_env(env),
        trusted_keys=trusted_keys_from(
            get("BACKUP_TRUSTED_KEYS"), get("BACKUP_TRUSTED_KEYS_FILE"), "BACKUP_TRUSTED_KEYS"
        ),
    )
    settings.notifiers()  # validates the NOTIFY_* URLs at start-up
    settings._validate(
        template_variable="BACKUP_NAME_TEMPLATE",
        mode_variable="BACKUP_MODE",
        db_variable=db_var,
        temp_dir_variable="BACKUP_TEMP_DIR",
    )
    return settings


def _getter(env: Mapping[str, str]) -> Callable[[str], str | None]:
    """A variable's value, with the empty string read as unset."""

    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value not in (None, "") else None

    return get


def _secret_or_file(env: Mapping[str, str], name: str) -> str | None:
    """``NAME_FILE`` (read, its content a secret) over ``NAME``."""
    get = _getter(env)
    if get(f"{name}_FILE"):
        return read_secret_file(env[f"{name}_FILE"], f"{name}_FILE")
    return get(name)


def _connection_from_env(env: Mapping[str, str]) -> tuple[Engine, Connection, str]:
    """The engine and connection (``DB_URI_FILE`` > ``DB_URI`` > ``DB_HOST`` + ``DB_NAME``), and the
    variable that names the databases (``DB_NAME``, or the URI's path)."""
    get = _getter(env)
    uri_var = "DB_URI_FILE" if get("DB_URI_FILE") else "DB_URI"
    uri = _secret_or_file(env, "DB_URI")
    password = _secret_or_file(env, "DB_PASSWORD")
    if uri is None:
        (engine, connection), db_var = _connection_from_parts(env, password), "DB_NAME"
    else:
        GLOBAL_REDACTOR.add(*uri_secrets(uri))
        engine = engine_for_uri(uri, variable=uri_var)
        if get("DB_ENGINE") and env["DB_ENGINE"] != engine.key:
            if not same_family(env["DB_ENGINE"], engine.key):
                raise ConfigError("DB_ENGINE", f"the engine of DB_URI ({engine.key}) or unset", env["DB_ENGINE"])
            engine = get_engine(env["DB_ENGINE"])  # mysql:// on a MariaDB image: prefer mariadb-dump
        connection = engine.parse_uri(uri, variable=uri_var)
        check_ports(connection, uri_var)
        connection, db_var = _db_name_with_uri(engine, connection, get("DB_NAME"), uri_var)
        # DB_URI wins over DB_*; a password from DB_PASSWORD(_FILE) only fills a URI that has none
        if connection.password is None and password is not None:
            connection = connection.with_password(password)
    GLOBAL_REDACTOR.add(connection.password)
    return engine, engine.with_auth_source(connection, get("DB_AUTH_SOURCE")), db_var


def _connection_from_parts(env: Mapping[str, str], password: str | None) -> tuple[Engine, Connection]:
    """``DB_ENGINE`` with ``DB_HOST``, ``DB_PORT``, ``DB_NAME``, ``DB_USER`` (no ``DB_URI``)."""
    get = _getter(env)
    if not get("DB_HOST") and not get("DB_NAME"):
        raise ConfigError(
            "DB_URI", "a connection URI such as postgresql://user@host:5432/db (or DB_HOST and DB_NAME)", missing=True
        )
    key = get("DB_ENGINE")
    if key is None:
        raise ConfigError("DB_ENGINE", f"an engine key ({', '.join(ENGINES)}) when DB_URI is not set", missing=True)
    engine = get_engine(key)
    connection = engine.from_parts(
        host=get("DB_HOST"), port=get("DB_PORT"), database=get("DB_NAME"), user=get("DB_USER"), password=password
    )
    return engine, connection


def _rclone_from_env(env: Mapping[str, str]) -> RcloneOptions:
    """``RCLONE_CONFIG`` (base64) or ``RCLONE_CONFIG_FILE`` (else /config/rclone.conf if present),
    ``RCLONE_EXTRA_ARGS``, ``RCLONE_COMMIT``; the config's secrets are registered for redaction."""
    get = _getter(env)
    config_text = None
    config_file = None
    if get("RCLONE_CONFIG"):
        try:
            config_text = base64.b64decode(env["RCLONE_CONFIG"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigError(
                "RCLONE_CONFIG",
                "base64-encoded rclone.conf content (base64 -w0 rclone.conf); a path belongs in RCLONE_CONFIG_FILE",
                "<redacted>",
            ) from None
        _register_rclone_secrets(config_text, "RCLONE_CONFIG")
    if get("RCLONE_CONFIG_FILE"):
        config_file = env["RCLONE_CONFIG_FILE"]
        if not os.path.isfile(config_file) or not os.access(config_file, os.R_OK):
            raise ConfigError("RCLONE_CONFIG_FILE", "the path of a readable rclone.conf", config_file)
        if config_text is None:
            with open(config_file, encoding="utf-8", errors="replace") as fh:
                _register_rclone_secrets(fh.read(), "RCLONE_CONFIG_FILE")
    elif config_text is None and os.path.isfile(DEFAULT_RCLONE_CONFIG_FILE):
        config_file = DEFAULT_RCLONE_CONFIG_FILE
    return RcloneOptions(
        binary=env.get("DBSTASH_RCLONE_BINARY") or "rclone",
        config_text=config_text,
        config_file=None if config_text is not None else config_file,
        extra_args=_split_args(env.get("RCLONE_EXTRA_ARGS", ""), "RCLONE_EXTRA_ARGS"),
        commit=_parse_choice(get("RCLONE_COMMIT") or "auto", "RCLONE_COMMIT", {m: m for m in COMMIT_MODES}),
    )


def _timeouts_from_env(env: Mapping[str, str]) -> tuple[float | None, float | None]:
    """``BACKUP_TIMEOUT`` and ``BACKUP_STALL_TIMEOUT`` (0 = off; at least `MIN_STALL_TIMEOUT`)."""
    timeout = _parse_duration(env.get("BACKUP_TIMEOUT", ""), "BACKUP_TIMEOUT")
    stall = env.get("BACKUP_STALL_TIMEOUT", "").strip()
    stall_timeout = _parse_duration(stall, "BACKUP_STALL_TIMEOUT") if stall else DEFAULT_STALL_TIMEOUT
    if stall_timeout is not None and stall_timeout < MIN_STALL_TIMEOUT:  # a pause of a busy server is no stall
        raise ConfigError(
            "BACKUP_STALL_TIMEOUT", f"a duration of at least {MIN_STALL_TIMEOUT:.0f}s such as 5m (0 = off)", stall
        )
    return timeout, stall_timeout


def _retention_from_env(env: Mapping[str, str], tz: str) -> RetentionPolicy:
    """``RETENTION_MAX_FILES``, ``RETENTION_MAX_DAYS`` and ``RETENTION_KEEP_*``."""
    keep = {
        f"keep_{period}": _parse_int(
            env.get(f"RETENTION_KEEP_{period.upper()}", ""), f"RETENTION_KEEP_{period.upper()}"
        )
        for period in KEEP_PERIODS
    }
    return RetentionPolicy(
        max_files=_parse_int(env.get("RETENTION_MAX_FILES", ""), "RETENTION_MAX_FILES"),
        max_days=_parse_days(env.get("RETENTION_MAX_DAYS", ""), "RETENTION_MAX_DAYS"),
        **keep,
        tz=tz,
    )


def _service_from_env(env: Mapping[str, str], schedule: str) -> ServiceSettings:
    """The service mode's variables: the schedules, logs, the lock, the health endpoint, dry runs."""
    from dbstash.settings.config import ServiceSettings  # noqa: PLC0415 - config imports this module

    get = _getter(env)
    verify_schedule = get("VERIFY_SCHEDULE")
    return ServiceSettings(
        schedule=_check_schedule(schedule),
        log_level=_parse_choice(get("LOG_LEVEL") or "info", "LOG_LEVEL", LOG_LEVELS),
        log_format=_parse_choice(get("LOG_FORMAT") or "json", "LOG_FORMAT", {f: f for f in LOG_FORMATS}),
        on_start=_parse_bool(env.get("BACKUP_ON_START", ""), "BACKUP_ON_START"),
        lock=_parse_bool(env.get("BACKUP_LOCK", "true"), "BACKUP_LOCK"),
        lock_file=get("BACKUP_LOCK_FILE"),
        dry_run=_parse_bool(env.get("DRY_RUN", ""), "DRY_RUN"),
        health_port=_parse_port(env.get("HEALTH_PORT", ""), "HEALTH_PORT"),
        health_addr=_check_addr(get("HEALTH_ADDR") or "0.0.0.0", "HEALTH_ADDR"),  # noqa: S104 - reachable by the orchestrator
        verify_schedule=_check_schedule(verify_schedule.strip(), "VERIFY_SCHEDULE") if verify_schedule else None,
    )


def _notify_from_env(env: Mapping[str, str]) -> NotifySettings:
    """``NOTIFY_*`` and ``HOOK_*``."""
    from dbstash.settings.config import NotifySettings  # noqa: PLC0415 - config imports this module

    get = _getter(env)
    smtp_password = _secret_or_file(env, "NOTIFY_SMTP_PASSWORD")
    return NotifySettings(
        on=_parse_choice(get("NOTIFY_ON") or "failure", "NOTIFY_ON", {c: c for c in NOTIFY_ON}),
        webhook_url=_secret(get("NOTIFY_WEBHOOK_URL")),
        webhook_format=_parse_choice(
            get("NOTIFY_WEBHOOK_FORMAT") or "auto", "NOTIFY_WEBHOOK_FORMAT", {f: f for f in FORMATS}
        ),
        ping_url=_secret(get("NOTIFY_PING_URL")),
        email_to=tuple(a.strip() for a in (get("NOTIFY_EMAIL_TO") or "").split(",") if a.strip()),
        email_from=get("NOTIFY_EMAIL_FROM"),
        smtp_url=_secret(get("NOTIFY_SMTP_URL")),
        smtp_password=smtp_password if get("NOTIFY_SMTP_PASSWORD_FILE") else _secret(smtp_password),
        timeout=_parse_duration(env.get("NOTIFY_TIMEOUT", ""), "NOTIFY_TIMEOUT") or 10.0,
        hook_pre=get("HOOK_PRE_BACKUP"),
        hook_post=get("HOOK_POST_BACKUP"),
        hook_timeout=_parse_duration(env.get("HOOK_TIMEOUT", ""), "HOOK_TIMEOUT") or 300.0,
        plugins=tuple(plugin_notifiers(env)),
        urls=_apprise_urls(env),
    )


def _signing_key_from_env(env: Mapping[str, str]) -> SigningKey | None:
    get = _getter(env)
    path = get("BACKUP_SIGNING_KEY_FILE")
    return SigningKey.from_file(path.strip(), "BACKUP_SIGNING_KEY_FILE") if path else None


# -- parsing helpers ---------------------------------------------------------------------------
#: The shortest ``BACKUP_STALL_TIMEOUT`` taken: below it a busy server's pause would count as a stall.
MIN_STALL_TIMEOUT = 1.0


def _db_name_with_uri(
    engine: Engine, connection: Connection, db_name: str | None, uri_var: str
) -> tuple[Connection, str]:
    """``DB_NAME`` beside ``DB_URI``: it picks the databases when the URI names none (and then names the
    selection's errors); when the URI names one, ``DB_NAME`` must be unset or the same (exit 2 otherwise)."""
    if db_name is None:
        return connection, uri_var
    if connection.database is None and engine.lists_databases:
        name = one_database(db_name)
        if name is None:
            return connection, "DB_NAME"
        if "," in name:
            return dataclasses.replace(connection, database=name), "DB_NAME"
        return engine.for_database(connection, name), "DB_NAME"
    if db_name != (connection.database or ""):
        named = f"{connection.database!r}, the database {uri_var} names" if connection.database else "unset"
        raise ConfigError("DB_NAME", f"{named} (or name no database in {uri_var}'s path)", db_name)
    return connection, uri_var


NOTIFY_ON = ("failure", "success", "always")


def _databases_from_env(
    env: Mapping[str, str], engine: Engine, connection: Connection, db_var: str
) -> tuple[Connection, DatabaseSelection | None]:
    """``DB_NAME`` (or the URI's path) as a list or ``all``, with ``DB_EXCLUDE``, ``DB_ALL_MODE``,
    ``DB_GLOBALS`` and ``DB_PARALLEL``: the server-level connection and the selection, or the
    connection as it is and None for a one-database (or single-stream ``all``) job."""
    raw = connection.database
    all_mode = _parse_choice(env.get("DB_ALL_MODE", "").strip() or "separate", "DB_ALL_MODE", {m: m for m in ALL_MODES})
    exclude = env.get("DB_EXCLUDE", "").strip()
    globals_raw = env.get("DB_GLOBALS", "").strip()
    explicit_globals = _parse_bool(globals_raw, "DB_GLOBALS") if globals_raw else None
    parallel = _parse_parallel(env.get("DB_PARALLEL", "").strip())
    problem = engine.globals_supported()
    if not _several(engine, raw, all_mode, explicit_globals, db_var):
        if exclude:
            raise ConfigError("DB_EXCLUDE", f"unset unless {db_var} is all or a list of databases", exclude)
        if explicit_globals and problem is not None:
            raise ConfigError("DB_GLOBALS", f"false: {problem}", globals_raw)
        if explicit_globals and raw is None:
            raise ConfigError("DB_GLOBALS", "false with DB_ALL_MODE=single (the whole-server stream has them)")
        return connection, None
    if explicit_globals and problem is not None:
        raise ConfigError("DB_GLOBALS", f"false: {problem}", globals_raw)
    include_globals = explicit_globals if explicit_globals is not None else problem is None
    selection = parse_selection(
        raw or "all", exclude=exclude, include_globals=include_globals, parallel=parallel, variable=db_var
    )
    return connection.server(), selection


def _several(engine: Engine, raw: str | None, all_mode: str, explicit_globals: bool | None, db_var: str) -> bool:
    """Whether the job backs up several databases: a list, ``all`` in separate mode, or one database
    with its globals (engines that list databases only)."""
    is_list = raw is not None and "," in raw
    if is_list and engine.lists_databases and all_mode == "single":
        raise ConfigError("DB_ALL_MODE", f"separate when {db_var} lists databases (single is for all)", all_mode)
    return engine.lists_databases and (
        is_list or (raw is None and all_mode == "separate") or (raw is not None and explicit_globals is True)
    )


def _parse_parallel(raw: str) -> int:
    """``DB_PARALLEL``: databases dumped at once (default 1)."""
    if not raw:
        return 1
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ConfigError("DB_PARALLEL", "a whole number of databases dumped at once, 1 or more", raw)
    return int(raw)


def _secret(value: str | None) -> str | None:
    """Register a secret-bearing value (webhook and ping URLs carry their token in the path)."""
    if value:
        GLOBAL_REDACTOR.add(value, *uri_secrets(value))
        path = urlsplit(value).path
        if len(path) > 8:
            GLOBAL_REDACTOR.add(path)
    return value


def _apprise_urls(env: Mapping[str, str]) -> tuple[str, ...]:
    """``NOTIFY_URLS`` (or ``NOTIFY_URLS_FILE``, which wins): apprise URLs, each registered as a secret."""
    from dbstash.notify.apprise import register_secrets, split_urls  # noqa: PLC0415 - only when configured

    text = env.get("NOTIFY_URLS", "")
    if (env.get("NOTIFY_URLS_FILE") or "").strip():
        text = read_secret_file(env["NOTIFY_URLS_FILE"], "NOTIFY_URLS_FILE")
    urls = tuple(split_urls(text))
    for url in urls:
        register_secrets(url)
    return urls


KEEP_PERIODS = ("hourly", "daily", "weekly", "monthly", "yearly")


def parse_encryption(recipients: Sequence[str] | str | None, variable: str) -> AgeEncryption | None:
    """Library recipients (a list, or one string with commas or new lines) -> AgeEncryption."""
    if recipients is None:
        return None
    text = recipients if isinstance(recipients, str) else "\n".join(recipients)
    return AgeEncryption(parse_recipients(text, variable))


def parse_identity_file(path: str | os.PathLike[str] | None, variable: str) -> str | None:
    """An identity file path, checked now (a regular file only its owner reads); read when used."""
    if path is None:
        return None
    AgeIdentity.from_file(os.fspath(path), variable)
    return os.fspath(path)


def _encryption_from_env(env: Mapping[str, str]) -> AgeEncryption | None:
    """``BACKUP_ENCRYPT`` with ``AGE_RECIPIENTS`` / ``AGE_RECIPIENTS_FILE``."""
    how = (env.get("BACKUP_ENCRYPT") or "").strip().lower()
    recipients_file = (env.get("AGE_RECIPIENTS_FILE") or "").strip()
    recipients = (env.get("AGE_RECIPIENTS") or "").strip()
    if how in ("", "none", "false"):
        if recipients or recipients_file:
            raise ConfigError(
                "BACKUP_ENCRYPT", "age when AGE_RECIPIENTS or AGE_RECIPIENTS_FILE is set", how or "(unset)"
            )
        return None
    if how != "age":
        raise ConfigError("BACKUP_ENCRYPT", "age or none", how)
    text = recipients
    variable = "AGE_RECIPIENTS"
    if recipients_file:
        variable = "AGE_RECIPIENTS_FILE"
        try:
            with open(recipients_file, encoding="utf-8") as fh:
                text = (text + "\n" if text else "") + fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                variable, "a readable file of age recipients or SSH public keys", f"{recipients_file} ({exc})"
            ) from None
    if not text:
        raise ConfigError(
            "AGE_RECIPIENTS", "at least one recipient with BACKUP_ENCRYPT=age (" + RECIPIENTS_EXPECTED + ")"
        )
    encryption = AgeEncryption(parse_recipients(text, variable))
    age_binary()  # BACKUP_ENCRYPT=age without the age command: exit at start-up
    return encryption


def parse_retention(max_files: int, max_days: float, keep: Mapping[str, int] | None, tz: str) -> RetentionPolicy:
    keep = dict(keep or {})
    unknown = set(keep) - set(KEEP_PERIODS)
    if unknown:
        raise ConfigError("retention_keep", "a mapping with keys " + ", ".join(KEEP_PERIODS), str(sorted(unknown)))
    try:
        return RetentionPolicy(
            max_files=max_files, max_days=max_days, tz=tz, **{f"keep_{p}": int(n) for p, n in keep.items()}
        )
    except ConfigError as exc:  # name the parameter of Settings.create / backup()
        name = (
            f"retention_keep[{exc.variable[5:]!r}]" if exc.variable.startswith("keep_") else f"retention_{exc.variable}"
        )
        raise ConfigError(name, exc.expected, exc.value) from None


def read_secret_file(path: str, variable: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read()
    except OSError as exc:
        raise ConfigError(variable, f"the path of a readable file ({exc.strerror})", path) from None
    except UnicodeDecodeError:
        raise ConfigError(
            variable, "a file holding UTF-8 text (this one is binary or in another encoding)", path
        ) from None
    value = value.rstrip("\r\n")
    if not value:
        raise ConfigError(variable, "a file holding a non-empty secret", path)
    GLOBAL_REDACTOR.add(value, *uri_secrets(value))
    return value


def _register_rclone_secrets(text: str, variable: str, redactor: Redactor = GLOBAL_REDACTOR) -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        raise ConfigError(variable, "rclone.conf content ([remote] sections of key = value)", "<redacted>") from None
    for section in parser.sections():
        for key, value in parser.items(section):
            if _SECRET_CONF_KEY.search(key):
                redactor.add(value)


def _check_verify_target(uri: str | None, engine: Engine) -> str | None:
    """``VERIFY_TARGET_URI``: a URI of the job's engine (a file path for SQLite and Redis)."""
    if uri is None:
        return None
    target_connection(engine, uri, "VERIFY_TARGET_URI")  # validates it and registers its password
    return uri


def check_rc(rc: RcOptions, variable: str) -> RcOptions:
    parts = urlsplit(rc.url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ConfigError(
            variable,
            "the base URL of an rclone rcd such as http://127.0.0.1:5572 (credentials in RCLONE_RC_USER/_PASS)",
            GLOBAL_REDACTOR(rc.url),
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError(variable, "http://host:port of an rclone rcd", rc.url) from None
    GLOBAL_REDACTOR.add(rc.password)
    return rc


def _rc_from_env(env: Mapping[str, str]) -> RcOptions | None:
    """``RCLONE_RC_URL`` (+ ``RCLONE_RC_USER``, ``RCLONE_RC_PASS(_FILE)``), or None for the CLI transport."""
    url = (env.get("RCLONE_RC_URL") or "").strip()
    if not url:
        for name in ("RCLONE_RC_USER", "RCLONE_RC_PASS", "RCLONE_RC_PASS_FILE"):
            if env.get(name):
                raise ConfigError("RCLONE_RC_URL", f"the rcd URL (http://host:5572) when {name} is set")
        return None
    if env.get("RCLONE_RC_PASS_FILE"):
        password: str | None = read_secret_file(env["RCLONE_RC_PASS_FILE"], "RCLONE_RC_PASS_FILE")
    else:
        password = env.get("RCLONE_RC_PASS") or None
    GLOBAL_REDACTOR.add(password)
    return check_rc(RcOptions(url, user=env.get("RCLONE_RC_USER") or None, password=password), "RCLONE_RC_URL")


def check_remote(remote: str, variable: str) -> str:
    if not remote or not remote.strip() or "\n" in remote or "\x00" in remote:
        raise ConfigError(variable, "an rclone remote path such as s3:my-bucket/backups or /backups", remote)
    parsed = parse_connection_string(remote)
    GLOBAL_REDACTOR.add(*uri_secrets(remote), *(parsed.secrets() if parsed else ()))
    return remote


def parse_remotes(value: str | Sequence[str], variable: str) -> tuple[str, ...]:
    """One destination or several: a list (the library), or a string of rclone paths separated by
    whitespace or new lines (the environment; a path that holds whitespace is named through an rclone
    alias remote). Duplicates are refused."""
    found = value.split() if isinstance(value, str) else list(value)
    if not found:
        raise ConfigError(variable, "an rclone remote path such as s3:my-bucket/backups or /backups", str(value))
    remotes = tuple(check_remote(r, variable) for r in found)
    twice = sorted({r for r in remotes if remotes.count(r) > 1})
    if twice:
        raise ConfigError(variable, "each destination once", " ".join(twice))
    return remotes


def parse_required(value: int | str | None, count: int, variable: str) -> int | None:
    """How many of *count* destinations must commit: ``all`` (None), ``any`` (1) or a number from 1 to *count*."""
    text = str(value).strip().lower() if value is not None else "all"
    if text == "all":
        return None
    if text == "any":
        return 1
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= count:
        raise ConfigError(variable, f"all, any or a number of destinations from 1 to {count}", str(value))
    return None if int(text) == count else int(text)


def check_extension(ext: str | None, variable: str) -> str | None:
    if ext is None:
        return None
    if ext and not ext.startswith("."):
        ext = "." + ext
    if "/" in ext or "\\" in ext or ".." in ext or any(c.isspace() for c in ext):
        raise ConfigError(variable, "a file extension such as .sql or .dump", ext)
    if ext.endswith(MANIFEST_SUFFIX) or PARTIAL_MARK in ext:
        # every backup would look like a manifest or an unfinished upload: listed, retained and restored never
        raise ConfigError(variable, f"a file extension such as .sql or .dump (not ending in {MANIFEST_SUFFIX})", ext)
    return ext


def check_tz(tz: str, variable: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(variable, "an IANA time zone such as UTC or Asia/Kolkata", tz) from None
    return tz


def _check_schedule(value: str, variable: str = "BACKUP_SCHEDULE") -> str:
    if value == "once" and variable == "BACKUP_SCHEDULE":
        return value
    validate_cron(value, variable)
    return value


def _parse_bool(value: str, variable: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(variable, "true or false", value)


def _parse_int(value: str, variable: str) -> int:
    v = value.strip()
    if not v:
        return 0
    if not (v.isascii() and v.isdigit()):
        raise ConfigError(variable, "a whole number >= 0 (0 = unlimited)", value)
    return int(v)


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def _check_addr(value: str, variable: str) -> str:
    """An IP address to listen on (0.0.0.0, ::, 127.0.0.1) or a host name that is not a broken IPv4 address."""
    v = value.strip().strip("[]")
    try:
        ipaddress.ip_address(v)
    except ValueError:
        if not _HOSTNAME.match(v) or re.fullmatch(r"[\d.]+", v):
            raise ConfigError(variable, "an IP address to listen on such as 0.0.0.0, :: or 127.0.0.1", value) from None
    return v


def _parse_port(value: str, variable: str) -> int:
    v = value.strip()
    if not v:
        return DEFAULT_HEALTH_PORT
    if not (v.isascii() and v.isdigit()) or int(v) > 65535:
        raise ConfigError(variable, "a TCP port number 1-65535 (0 turns the endpoint off)", value)
    return int(v)


#: The longest RETENTION_MAX_DAYS: a century. Longer ones overflow date arithmetic and mean "forever" (0).
MAX_RETENTION_DAYS = 36500


def _parse_days(value: str, variable: str) -> float:
    v = value.strip()
    if not v:
        return 0
    expected = f"a number of days from 0 to {MAX_RETENTION_DAYS} (0 = unlimited)"
    try:
        days = float(v)
    except ValueError:
        raise ConfigError(variable, expected, value) from None
    if days < 0 or not math.isfinite(days) or days > MAX_RETENTION_DAYS:
        raise ConfigError(variable, expected, value)
    return days


def _parse_choice(value: str, variable: str, choices: Mapping[str, str]) -> str:
    try:
        return choices[value.strip().lower()]
    except KeyError:
        raise ConfigError(variable, "one of " + ", ".join(dict.fromkeys(choices)), value) from None


def _split_args(value: str, variable: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:
        raise ConfigError(variable, f"shell-style arguments ({exc})", value) from None


def parse_duration(value: str, variable: str = "BACKUP_TIMEOUT") -> float | None:
    """``1h``, ``30m``, ``90s``, ``1h30m``, or plain seconds; ``0`` or empty means no limit (None)."""
    return _parse_duration(value, variable)


def _parse_duration(value: str, variable: str) -> float | None:
    v = value.strip().lower()
    if v in ("", "0"):
        return None
    expected = "a duration such as 1h, 30m, 90s or 1h30m (0 = no limit)"
    try:
        seconds = float(v)
    except ValueError:
        m = _DURATION.fullmatch(v)
        if not m or not any(m.groups()):
            raise ConfigError(variable, expected, value) from None
        h, mi, s = (float(x) if x else 0.0 for x in m.groups())
        seconds = h * 3600 + mi * 60 + s
    if seconds < 0 or not math.isfinite(seconds):
        raise ConfigError(variable, expected, value)
    return seconds or None
