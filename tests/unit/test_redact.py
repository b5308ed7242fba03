from __future__ import annotations

import pytest

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
    from dbstash.parts.process import child_base_env

    environ = {
        "PATH": "/bin",
        "DB_URI": "x",
        "DB_PASSWORD": "p",
        "RCLONE_CONFIG": "b64",
        "NOTIFY_SMTP_PASSWORD": "s",
        "NOTIFY_PING_URL": "u",
        "NOTIFY_WEBHOOK_URL": "w",
        "VERIFY_TARGET_URI": "postgresql://u:pw@h/scratch",
        "RCLONE_CONFIG_S3_TYPE": "s3",
        "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": "k",
    }
    # rclone itself still gets env-defined remotes (and their keys) ...
    assert child_base_env(environ, rclone=True) == {
        "PATH": "/bin",
        "RCLONE_CONFIG_S3_TYPE": "s3",
        "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": "k",
    }
    # ... every other child (dump and restore tools, hooks) gets none of rclone's variables (issue 14, item 6)
    assert child_base_env(environ) == {"PATH": "/bin"}


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("DB_URI: invalid value 'postgresql://postgres:se/cretSECRET@db:5432/x'; expected", "se/cretSECRET"),
        ("mongodb://user:p@ss:w/rd%20#?&@host:27017/db", "p@ss:w/rd%20#?&"),
        ('{"uri": "mysql://u:a/b?c#d@h:3306/x", "n": 1}', "a/b?c#d"),
        ("redis://:pw/x@h:6379/0 then postgresql://a:b/c@h/d", "pw/x"),
    ],
)
def test_malformed_uri_passwords_are_masked_whole(text: str, secret: str) -> None:
    # raw (not percent-encoded) '/', '@', '#', '?' in a password: everything between '://user:' and the
    # last '@' of the URI is masked (issue 14, item 5)
    out = redact_uri(text)
    assert secret not in out and "***@" in out
    assert all(part not in out for part in secret.split("/") if len(part) >= 3)
