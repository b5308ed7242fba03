"""Every variable of the spec that the core reads: good forms parse, bad forms name the variable."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from dbstash import ConfigError, Settings
from dbstash.redact import GLOBAL_REDACTOR
from dbstash.settings.env import parse_duration

BASE = {"DB_URI": "postgresql://app:pw-in-uri@db.example:5432/app", "RCLONE_REMOTE": "s3:bucket/pg"}


def env(**kw: str) -> dict[str, str]:
    return {**BASE, **kw}


def bad(variable: str, **kw: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(kw if "DB_URI" in kw or "DB_HOST" in kw or "DB_URI_FILE" in kw else env(**kw))
    assert info.value.variable == variable, str(info.value)
    assert variable in str(info.value)
    assert "expected" in str(info.value)
    return info.value


def test_defaults() -> None:
    s = Settings.from_env(BASE)
    assert s.engine_key == "pg" and s.connection.database == "app" and s.connection.password == "pw-in-uri"
    assert s.name_template == "{db}-{date}-{time}" and s.template().extension == ".sql"
    assert s.compress is False and s.retention.max_files == 0 and s.retention.max_days == 0
    assert (
        s.tz == "UTC"
        and s.service.schedule == "0 2 * * *"
        and s.service.log_level == "INFO"
        and s.service.log_format == "json"
    )
    assert s.timeout is None and s.dump_extra_args == () and s.rclone.extra_args == ()


def test_uri_file_wins_over_uri(tmp_path: Path) -> None:
    f = tmp_path / "uri"
    f.write_text("postgresql://other:pw2@h2/otherdb\n")
    s = Settings.from_env(env(DB_URI_FILE=str(f)))
    assert s.connection.database == "otherdb" and s.connection.password == "pw2"


def test_password_file_wins_and_fills_a_uri_without_password(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    s = Settings.from_env(env(DB_URI="postgresql://app@db/app", DB_PASSWORD="from-env", DB_PASSWORD_FILE=str(f)))
    assert s.connection.password == "from-file"
    s = Settings.from_env(env(DB_URI="postgresql://app@db/app", DB_PASSWORD="from-env"))
    assert s.connection.password == "from-env"
    # the URI's own password wins (spec: DB_URI takes precedence over the individual fields)
    assert Settings.from_env(env(DB_PASSWORD="from-env")).connection.password == "pw-in-uri"


def test_individual_fields() -> None:
    s = Settings.from_env(
        {
            "DB_ENGINE": "pg",
            "DB_HOST": "db",
            "DB_PORT": "5433",
            "DB_NAME": "shop",
            "DB_USER": "u",
            "DB_PASSWORD": "p",
            "RCLONE_REMOTE": "r:",
        }
    )
    c = s.connection
    assert (c.host, c.port, c.database, c.user, c.password) == ("db", "5433", "shop", "u", "p")
    assert s.database_label == "shop"


def test_uri_ignores_individual_fields() -> None:
    s = Settings.from_env(env(DB_HOST="ignored", DB_NAME="app"))
    assert s.connection.host == "db.example" and s.connection.database == "app"
    bad("DB_NAME", DB_NAME="other")  # contradicts the URI's database: never silently ignored (issue 25)


def test_sqlite_uris() -> None:
    for uri, path in [
        ("sqlite:///srv/app.db", "/srv/app.db"),
        ("sqlite:////srv/app.db", "/srv/app.db"),
        ("sqlite:rel/app.db", "rel/app.db"),
        ("sqlite://app.db", "app.db"),
    ]:
        s = Settings.from_env({"DB_URI": uri, "RCLONE_REMOTE": "./b"})
        assert s.connection.database == path and s.database_label == "app"


def test_rclone_config_base64_and_secrets_registered() -> None:
    conf = "[s3]\ntype = s3\nsecret_access_key = very-secret-value\n"
    s = Settings.from_env(env(RCLONE_CONFIG=base64.b64encode(conf.encode()).decode()))
    assert s.rclone.config_text == conf and s.rclone.config_file is None
    assert "very-secret-value" not in GLOBAL_REDACTOR("key=very-secret-value")


def test_rclone_config_file(tmp_path: Path) -> None:
    f = tmp_path / "rclone.conf"
    f.write_text("[x]\ntype = local\n")
    assert Settings.from_env(env(RCLONE_CONFIG_FILE=str(f))).rclone.config_file == str(f)


def test_good_forms() -> None:
    s = Settings.from_env(
        env(
            BACKUP_NAME_TEMPLATE="{engine}-{db}-{ts}",
            BACKUP_COMPRESS="true",
            BACKUP_EXTENSION="bak",
            DUMP_EXTRA_ARGS="--no-owner --exclude-table 'a b'",
            RETENTION_MAX_FILES="7",
            RETENTION_MAX_DAYS="1.5",
            LOG_LEVEL="warn",
            LOG_FORMAT="text",
            TZ="Asia/Kolkata",
            BACKUP_SCHEDULE="once",
            BACKUP_TIMEOUT="1h30m",
            RCLONE_EXTRA_ARGS="--transfers 2 --s3-chunk-size 16M",
        )
    )
    assert s.compress and s.extension == ".bak" and s.template().extension == ".bak"
    assert s.dump_extra_args == ("--no-owner", "--exclude-table", "a b")
    assert (s.retention.max_files, s.retention.max_days) == (7, 1.5)
    assert (s.service.log_level, s.service.log_format, s.tz, s.service.schedule, s.timeout) == (
        "WARNING",
        "text",
        "Asia/Kolkata",
        "once",
        5400,
    )
    assert s.rclone.extra_args == ("--transfers", "2", "--s3-chunk-size", "16M")


def test_compress_changes_pg_extension() -> None:
    assert Settings.from_env(env(BACKUP_COMPRESS="true")).template().extension == ".dump"
    assert Settings.from_env(env(DUMP_EXTRA_ARGS="-Fc")).template().extension == ".dump"
    assert (
        Settings.from_env(env(BACKUP_COMPRESS="true", DUMP_EXTRA_ARGS="--format=plain")).template().extension == ".sql"
    )


@pytest.mark.parametrize(
    ("variable", "values"),
    [
        ("DB_URI", {"DB_URI": "nosuchdb://x/y", "RCLONE_REMOTE": "r:"}),
        ("DB_URI", {"DB_URI": "postgresql://app@db:notaport/app", "RCLONE_REMOTE": "r:"}),
        ("DB_URI", {"DB_URI": "redis://:pw@cache/first", "RCLONE_REMOTE": "r:"}),
        ("DB_URI", {"DB_URI": "mysql://app@db/app?init-command=DROP", "RCLONE_REMOTE": "r:"}),
        ("DB_URI", {"DB_URI": "mysql://app@db:port/app", "RCLONE_REMOTE": "r:"}),
        ("DB_URI", {"DB_URI": "mongodb://", "RCLONE_REMOTE": "r:"}),
        ("DB_URI", {"DB_URI": "rediss://:pw@cache/0?verify=none", "RCLONE_REMOTE": "r:"}),
        ("DB_URI", {"DB_URI": "postgresql://app@db/app?sslpassword=x", "RCLONE_REMOTE": "r:"}),
        ("DB_URI", {"DB_URI": "sqlite:", "RCLONE_REMOTE": "r:"}),
        ("DB_URI", {"RCLONE_REMOTE": "r:"}),
        ("DB_URI_FILE", {"DB_URI_FILE": "/nonexistent/uri", "RCLONE_REMOTE": "r:"}),
        ("DB_ENGINE", {"DB_HOST": "db", "DB_NAME": "x", "RCLONE_REMOTE": "r:"}),
        ("DB_ENGINE", {"DB_HOST": "db", "DB_NAME": "x", "DB_ENGINE": "oracle", "RCLONE_REMOTE": "r:"}),
        ("DB_NAME", {"DB_HOST": "db", "DB_ENGINE": "redis", "DB_NAME": "cache", "RCLONE_REMOTE": "r:"}),
        ("DB_NAME", {"DB_HOST": "files", "DB_ENGINE": "sqlite", "RCLONE_REMOTE": "r:"}),
        ("DB_PORT", {"DB_HOST": "db", "DB_NAME": "x", "DB_ENGINE": "pg", "DB_PORT": "54x", "RCLONE_REMOTE": "r:"}),
        ("DB_PASSWORD_FILE", {**BASE, "DB_PASSWORD_FILE": "/nonexistent/pw"}),
        ("RCLONE_REMOTE", {"DB_URI": BASE["DB_URI"]}),
        ("RCLONE_REMOTE", {"DB_URI": BASE["DB_URI"], "RCLONE_REMOTE": "  "}),
        ("RCLONE_CONFIG", {**BASE, "RCLONE_CONFIG": "not base64 !!"}),
        ("RCLONE_CONFIG_FILE", {**BASE, "RCLONE_CONFIG_FILE": "/nonexistent/rclone.conf"}),
        ("RCLONE_EXTRA_ARGS", {**BASE, "RCLONE_EXTRA_ARGS": "--x 'unclosed"}),
        ("BACKUP_NAME_TEMPLATE", {**BASE, "BACKUP_NAME_TEMPLATE": "{db}/{date}"}),
        ("BACKUP_NAME_TEMPLATE", {**BASE, "BACKUP_NAME_TEMPLATE": "{database}"}),
        ("BACKUP_NAME_TEMPLATE", {**BASE, "BACKUP_NAME_TEMPLATE": "../{db}"}),
        ("BACKUP_COMPRESS", {**BASE, "BACKUP_COMPRESS": "maybe"}),
        ("BACKUP_COMPRESS", {**BASE, "BACKUP_COMPRESS": "zstd:99"}),
        ("BACKUP_COMPRESS", {**BASE, "BACKUP_COMPRESS": "gzip:x"}),
        ("BACKUP_COMPRESS", {**BASE, "BACKUP_COMPRESS": "xz"}),
        ("BACKUP_EXTENSION", {**BASE, "BACKUP_EXTENSION": "../x"}),
        ("DUMP_EXTRA_ARGS", {**BASE, "DUMP_EXTRA_ARGS": '"unclosed'}),
        ("RETENTION_MAX_FILES", {**BASE, "RETENTION_MAX_FILES": "-1"}),
        ("RETENTION_MAX_FILES", {**BASE, "RETENTION_MAX_FILES": "ten"}),
        ("RETENTION_MAX_DAYS", {**BASE, "RETENTION_MAX_DAYS": "-3"}),
        ("RETENTION_MAX_DAYS", {**BASE, "RETENTION_MAX_DAYS": "1w"}),
        ("LOG_LEVEL", {**BASE, "LOG_LEVEL": "verbose"}),
        ("LOG_FORMAT", {**BASE, "LOG_FORMAT": "xml"}),
        ("TZ", {**BASE, "TZ": "Mars/Olympus"}),
        ("BACKUP_SCHEDULE", {**BASE, "BACKUP_SCHEDULE": "every day"}),
        ("BACKUP_SCHEDULE", {**BASE, "BACKUP_SCHEDULE": "61 * * * *"}),
        ("BACKUP_TIMEOUT", {**BASE, "BACKUP_TIMEOUT": "soon"}),
        ("BACKUP_TIMEOUT", {**BASE, "BACKUP_TIMEOUT": "-5"}),
    ],
)
def test_bad_values_name_their_variable(variable: str, values: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(values)
    assert info.value.variable == variable, str(info.value)
    assert str(info.value).startswith(variable + ":") and "expected" in str(info.value)
    assert info.value.exit_code == 2


def test_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"DB_URI": "postgresql://app:hunter2-pw@db:xx/app", "RCLONE_REMOTE": "r:"})
    assert "hunter2-pw" not in str(info.value) and "***" in str(info.value)


def test_durations() -> None:
    assert parse_duration("90s") == 90 and parse_duration("30m") == 1800 and parse_duration("1h") == 3600
    assert parse_duration("0") is None and parse_duration("") is None and parse_duration("45") == 45


def test_library_create_names_parameters() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.create("sqlite:///x.db", remote="r:", name_template="{db}/x")
    assert info.value.variable == "name_template"
    with pytest.raises(ConfigError) as info:
        Settings.create("mongodbx://x", remote="r:")
    assert info.value.variable == "uri"


def test_settings_repr_hides_password() -> None:
    s = Settings.from_env(BASE)
    assert "pw-in-uri" not in repr(s) and "pw-in-uri" not in str(s.redacted())


def test_rclone_config_file_default_is_used_only_when_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dbstash.settings.env

    default = tmp_path / "config" / "rclone.conf"
    monkeypatch.setattr(dbstash.settings.env, "DEFAULT_RCLONE_CONFIG_FILE", str(default))
    assert Settings.from_env(BASE).rclone.config_file is None
    default.parent.mkdir()
    default.write_text("[x]\ntype = local\n")
    assert Settings.from_env(BASE).rclone.config_file == str(default)
    inline = base64.b64encode(b"[y]\ntype = local\n").decode()
    assert Settings.from_env(env(RCLONE_CONFIG=inline)).rclone.config_file is None  # inline wins


def test_lock_path_is_per_job_unless_set() -> None:
    a = Settings.from_env(BASE)
    b = Settings.from_env(env(RCLONE_REMOTE="s3:bucket/other"))
    c = Settings.from_env(env(DB_URI="postgresql://app@db.example:5432/shop"))
    assert a.lock_path == Settings.from_env(BASE).lock_path  # the same job: the same lock
    assert len({a.lock_path, b.lock_path, c.lock_path}) == 3  # different jobs never block each other
    assert Settings.from_env(env(BACKUP_LOCK_FILE="/shared/x.lock")).lock_path == "/shared/x.lock"


def test_smtp_password_file_and_notifier_secrets(tmp_path: Path) -> None:
    pw = tmp_path / "smtp-pw"
    pw.write_text("smtp-secret-pass\n")
    s = Settings.from_env(
        env(
            NOTIFY_SMTP_URL="smtp+starttls://mailer@mail.example:587",
            NOTIFY_EMAIL_TO="a@b.c",
            NOTIFY_SMTP_PASSWORD="ignored",
            NOTIFY_SMTP_PASSWORD_FILE=str(pw),
            NOTIFY_WEBHOOK_URL="https://hooks.slack.com/services/T1/B2/tokentokentoken",
        )
    )
    (email,) = (n for n in s.notifiers() if n.kind == "email")
    (slack,) = (n for n in s.notifiers() if n.kind == "slack")
    assert email.password == "smtp-secret-pass" and email.user == "mailer" and email.port == 587  # type: ignore[attr-defined]
    text = GLOBAL_REDACTOR("smtp-secret-pass https://hooks.slack.com/services/T1/B2/tokentokentoken")
    assert "smtp-secret-pass" not in text and "tokentokentoken" not in text
    assert "smtp-secret-pass" not in repr(s) and "tokentoken" not in repr(s) and slack.kind == "slack"
