"""Many databases per job: the selection, its variables (exit 2 naming them), and the restore filters."""

from __future__ import annotations

import pytest

from dbstash import ConfigError, Settings
from dbstash.engines.mysql import MariadbEngine, MysqlEngine, MysqlGlobalsFilter
from dbstash.engines.postgres import PgGlobalsFilter
from dbstash.jobs.databases import DatabaseSelection, parse_selection

PG = "postgresql://backup:pw@127.0.0.1:5432/"


def env(**extra: str) -> dict[str, str]:
    return {"DB_URI": PG, "RCLONE_REMOTE": "/tmp/dbstash-unit-remote", **extra}


def test_all_is_one_object_per_database_by_default() -> None:
    s = Settings.from_env(env())
    assert s.multi and s.databases is not None and s.databases.every
    assert s.connection.database is None and s.databases.include_globals
    single = Settings.from_env(env(DB_ALL_MODE="single"))
    assert not single.multi and single.connection.database is None  # pg_dumpall, as in 0.2


def test_a_list_in_the_uri_or_db_name() -> None:
    s = Settings.from_env(env(DB_URI="postgresql://u@h/billing,app"))
    assert s.databases == DatabaseSelection(every=False, names=("billing", "app"), include_globals=True)
    parts = Settings.from_env(
        {"DB_ENGINE": "mariadb", "DB_HOST": "h", "DB_NAME": "a, b", "RCLONE_REMOTE": "/tmp/x", "DB_GLOBALS": "false"}
    )
    assert parts.databases is not None and parts.databases.names == ("a", "b")
    assert not parts.databases.include_globals


def test_one_database_stays_one_object_unless_globals_are_asked_for() -> None:
    assert not Settings.from_env(env(DB_URI="postgresql://u@h/app")).multi
    s = Settings.from_env(env(DB_URI="postgresql://u@h/app", DB_GLOBALS="true"))
    assert s.databases is not None and s.databases.names == ("app",) and s.databases.include_globals


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"DB_URI": "postgresql://u@h/app", "DB_EXCLUDE": "x"}, "DB_EXCLUDE"),
        ({"DB_NAME": "", "DB_URI": "postgresql://u@h/a,b", "DB_ALL_MODE": "single"}, "DB_ALL_MODE"),
        ({"DB_ALL_MODE": "both"}, "DB_ALL_MODE"),
        ({"DB_PARALLEL": "0"}, "DB_PARALLEL"),
        ({"DB_PARALLEL": "two"}, "DB_PARALLEL"),
        ({"DB_GLOBALS": "maybe"}, "DB_GLOBALS"),
        ({"DB_URI": "postgresql://u@h/a,b", "DB_EXCLUDE": "a*"}, "DB_EXCLUDE"),
        ({"BACKUP_NAME_TEMPLATE": "backup-{date}-{time}"}, "BACKUP_NAME_TEMPLATE"),
        ({"DB_URI": "postgresql://u@h/a,_globals"}, "DB_URI"),
        ({"DB_URI": "redis://h:6379/0,1"}, "DB_URI"),
    ],
)
def test_bad_combinations_exit_2_naming_the_variable(extra: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env(**extra))
    assert err.value.variable == variable
    assert err.value.exit_code == 2


def test_mysqldump_has_no_globals_but_mariadb_dump_does() -> None:
    assert MysqlEngine("/usr/bin/mysqldump").globals_supported() is not None
    assert MariadbEngine("/usr/bin/mariadb-dump").globals_supported() is None


def test_selection_resolves_system_databases_globs_and_named_ones() -> None:
    system = ("template1", "postgres")
    available = ["app", "billing", "postgres", "template1", "test_a", "test_b"]
    assert parse_selection("all", exclude="test_*", include_globals=True).resolve(available, system=system) == [
        "app",
        "billing",
    ]
    assert parse_selection("all,postgres", include_globals=True).resolve(available, system=system) == [
        "app",
        "billing",
        "postgres",
        "test_a",
        "test_b",
    ]
    named = parse_selection("zeta,app", include_globals=False)
    assert named.resolve(available, system=system) == ["app", "zeta"], (
        "a named database that is missing fails its own run"
    )


