"""MySQL/MariaDB, Redis and MongoDB engines: URI forms, argv (never a secret), secret files, extensions, conflicts."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime

import pytest
import yaml

from dbstash import ConfigError
from dbstash.engines import engine_for_uri, get_engine
from dbstash.engines.base import DumpCommand, DumpOptions
from dbstash.engines.mongo import MongoEngine
from dbstash.engines.mysql import MariadbEngine, MysqlEngine
from dbstash.engines.redis import RedisEngine
from dbstash.settings.config import Settings

SECRET = 'p@ss w#rd"\\x'


def run(coro_fn: object) -> DumpCommand:
    import anyio

    return anyio.run(coro_fn)  # type: ignore[arg-type]


# -- MySQL / MariaDB -------------------------------------------------------------------------------
def test_mysql_uri_and_option_file_hold_the_secret_not_argv() -> None:
    e = MysqlEngine(tool="/usr/bin/mysqldump")
    c = e.parse_uri("mysql://app:p%40ss%20w%23rd%22%5Cx@db.example:3307/shop?ssl-mode=REQUIRED&ssl_ca=/ca.pem")
    assert (c.user, c.password, c.host, c.port, c.database) == ("app", SECRET, "db.example", "3307", "shop")
    cmd = run(lambda: e.dump_command(c, DumpOptions()))
    assert cmd.argv[1] == "--defaults-extra-file={secret:client.cnf}"  # first option, or the tool refuses
    assert "--single-transaction" in cmd.argv and "--routines" in cmd.argv and "--events" in cmd.argv
    assert cmd.argv[-2:] == ("--", "shop")
    assert not any(SECRET in a or "p@ss" in a for a in cmd.argv)
    text = cmd.secret_files["client.cnf"].decode()
    assert text.startswith("[client]\n")
    assert 'password="p@ss w#rd\\"\\\\x"' not in text  # quotes are not escaped: the outer pair is stripped
    assert 'password="p@ss w#rd"\\\\x"' in text
    assert "ssl-mode=" in text and "ssl-ca=" in text and "port=3307" in text


def test_mysql_option_file_is_read_back_by_the_real_client(tmp_path: object) -> None:
    """my_print_defaults parses the file exactly as mariadb-dump will: the password survives quoting."""
    tool = "/usr/bin/my_print_defaults"
    if not os.access(tool, os.X_OK):
        pytest.skip("my_print_defaults not installed (mariadb-client); the integration tests cover the same path")
    e = MariadbEngine()
    c = e.parse_uri("mariadb://app:p%40ss%20w%23rd%22%5Cx@127.0.0.1:3306/shop")
    cmd = DumpCommand(("x",), secret_files={"client.cnf": e.option_file(c)})
    with cmd.materialize() as (_argv, fds):
        out = subprocess.run(
            [tool, f"--defaults-file=/dev/fd/{fds[0]}", "client"],
            pass_fds=fds,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    assert f"--password={SECRET}" in out.splitlines()


def test_mysql_all_databases() -> None:
    for uri in ("mysql://u@h/", "mysql://u@h", "mysql://u@h/all"):
        c = MysqlEngine().parse_uri(uri)
        assert c.database is None
        assert MysqlEngine(tool="mysqldump").preview_command(c, DumpOptions()).argv[-1] == "--all-databases"
    assert MysqlEngine().database_label(MysqlEngine().parse_uri("mysql://u@h")) == "all"


def test_mysql_and_mariadb_keys_and_tool_preference() -> None:
    assert isinstance(engine_for_uri("mysql://u@h/db"), MysqlEngine)
    assert isinstance(engine_for_uri("mariadb://u@h/db"), MariadbEngine)
    assert MysqlEngine.tools[0] == "mysqldump" and MariadbEngine.tools[0] == "mariadb-dump"
    # mysql:// with DB_ENGINE=mariadb (a MariaDB image): the mariadb engine parses the spec's URI form
    s = Settings.from_env({"DB_URI": "mysql://u:pw@h/db", "DB_ENGINE": "mariadb", "RCLONE_REMOTE": "/tmp/x"})
    assert s.engine_key == "mariadb"


def test_mysql_tail_check() -> None:
    e = MysqlEngine()
    cmd = DumpCommand(("mysqldump", "--defaults-extra-file=x", "db"))
    assert e.check_output_tail(b"INSERT ...;\n-- Dump completed on 2026-11-26 12:00:00\n", cmd) is None
    assert e.check_output_tail(b"INSERT INTO t VALUES (1,'abc'", cmd) is not None
    skip = DumpCommand(("mysqldump", "--skip-comments", "db"))
    assert e.check_output_tail(b"INSERT INTO t VALUES (1);\n", skip) is None


def test_mysql_conflicting_flags() -> None:
    assert MysqlEngine().stream_conflicts(["--tab=/tmp/x", "--skip-lock-tables"]) == ["--tab=/tmp/x"]
    assert MysqlEngine().stream_conflicts(["--tab", "/tmp/x"]) == ["--tab"]


# -- Redis ---------------------------------------------------------------------------------------
def test_redis_uri_forms_and_auth_through_the_environment() -> None:
    e = RedisEngine(tool="/usr/bin/redis-cli")
    c = e.parse_uri("redis://:s3cret@cache:6380/2")
    cmd = run(lambda: e.dump_command(c, DumpOptions()))
    assert cmd.argv[1:5] == ("-h", "cache", "-p", "6380")
    assert cmd.argv[-2:] == ("--rdb", "-")
    assert cmd.env == {"REDISCLI_AUTH": "s3cret"}
    assert not any("s3cret" in a for a in cmd.argv)
    assert e.database_label(c) == "redis" and e.extension(DumpOptions()) == ".rdb"
    tls = e.parse_uri("rediss://backup:pw@cache/0?cacert=/ca.pem&insecure=")
    argv = e.preview_command(tls, DumpOptions()).argv
    assert "--tls" in argv and argv[argv.index("--cacert") + 1] == "/ca.pem" and "--insecure" in argv
    assert argv[argv.index("--user") + 1] == "backup"
    assert not e.native_compression() and e.stream_conflicts(["--rdb", "x"]) == []


def test_redis_default_port_and_bad_database() -> None:
    e = RedisEngine(tool="redis-cli")
    argv = e.preview_command(e.parse_uri("redis://cache"), DumpOptions()).argv
    assert argv[1:5] == ("-h", "cache", "-p", "6379")
    with pytest.raises(ConfigError):
        e.parse_uri("redis://cache/zero")


# -- MongoDB -------------------------------------------------------------------------------------
def test_mongo_uri_goes_to_the_config_file_only() -> None:
    e = MongoEngine(tool="/usr/bin/mongodump")
    c = e.parse_uri("mongodb://app:p%40ss@m1:27017,m2:27017/shop?replicaSet=rs0")
    c = e.with_auth_source(c, "users")
    cmd = run(lambda: e.dump_command(c, DumpOptions()))
    assert cmd.argv[1:] == ("--config={secret:mongodump.yaml}", "--archive", "--db=shop")
    conf = yaml.safe_load(cmd.secret_files["mongodump.yaml"])
    assert conf["uri"].startswith("mongodb://app:p%40ss@m1:27017,m2:27017/?")
    assert "authSource=users" in conf["uri"] and "replicaSet=rs0" in conf["uri"]
    assert "connectTimeoutMS=" in conf["uri"]
    assert not any("p%40ss" in a or "p@ss" in a for a in cmd.argv)


def test_mongo_auth_source_precedence_and_srv() -> None:
    e = MongoEngine()
    c = e.with_auth_source(e.parse_uri("mongodb+srv://u:p@cluster.example/db?authSource=own"), "other")
    assert c.params["authSource"] == "own"  # the URI wins over DB_AUTH_SOURCE
    assert e.connection_string(c).startswith("mongodb+srv://u:p@cluster.example/?")
    s = Settings.from_env({"DB_HOST": "m", "DB_ENGINE": "mongo", "DB_USER": "u", "RCLONE_REMOTE": "/tmp/x"})
    assert s.connection.params["authSource"] == "admin" and s.connection.database is None
    assert s.template().render(datetime(2026, 2, 7, 2, tzinfo=UTC)) == "all-2026-02-07-020000.archive"


def test_mongo_compression_and_extensions() -> None:
    e = MongoEngine(tool="mongodump")
    c = e.parse_uri("mongodb://h/db")
    assert e.extension(DumpOptions()) == ".archive"
    assert e.extension(DumpOptions(compress=True)) == ".archive.gz"
    assert e.extension(DumpOptions(extra_args=("--gzip",))) == ".archive.gz"
    argv = e.preview_command(c, DumpOptions(compress=True, extra_args=("--gzip",))).argv
    assert argv.count("--gzip") == 1  # DUMP_EXTRA_ARGS overrides BACKUP_COMPRESS, no doubled flag
    assert e.stream_conflicts(["--out=/tmp/d"]) == ["--out=/tmp/d"]
    assert e.stream_conflicts(["-o", "/tmp/d"]) == ["-o"]
    assert e.stream_conflicts(["--out", "/tmp/d"]) == ["--out"]


# -- registry, settings, secret files ------------------------------------------------------------
@pytest.mark.parametrize("key", ["pg", "mysql", "mariadb", "redis", "mongo", "sqlite"])
def test_every_engine_key_is_registered(key: str) -> None:
    assert get_engine(key).key == key


@pytest.mark.parametrize(
    ("uri", "compress", "name_end"),
    [
        ("mysql://u@h/shop", "zstd", ".sql.zst"),
        ("mariadb://u@h/shop", "gzip:9", ".sql.gz"),
        ("redis://h", "zstd:19", ".rdb.zst"),
        ("mongodb://h/db", "true", ".archive.gz"),
        ("postgresql://u@h/db", "true", ".dump"),
        ("postgresql://u@h/db", "zstd", ".sql.zst"),
        ("sqlite:///x.db", "gzip", ".sql.gz"),
    ],
)
def test_extensions_with_compression(uri: str, compress: str, name_end: str) -> None:
    s = Settings.from_env({"DB_URI": uri, "RCLONE_REMOTE": "/tmp/x", "BACKUP_COMPRESS": compress})
    assert s.template().extension == name_end
    over = Settings.from_env(
        {"DB_URI": uri, "RCLONE_REMOTE": "/tmp/x", "BACKUP_COMPRESS": compress, "BACKUP_EXTENSION": ".bak"}
    )
    assert over.template().extension == ".bak"


def test_warnings_name_the_flag_and_the_compression_no_op() -> None:
    s = Settings.from_env(
        {
            "DB_URI": "mysql://u@h/db",
            "RCLONE_REMOTE": "/tmp/x",
            "BACKUP_COMPRESS": "true",
            "DUMP_EXTRA_ARGS": "--tab=/x",
        }
    )
    text = "\n".join(s.warnings())
    assert "--tab=/x" in text and "BACKUP_COMPRESS=true" in text
    redis = Settings.from_env({"DB_URI": "redis://h", "RCLONE_REMOTE": "/tmp/x", "BACKUP_COMPRESS": "true"})
    assert any("BACKUP_COMPRESS=true" in w for w in redis.warnings())
    pg = Settings.from_env({"DB_URI": "postgresql://u@h/db", "RCLONE_REMOTE": "/tmp/x", "DUMP_EXTRA_ARGS": "-Fd -f x"})
    assert "-Fd -f" in "\n".join(pg.warnings())


def test_secret_files_are_private_memfds_closed_after_use() -> None:
    cmd = DumpCommand(("tool", "--conf={secret:a.cnf}", "--other"), secret_files={"a.cnf": b"password=x\n"})
    with cmd.materialize() as (argv, fds):
        (fd,) = fds
        assert argv == ["tool", f"--conf=/dev/fd/{fd}", "--other"]
        st = os.fstat(fd)
        assert st.st_mode & 0o777 == 0o600
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:")
        with open(f"/dev/fd/{fd}", "rb") as fh:
            assert fh.read() == b"password=x\n"
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    assert "password" not in cmd.display() and "password" not in repr(cmd)
