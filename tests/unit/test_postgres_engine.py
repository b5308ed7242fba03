from __future__ import annotations

import pytest

from dbstash import ConfigError
from dbstash.engines.base import DumpOptions
from dbstash.engines.postgres import PgTool, PostgresEngine
from dbstash.errors import ToolVersionMismatch

E = PostgresEngine(bin_dirs=[], search_path=False)


def test_uri_to_libpq_environment() -> None:
    c = E.parse_uri("postgresql://app:p%40ss@db.example:6543/shop?sslmode=require&application_name=dbstash")
    env = E.libpq_env(c)
    assert env == {
        "PGHOST": "db.example",
        "PGPORT": "6543",
        "PGUSER": "app",
        "PGPASSWORD": "p@ss",
        "PGDATABASE": "shop",
        "PGSSLMODE": "require",
        "PGAPPNAME": "dbstash",
        "PGCONNECT_TIMEOUT": "15",
    }


def test_multi_host_and_ipv6() -> None:
    c = E.parse_uri("postgres://u@h1:5432,[::1]:5433/db")
    assert (c.host, c.port) == ("h1,::1", "5432,5433")


@pytest.mark.parametrize(
    "uri",
    ["postgresql://u@h/db?foo=bar", "postgresql://u@h/db?sslpassword=x", "postgresql://u@h:xx/db"],
)
def test_bad_uris(uri: str) -> None:
    with pytest.raises(ConfigError):
        E.parse_uri(uri)


def test_display_uri_hides_password() -> None:
    c = E.parse_uri("postgresql://app:topsecret@db/app")
    assert "topsecret" not in c.display_uri() and "topsecret" not in repr(c)


def test_formats_and_extensions() -> None:
    assert E.extension(DumpOptions()) == ".sql"
    assert E.extension(DumpOptions(compress=True)) == ".dump"
    for args in (("-Fc",), ("--format=custom",), ("-F", "c"), ("--format", "custom")):
        assert E.extension(DumpOptions(extra_args=args)) == ".dump", args
    assert E.extension(DumpOptions(compress=True, extra_args=("-Fp",))) == ".sql"
    assert E.extension(DumpOptions(extra_args=("--format=tar",))) == ".tar"


def test_stream_conflicts() -> None:
    assert E.stream_conflicts(["-Fd", "--file=/x", "-f", "--no-owner"]) == ["-Fd", "--file=/x", "-f"]
    assert E.stream_conflicts(["--format=directory"]) == ["--format=directory"]
    assert E.stream_conflicts(["--no-owner"]) == []


def test_choose_tool() -> None:
    tools = [PgTool("/a/17/pg_dump", 17, "17.1"), PgTool("/a/16/pg_dump", 16, "16.2"), PgTool("/a/15/pg_dump", 15, "")]
    assert E.choose_tool(tools, 16).major == 16
    assert E.choose_tool(tools, 14).major == 15  # nearest newer, not the newest
    with pytest.raises(
        ToolVersionMismatch, match="server is version 18 but the installed pg_dump is version 15, 16, 17"
    ):
        E.choose_tool(tools, 18)


@pytest.mark.parametrize("uri", ["postgresql://u@h/", "postgresql://u@h", "postgresql://u@h/all"])
def test_no_database_means_every_database_via_pg_dumpall(uri: str) -> None:
    c = E.parse_uri(uri)
    assert c.database is None
    engine = PostgresEngine(["/usr/lib/postgresql/15/bin"], search_path=False)
    cmd = engine.preview_command(c, DumpOptions(compress=True))
    assert cmd.argv[0].endswith("pg_dumpall") and "--format=custom" not in cmd.argv
    assert E.extension(DumpOptions(compress=True), c) == ".sql"
    assert not E.native_compression(c)
    assert "PGDATABASE" not in cmd.env
