"""dbstash.contrib.django.jobs.database_uri: DATABASES entries as the URIs dbstash parses."""

from __future__ import annotations

import pytest

import dbstash
from dbstash.contrib.django.jobs import database_uri


def test_postgres_with_a_socket_directory_and_connection_options() -> None:
    db = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop db",
        "USER": "web",
        "HOST": "/var/run/postgresql",
        "PORT": "5433",
        "OPTIONS": {"sslmode": "require", "isolation_level": 2, "pool": True},  # the last two are Django's own
    }
    uri = database_uri(db)
    conn = dbstash.Settings.create(uri, remote="/r", password="pw").connection
    assert (conn.host, conn.port, conn.database, conn.user, conn.password) == (
        "/var/run/postgresql",
        "5433",
        "shop db",
        "web",
        "pw",
    )
    assert conn.params == {"sslmode": "require"}
    assert "pw" not in uri


def test_mysql_with_a_socket_charset_and_tls_files() -> None:
    db = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "shop",
        "USER": "web",
        "OPTIONS": {"unix_socket": "/run/mysqld/mysqld.sock", "charset": "utf8mb4", "ssl": {"ca": "/etc/ca.pem"}},
    }
    conn = dbstash.Settings.create(database_uri(db), remote="/r").connection
    assert conn.params == {
        "socket": "/run/mysqld/mysqld.sock",
        "default-character-set": "utf8mb4",
        "ssl-ca": "/etc/ca.pem",
    }


@pytest.mark.parametrize(
    "db",
    [
        {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        {"ENGINE": "django.db.backends.oracle", "NAME": "x"},
    ],
)
def test_what_cannot_be_backed_up_is_a_config_error(db: dict[str, str]) -> None:
    with pytest.raises(dbstash.ConfigError):
        database_uri(db)
