from __future__ import annotations

from dbstash.redact import Redactor, redact_uri, uri_secrets


def test_uri_password_masked() -> None:
    assert redact_uri("postgresql://app:pw%40x@db:5432/app") == "postgresql://app:***@db:5432/app"
    assert redact_uri("redis://:hunter2@r:6379/0") == "redis://:***@r:6379/0"
    assert redact_uri("mysql://app@db/x") == "mysql://app@db/x"


def test_query_secrets_masked() -> None:
    out = redact_uri("postgresql://db/app?sslmode=require&password=abc&sslpassword=def")
    assert "abc" not in out and "def" not in out and "sslmode=require" in out


def test_uri_secrets_found() -> None:
    assert set(uri_secrets("postgresql://u:p4ss@h/db?password=other")) == {"p4ss", "other"}


def test_redactor_masks_registered_values_longest_first() -> None:
    r = Redactor(["secret", "secret-long"])
    assert r("a secret-long b secret c") == "a *** b *** c"
    r.add(None, "", "ab")  # empty and tiny values are not registered
    assert r("ab cd") == "ab cd"


def test_children_never_inherit_dbstash_secrets() -> None:
    from dbstash.process import child_base_env

    env = child_base_env(
        {
            "PATH": "/bin",
            "DB_URI": "x",
            "DB_PASSWORD": "p",
            "RCLONE_CONFIG": "b64",
            "NOTIFY_SMTP_PASSWORD": "s",
            "NOTIFY_PING_URL": "u",
            "NOTIFY_WEBHOOK_URL": "w",
            "RCLONE_CONFIG_S3_TYPE": "s3",
        }
    )
    assert env == {"PATH": "/bin", "RCLONE_CONFIG_S3_TYPE": "s3"}  # env-defined rclone remotes still pass