def test_library_selection_names_its_parameters() -> None:
    s = Settings.create(PG, remote="/tmp/r", databases=["app", "billing"], include_globals=False, parallel=2)
    assert s.databases is not None and s.databases.parallel == 2 and not s.databases.include_globals
    with pytest.raises(ConfigError) as err:
        Settings.create(PG + "app", remote="/tmp/r", exclude=["x"])
    assert err.value.variable == "exclude"
    with pytest.raises(ConfigError) as err:
        Settings.create(PG, remote="/tmp/r", databases="all", name_template="{date}")
    assert err.value.variable == "name_template"


def test_per_database_settings_have_their_own_series() -> None:
    s = Settings.from_env(env())
    shop, glob = s.for_database("shop"), s.for_globals()
    assert shop.template().db == "shop"
    assert shop.template().extension == ".dump", "custom format: restores as itself or into another name"
    assert glob.template().db == "_globals" and glob.template().extension == ".sql"
    assert shop.database_label == "shop" and glob.database_label == "_globals"


def _feed(flt: PgGlobalsFilter | MysqlGlobalsFilter, text: bytes, size: int) -> bytes:
    """Feed *text* in chunks of *size* bytes (lines cut anywhere), as the restore stream does."""
    out = b"".join(flt(text[i : i + size]) for i in range(0, len(text), size))
    return out + flt.flush()


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_pg_filter_keeps_existing_roles_and_drops_databases_only_when_forced(size: int) -> None:
    script = (
        b"CREATE ROLE postgres;\n"
        b"ALTER ROLE postgres WITH SUPERUSER INHERIT PASSWORD 'SCRAM-SHA-256$4096:x';\n"
        b'CREATE ROLE "Mixed ""Case""";\n'
        b'ALTER ROLE "Mixed ""Case""" WITH LOGIN;\n'
        b"CREATE ROLE alice;\n"
        b"ALTER ROLE alice WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:y';\n"
        b"GRANT readers TO alice;\n"
        b"CREATE DATABASE shop WITH TEMPLATE = template0 ENCODING = 'UTF8';\n"
        b"CREATE DATABASE other WITH TEMPLATE = template0;"
    )
    flt = PgGlobalsFilter({"postgres", 'Mixed "Case"'}, set(), {"shop"}, drop_databases=True)
    out = _feed(flt, script, size)
    assert b"\nCREATE ROLE postgres;" not in b"\n" + out and b"SCRAM-SHA-256$4096:x" not in out
    assert b"CREATE ROLE alice;\n" in out and b"SCRAM-SHA-256$4096:y" in out, "a missing role is created"
    assert b"GRANT readers TO alice;" in out
    assert b"DROP DATABASE IF EXISTS shop WITH (FORCE);\nCREATE DATABASE shop" in out
    assert b"DROP DATABASE IF EXISTS other" not in out
    assert flt.kept == ["role postgres", 'role Mixed "Case"']
    unforced = PgGlobalsFilter(set(), set(), {"shop"}, drop_databases=False)
    assert b"DROP DATABASE" not in _feed(unforced, script, size)


def test_mysql_filter_leaves_existing_accounts_as_they_are() -> None:
    script = (
        b"CREATE USER IF NOT EXISTS `bob`@`%` IDENTIFIED BY PASSWORD '*AAA';\n"
        b"CREATE USER IF NOT EXISTS `carol`@`%` IDENTIFIED BY PASSWORD '*BBB';\n"
        b"GRANT USAGE ON *.* TO `bob`@`%` IDENTIFIED BY PASSWORD '*AAA';\n"
        b"GRANT SELECT ON `crm`.* TO `carol`@`%`;\n"
        b"/*M!100005 SET DEFAULT ROLE NONE FOR 'bob'@'%' */;\n"
        b"GRANT PROXY ON ``@`%` TO `root`@`localhost` WITH GRANT OPTION;\n"
    )
    flt = MysqlGlobalsFilter({("bob", "%"), ("root", "localhost")})
    active = [line for line in _feed(flt, script, 5).splitlines() if not line.startswith(b"--")]
    assert active == [
        b"CREATE USER IF NOT EXISTS `carol`@`%` IDENTIFIED BY PASSWORD '*BBB';",
        b"GRANT SELECT ON `crm`.* TO `carol`@`%`;",
    ], "every line about an existing account (its password, grants, default role) is skipped"
    assert flt.kept == ["user bob@%"]
