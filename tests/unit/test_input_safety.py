"""Issue 25, items 9, 11 and 14: refused values never echo a private key, Unicode digits and odd numbers
exit 2 naming their variable, a selection known to be empty is refused at start-up."""

from __future__ import annotations

import pytest

from dbstash import ConfigError, Settings

BASE = {"DB_URI": "postgresql://app:pw@db.example:5432/app", "RCLONE_REMOTE": "s3:bucket/pg"}
SERVER = {**BASE, "DB_URI": "postgresql://app:pw@db.example:5432/"}
KEY = "AGE-SECRET-KEY-1QQPCZQ5WZ7QYDSCHNG0TT5KM5XRE0ZR6E9PDMS9HP2RZ4W9WDCLSXAWMNP"


def refused(variable: str, env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.variable == variable, str(info.value)
    return info.value


@pytest.mark.parametrize("value", [f'"{KEY}"', KEY.lower(), f"key={KEY}", f" {KEY}x"])
def test_a_malformed_private_key_in_age_recipients_is_never_echoed(value: str) -> None:
    err = refused("AGE_RECIPIENTS", {**BASE, "BACKUP_ENCRYPT": "age", "AGE_RECIPIENTS": value})
    assert "secret-key-" not in str(err).lower() and KEY[20:40].lower() not in str(err).lower()


def test_a_refused_recipient_shows_only_a_short_prefix() -> None:
    value = "age1" + "q" * 70
    err = refused("AGE_RECIPIENTS", {**BASE, "BACKUP_ENCRYPT": "age", "AGE_RECIPIENTS": value})
    assert value[:20] not in str(err)


@pytest.mark.parametrize(
    ("variable", "value", "env"),
    [
        ("DB_PARALLEL", "²", {**SERVER, "DB_NAME": "all"}),
        ("RETENTION_MAX_FILES", "³", BASE),
        ("HEALTH_PORT", "²", BASE),
        ("DB_PARALLEL", "-1", {**SERVER, "DB_NAME": "all"}),
    ],
)
def test_unicode_digits_and_negative_counts_exit_2_naming_the_variable(
    variable: str, value: str, env: dict[str, str]
) -> None:
    err = refused(variable, {**env, variable: value})
    assert "0 = unlimited" not in str(err) or variable != "DB_PARALLEL"
    assert err.exit_code == 2


def test_a_selection_that_excludes_everything_is_refused_at_start_up() -> None:
    err = refused("DB_EXCLUDE", {**SERVER, "DB_NAME": "all", "DB_EXCLUDE": "*", "DB_GLOBALS": "false"})
    assert "leave a database" in str(err)
    Settings.from_env({**SERVER, "DB_NAME": "all", "DB_EXCLUDE": "*", "DB_GLOBALS": "true"})  # the globals stay


def test_db_name_applies_when_the_uri_names_no_database() -> None:
    one = Settings.from_env({**SERVER, "DB_NAME": "app"})
    assert one.connection.database == "app" and one.databases is None
    many = Settings.from_env({**SERVER, "DB_NAME": "app,billing"})
    assert many.databases is not None and many.databases.names == ("app", "billing")
    err = refused("DB_EXCLUDE", {**SERVER, "DB_NAME": "app,billing", "DB_EXCLUDE": "app"})
    assert "DB_NAME" in str(err)


def test_db_name_that_contradicts_the_uri_exits_2() -> None:
    err = refused("DB_NAME", {**BASE, "DB_NAME": "billing"})
    assert "'app'" in str(err)
    refused("DB_NAME", {"DB_URI": "sqlite:///srv/app.db", "RCLONE_REMOTE": "/b", "DB_NAME": "a,b"})
    Settings.from_env({**BASE, "DB_NAME": "app"})  # the same name: fine


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"xyz://{JWT}/topic", "xyz://…"),
        ("jsonx://ops:hunter2.pass.word/x", "jsonx://…"),
        ("json://hooks.example.com:8080/p", "json://hooks.example.com"),
        ("mailto://user:pw.with.dots@smtp.example.org", "mailto://smtp.example.org"),
        ("json://[::1]:80/x", "json://[::1]"),
    ],
)
def test_apprise_urls_show_a_host_only_when_it_surely_is_one(url: str, shown: str) -> None:
    from dbstash.notify.apprise import describe, register_secrets
    from dbstash.redact import GLOBAL_REDACTOR

    assert describe(url) == shown
    register_secrets(url)
    for secret in (JWT, "hunter2.pass.word", "pw.with.dots"):
        if secret in url:
            assert secret not in GLOBAL_REDACTOR(f"could not deliver to {url}; token {secret}")


def _real_keys(tmp_path: object) -> tuple[str, str]:
    import subprocess
    from pathlib import Path

    d = Path(str(tmp_path))
    subprocess.run(["age-keygen", "-o", str(d / "k.txt")], check=True, capture_output=True)
    age = subprocess.run(["age-keygen", "-y", str(d / "k.txt")], check=True, capture_output=True, text=True).stdout
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "id")], check=True)
    return age.strip(), (d / "id.pub").read_text().strip()


def test_recipients_with_a_bad_checksum_or_bad_base64_exit_2(tmp_path: object) -> None:
    age, ssh = _real_keys(tmp_path)
    enc = {**BASE, "BACKUP_ENCRYPT": "age"}
    Settings.from_env({**enc, "AGE_RECIPIENTS": f"{age},{ssh}"})  # the real keys are taken
    wrong = age[:-1] + ("q" if age[-1] != "q" else "p")
    assert "checksum" in str(refused("AGE_RECIPIENTS", {**enc, "AGE_RECIPIENTS": wrong}))
    kind, blob = ssh.split()[:2]
    broken = f"{kind} {blob[:-8]}!!!!!!!!"
    assert "base64" in str(refused("AGE_RECIPIENTS", {**enc, "AGE_RECIPIENTS": broken}))


def test_a_stall_timeout_below_a_second_and_direct_commit_over_rc_exit_2() -> None:
    assert "at least 1s" in str(refused("BACKUP_STALL_TIMEOUT", {**BASE, "BACKUP_STALL_TIMEOUT": "0.2"}))
    Settings.from_env({**BASE, "BACKUP_STALL_TIMEOUT": "0"})  # 0 turns the watchdog off
    rc = {**BASE, "RCLONE_RC_URL": "http://127.0.0.1:5572", "RCLONE_COMMIT": "direct"}
    refused("RCLONE_COMMIT", rc)
