"""Restore-side safety (issue 25): drills that touch only what they may, names passed as data, one odd
name failing its own line, manifests that must belong to the job, same-second ordering.

Every test here failed on the main before the fix it names, against the suite's real servers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import dbstash
from dbstash import RestoreRefused, Settings
from tests.support.dbservers import MariaDbServer, RedisServer
from tests.support.servers import PgServer

pytestmark = pytest.mark.integration


def _pg_db_with_table(pg: PgServer) -> tuple[str, str]:
    name, table = f"live_{uuid.uuid4().hex[:8]}", f"t_{uuid.uuid4().hex[:6]}"
    pg.createdb(name)
    pg.psql(f"CREATE TABLE {table}(id int); INSERT INTO {table} SELECT generate_series(1, 10)", name)
    return name, table


def _pg_server_cli(pg: PgServer, tmp_path: Path, **env: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The CLI as an operator runs it against *pg*'s whole server (``DB_NAME=all``), into a local folder."""
    full = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "DB_NAME": "all",
        "RCLONE_REMOTE": str(tmp_path / "remote"),
        "BACKUP_SCHEDULE": "once",
        # kept, so these tests can be run against another checkout (PYTHONPATH=/that/src pytest ...)
        **{k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ},
        **env,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dbstash_cli", *args],
            env=full,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )

    return cli


# -- 1. a drill never erases a target it did not prove empty -----------------------------------------
def test_pg_verify_into_a_database_holding_data_refuses_and_keeps_it(pg: PgServer, tmp_path: Path) -> None:
    settings = Settings.create(pg.uri(), remote=str(tmp_path / "remote"))
    dbstash.backup(settings=settings)
    live, table = _pg_db_with_table(pg)
    with pytest.raises(RestoreRefused, match=r"not empty.*nothing was touched"):
        dbstash.verify(settings, target=pg.uri(database=live))
    assert pg.psql(f"SELECT count(*) FROM {table}", live) == "10", "the refused target keeps its data"


def test_pg_verify_that_fails_midway_clears_only_the_scratch_it_proved_empty(pg: PgServer, tmp_path: Path) -> None:
    settings = Settings.create(pg.uri(), remote=str(tmp_path / "remote"))
    backup = dbstash.backup(settings=settings)
    scratch = f"scratch_{uuid.uuid4().hex[:8]}"
    pg.createdb(scratch)
    data = bytearray((tmp_path / "remote" / backup.name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / "remote" / backup.name).write_bytes(bytes(data))
    with pytest.raises(dbstash.ChecksumMismatch):
        dbstash.verify(settings, target=pg.uri(database=scratch))
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", scratch) == "0"


def test_mariadb_verify_into_a_database_holding_data_refuses_and_keeps_it(
    mariadb: MariaDbServer, tmp_path: Path
) -> None:
    settings = Settings.create(mariadb.uri(scheme="mariadb"), remote=str(tmp_path / "remote"))
    dbstash.backup(settings=settings)
    live = f"live_{uuid.uuid4().hex[:8]}"
    mariadb.sql(f"CREATE DATABASE {live}; CREATE TABLE {live}.keep (id int); INSERT INTO {live}.keep VALUES (1), (2)")
    mariadb.sql(f"GRANT ALL ON {live}.* TO 'app'@'%'")
    with pytest.raises(RestoreRefused, match="not empty"):
        dbstash.verify(settings, target=mariadb.uri(scheme="mariadb", database=live))
    assert mariadb.sql(f"SELECT count(*) FROM {live}.keep") == "2", "the refused target keeps its data"


# -- 2. names reach client tools as data, never as options -----------------------------------------------
#: Names a server can hold that a tool would take for options, a conninfo, or shell text if passed carelessly.
HOSTILE = ["-x", "--opt=1", "host=127.0.0.9 dbname=postgres", "a'b\"c;d", "$(touch y)", "two\nlines"]


def _pg_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.mark.parametrize("source", HOSTILE, ids=["dash", "option", "conninfo", "quotes", "subst", "newline"])
def test_pg_hostile_database_names_back_up_and_restore_as_themselves(pg: PgServer, tmp_path: Path, source: str) -> None:
    from urllib.parse import quote

    target = "-t " + source  # restored into another hostile name
    for name in (source, target):
        pg.psql(f"DROP DATABASE IF EXISTS {_pg_quote(name)}")
        pg.psql(f"CREATE DATABASE {_pg_quote(name)}")
    pg.psql("CREATE TABLE marker(v text); INSERT INTO marker VALUES ('from the hostile one')", source)
    uri = f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{pg.port}/{quote(source, safe='')}"
    # compress: the custom format, restored by pg_restore -d (where libpq reads a "k=v" name as conninfo)
    settings = Settings.create(
        uri, remote=str(tmp_path / "remote"), name_template="hostile-{date}-{time}", compress=True
    )
    dbstash.backup(settings=settings)
    tgt = f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{pg.port}/{quote(target, safe='')}"
    dbstash.restore(settings, target=tgt)
    assert pg.psql("SELECT v FROM marker", target) == "from the hostile one"
    assert not (tmp_path / "y").exists() and not Path("y").exists()
    for name in (source, target):
        pg.psql(f"DROP DATABASE {_pg_quote(name)}")


def _my_quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@pytest.mark.parametrize("source", [*HOSTILE, "--init-command=DROP DATABASE victim"])
def test_mariadb_hostile_database_names_run_nothing_and_restore(
    mariadb: MariaDbServer, tmp_path: Path, source: str
) -> None:
    from urllib.parse import quote

    victim, target = f"victim_{uuid.uuid4().hex[:6]}", "-t " + source
    source = source.replace("victim", victim)
    target = target.replace("victim", victim)
    mariadb.sql(f"CREATE DATABASE {victim}; CREATE TABLE {victim}.keep (id int); INSERT INTO {victim}.keep VALUES (7)")
    for name in (source, target):
        mariadb.sql(f"DROP DATABASE IF EXISTS {_my_quote(name)}; CREATE DATABASE {_my_quote(name)}")
    mariadb.sql(
        f"CREATE TABLE {_my_quote(source)}.marker (v text); INSERT INTO {_my_quote(source)}.marker VALUES ('m')"
    )
    base = f"mariadb://{mariadb.user}:{quote(mariadb.password, safe='')}@127.0.0.1:{mariadb.port}/"
    settings = Settings.create(
        base + quote(source, safe=""), remote=str(tmp_path / "remote"), name_template="hostile-{date}-{time}"
    )
    dbstash.backup(settings=settings)
    tgt = base + quote(target, safe="")
    dbstash.verify(settings, target=tgt)  # the size estimate, emptiness probe, row counts and clean-up
    dbstash.restore(settings, target=tgt)
    assert mariadb.sql(f"SELECT v FROM {_my_quote(target)}.marker") == "m"
    assert mariadb.sql(f"SELECT id FROM {victim}.keep") == "7", "no name ran as an --init-command"
    for name in (source, target, victim):
        mariadb.sql(f"DROP DATABASE {_my_quote(name)}")


@pytest.mark.parametrize("name", ["-x.db", "--version"])
def test_sqlite_paths_that_look_like_options(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    monkeypatch.chdir(tmp_path)
    con = sqlite3.connect(tmp_path / name)
    con.execute("CREATE TABLE t(v)")
    con.execute("INSERT INTO t VALUES (42)")
    con.commit()
    con.close()
    settings = Settings.create(f"sqlite:{name}", remote=str(tmp_path / "remote"), name_template="lite-{date}-{time}")
    dbstash.backup(settings=settings)
    out = "-restored.db"
    dbstash.restore(settings, target=out)
    assert sqlite3.connect(tmp_path / out).execute("SELECT v FROM t").fetchall() == [(42,)]


@pytest.mark.parametrize("user", ["--rdb", "-x"])
def test_redis_user_and_target_that_look_like_options(
    redis: RedisServer, tmp_path: Path, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis names come from the URI (user, host) and the restore target (a file): a user named like a
    redis-cli option (``--rdb``) is its ``--user`` value, a target ``-x.rdb`` is a file, not an option."""
    from urllib.parse import quote

    monkeypatch.chdir(tmp_path)
    redis.cli("ACL", "SETUSER", user, "on", ">user-pw-1234", "~*", "&*", "+@all")
    redis.cli("SET", "hostile:key", "$(touch pwned)")
    try:
        uri = f"redis://{quote(user, safe='')}:user-pw-1234@127.0.0.1:{redis.port}/0"
        settings = Settings.create(uri, remote=str(tmp_path / "remote"), name_template="rdb-{date}-{time}")
        result = dbstash.backup(settings=settings)
        assert result.size > 0
        out = tmp_path / "-x.rdb"
        dbstash.restore(settings, target="-x.rdb")
        assert out.read_bytes().startswith(b"REDIS") and b"hostile:key" in out.read_bytes()
        assert not (tmp_path / "pwned").exists()
    finally:
        redis.cli("ACL", "DELUSER", user)
        redis.cli("DEL", "hostile:key")


# -- 3. one database that cannot be an object name fails its own line only ---------------------------------
def test_odd_server_database_names_fail_their_own_line(own_pg: PgServer, tmp_path: Path) -> None:
    import json

    odd = ["a/b", "../x", "$(touch /tmp/y)", "new\nline"]
    for name in [*odd, "good", "$(touch y)"]:
        own_pg.psql(f"CREATE DATABASE {_pg_quote(name)}")
    own_pg.psql("CREATE TABLE t(v int); INSERT INTO t VALUES (1)", "good")
    cli = _pg_server_cli(
        own_pg,
        tmp_path,
        DB_URI=f"postgresql://{own_pg.user}:{own_pg.password}@127.0.0.1:{own_pg.port}/",
        DB_GLOBALS="false",
    )
    done = cli("backup", "--json")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    by_db = {d["database"]: d for d in result["databases"]}
    assert by_db["good"]["ok"] and by_db[own_pg.database]["ok"], "the other databases are backed up"
    for name in odd:
        assert not by_db[name]["ok"] and "object name" in by_db[name]["error"], by_db[name]
    assert "new" not in by_db and "line" not in by_db, "a new line in a name makes no phantom databases"
    assert by_db["$(touch y)"]["ok"], "a name that is a valid object name is stored as itself (data, not shell)"
    assert not (tmp_path / "y").exists()
    stored = sorted(p.name for p in (tmp_path / "remote").iterdir())
    assert any(n.startswith("good-") for n in stored) and all("/" not in n for n in stored)


# -- 4. a manifest must be this job's: its name, engine and database ----------------------------------------
def _sqlite_job(db: Path, remote: Path, template: str = "{db}-{date}-{time}") -> Settings:
    return Settings.create(f"sqlite:///{db}", remote=str(remote), name_template=template)


def test_an_old_backup_copied_over_the_newest_name_is_refused(sqlite_db: Path, tmp_path: Path) -> None:
    from dbstash.jobs.manifest import manifest_name

    remote = tmp_path / "remote"
    old = dbstash.backup(settings=_sqlite_job(sqlite_db, remote, "{db}-2026-01-01-000000"))
    new = dbstash.backup(settings=_sqlite_job(sqlite_db, remote, "{db}-2026-01-02-000000"))
    for suffix in ("", "manifest"):  # the rollback: the old object and its manifest under the newest names
        src = remote / (manifest_name(old.name) if suffix else old.name)
        dst = remote / (manifest_name(new.name) if suffix else new.name)
        dst.write_bytes(src.read_bytes())
    settings = _sqlite_job(sqlite_db, remote)
    with pytest.raises(RestoreRefused, match=r"not this job's backup: its manifest names name 'app-2026-01-01"):
        dbstash.restore(settings, new.name, target=str(tmp_path / "named.db"))
    assert not (tmp_path / "named.db").exists()
    listed = {i.name: i for i in dbstash.list_backups(settings)}
    assert str(listed[new.name].manifest_problem).startswith("not this job's backup")
    assert listed[old.name].manifest_problem is None
    # latest passes over the copy (saying so) and restores the newest backup of this job's own
    result = dbstash.restore(settings, target=str(tmp_path / "out.db"))
    assert result.name == old.name and result.checksum_verified
    cli = subprocess.run(
        [sys.executable, "-m", "dbstash_cli", "list", "--uri", f"sqlite:///{sqlite_db}", "--remote", str(remote)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BACKUP_NAME_TEMPLATE": "{db}-{date}-{time}"},
    )
    assert cli.returncode == 0, cli.stderr
    line = next(x for x in cli.stdout.splitlines() if new.name in x)
    assert "not this job's backup" in line and "sha256" not in line


def test_another_jobs_backup_planted_under_this_jobs_name_is_refused(sqlite_db: Path, tmp_path: Path) -> None:
    import shutil

    remote = tmp_path / "remote"
    other_db = tmp_path / "other.db"
    shutil.copy(sqlite_db, other_db)
    theirs = dbstash.backup(settings=_sqlite_job(other_db, remote / "theirs", "backup-2026-01-01-000000"))
    (remote / "ours").mkdir(parents=True)
    for p in (remote / "theirs").iterdir():
        shutil.copy(p, remote / "ours" / p.name)
    ours = _sqlite_job(sqlite_db, remote / "ours", "backup-{date}-{time}")
    with pytest.raises(RestoreRefused, match=r"database 'other' \(expected 'app'\)"):
        dbstash.restore(ours, theirs.name, target=str(tmp_path / "out.db"))
    with pytest.raises(RestoreRefused, match=r"no backup of this job's own for latest: passed over backup-2026"):
        dbstash.restore(ours, target=str(tmp_path / "out.db"))
    assert not (tmp_path / "out.db").exists()
    with pytest.raises(RestoreRefused, match="no backup of this job's own"):
        dbstash.verify(ours)
    assert theirs.name


def test_a_backup_of_another_engine_is_never_streamed_into_this_engines_tool(
    sqlite_db: Path, mariadb: MariaDbServer, tmp_path: Path
) -> None:
    import shutil

    remote = tmp_path / "remote"
    dbstash.backup(settings=_sqlite_job(sqlite_db, remote / "lite", "app-2026-01-01-000000"))
    (remote / "maria").mkdir(parents=True)
    for p in (remote / "lite").iterdir():
        shutil.copy(p, remote / "maria" / p.name.replace(".sql", ".sql"))
    job = Settings.create(
        mariadb.uri(scheme="mariadb"), remote=str(remote / "maria"), name_template="app-{date}-{time}"
    )
    with pytest.raises(RestoreRefused, match=r"engine 'sqlite' \(expected 'mariadb'\)"):
        dbstash.restore(job, force=True)


# -- 5. backups taken in the same second are ordered as they were taken --------------------------------------
def test_same_second_runs_keep_and_restore_the_newest(tmp_path: Path) -> None:
    import sqlite3
    import time

    db, remote = tmp_path / "app.db", tmp_path / "remote"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE runs(n int)")
    con.commit()
    settings = Settings.create(f"sqlite:///{db}", remote=str(remote), retention_max_files=2)
    while time.time() % 1 > 0.05:  # start at the top of a second: the five runs (~0.1 s each) share it
        time.sleep(0.01)
    names = []
    for n in range(1, 6):
        con.execute("INSERT INTO runs VALUES (?)", (n,))
        con.commit()
        names.append(dbstash.backup(settings=settings).name)
    con.close()
    kept = [i.name for i in dbstash.list_backups(settings) if i.complete]
    assert kept == [names[4], names[3]], f"the two newest of {names} are kept, newest first"
    out = tmp_path / "latest.db"
    assert dbstash.restore(settings, target=str(out)).name == names[4]
    assert sqlite3.connect(out).execute("SELECT max(n) FROM runs").fetchone() == (5,)


# -- 6. messages state only what is known ------------------------------------------------------------
def test_an_unverified_damaged_age_backup_never_claims_nothing_was_applied(
    mariadb: MariaDbServer, tmp_path: Path
) -> None:
    import subprocess

    from dbstash.jobs.manifest import manifest_name

    key = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    key.chmod(0o600)
    public = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True).stdout.strip()
    src, dst = f"src_{uuid.uuid4().hex[:6]}", f"dst_{uuid.uuid4().hex[:6]}"
    mariadb.sql(f"CREATE DATABASE {src}; CREATE DATABASE {dst}")
    for n in range(8):  # ~2 MB of SQL: the tool starts long before the damaged middle
        mariadb.sql(
            f"CREATE TABLE t{n} (id int, v text); INSERT INTO t{n} SELECT seq, md5(seq) FROM seq_1_to_5000", src
        )
    settings = Settings.create(
        mariadb.uri(scheme="mariadb", database=src),
        remote=str(tmp_path / "remote"),
        encrypt_to=public,
        identity_file=key,
    )
    backup = dbstash.backup(settings=settings)
    (tmp_path / "remote" / manifest_name(backup.name)).unlink()
    stored = tmp_path / "remote" / backup.name
    data = bytearray(stored.read_bytes())
    data[len(data) * 3 // 4] ^= 0x01
    stored.write_bytes(bytes(data))
    with pytest.raises(dbstash.RestoreError) as info:
        dbstash.restore(settings, target=mariadb.uri(scheme="mariadb", database=dst), allow_unverified=True)
    applied = mariadb.sql(f"SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{dst}'")
    assert "cannot be decrypted" in str(info.value)
    assert applied != "0", "the unverified stream reached the client before age found the damage"
    assert "nothing was applied" not in str(info.value), (applied, str(info.value))
    assert "already received part of it" in str(info.value)
    mariadb.sql(f"DROP DATABASE {src}; DROP DATABASE {dst}")


# -- 11. a run that backs up nothing is not a success ---------------------------------------------------
def test_a_run_whose_selection_matches_nothing_exits_1(own_pg: PgServer, tmp_path: Path) -> None:
    import json

    # DB_EXCLUDE: the only database there
    cli = _pg_server_cli(
        own_pg,
        tmp_path,
        DB_URI=f"postgresql://{own_pg.user}:{own_pg.password}@127.0.0.1:{own_pg.port}/",
        DB_EXCLUDE=f"{own_pg.database}*",
        DB_GLOBALS="false",
    )
    done = cli("backup", "--json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is False and "nothing was backed up" in result["error"]


# -- 7. PostgreSQL: a database holding only functions or types is not empty ----------------------------------
@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TYPE mood AS ENUM ('ok', 'sad')",
        "CREATE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 42'",
        "CREATE DOMAIN positive AS int CHECK (VALUE > 0)",
        "CREATE SCHEMA side",
    ],
    ids=["enum", "function", "domain", "schema"],
)
def test_pg_restore_refuses_a_target_holding_non_table_objects(pg: PgServer, tmp_path: Path, sql: str) -> None:
    settings = Settings.create(pg.uri(), remote=str(tmp_path / "remote"))
    dbstash.backup(settings=settings)
    name = f"objs_{uuid.uuid4().hex[:8]}"
    pg.createdb(name)
    pg.psql(sql, name)
    with pytest.raises(RestoreRefused, match="not empty"):
        dbstash.restore(settings, target=pg.uri(database=name))
    fresh = f"fresh_{uuid.uuid4().hex[:8]}"
    pg.createdb(fresh)
    dbstash.restore(settings, target=pg.uri(database=fresh))  # a fresh database is still empty


# -- 8. _globals is the globals' series: never a database's, and --target with it is never ignored ------------
def test_a_server_database_named_globals_and_a_target_for_the_globals(own_pg: PgServer, tmp_path: Path) -> None:
    import json

    own_pg.psql('CREATE DATABASE "_globals"')
    own_pg.psql("CREATE TABLE marker(v int)", "_globals")
    uri = f"postgresql://postgres:superuser-pw@127.0.0.1:{own_pg.port}/"
    cli = _pg_server_cli(own_pg, tmp_path, DB_URI=uri, DB_GLOBALS="true")

    done = cli("backup", "--json")
    assert done.returncode == 1, done.stderr
    lines = json.loads(done.stdout)["databases"]

    globals_lines = [d for d in lines if d["database"] == "_globals"]
    assert [d["ok"] for d in globals_lines] == [True, False], "the globals stored; the database of that name refused"
    assert "not named _globals" in globals_lines[1]["error"]
    scratch = f"postgresql://postgres:superuser-pw@127.0.0.1:{own_pg.port}/{own_pg.database}"
    refused = cli("restore", "--database", "_globals", "--target", scratch)
    assert refused.returncode == 2 and "--target" in refused.stderr and "naming no database" in refused.stderr


# -- 13. orphan manifests (a SIGKILL in the commit window) are swept like stale partials ----------------------
def test_orphan_manifests_are_removed_by_the_next_run_and_by_prune(sqlite_db: Path, tmp_path: Path) -> None:
    import os
    import time

    from dbstash.jobs.manifest import manifest_name

    remote = tmp_path / "remote"
    settings = Settings.create(f"sqlite:///{sqlite_db}", remote=str(remote))
    dbstash.backup(settings=settings)
    old = remote / manifest_name("app-2026-01-01-000000.sql")
    young = remote / manifest_name("app-2026-01-02-000000.sql")
    other = remote / manifest_name("billing-2026-01-01-000000.sql")  # not this job's: never touched
    for p in (old, young, other):
        p.write_text("{}")
    two_days_ago = time.time() - 2 * 86400
    for p in (old, other):
        os.utime(p, (two_days_ago, two_days_ago))
    dbstash.backup(settings=settings)
    assert not old.exists() and young.exists() and other.exists()
    os.utime(young, (two_days_ago, two_days_ago))
    dbstash.prune(settings)
    assert not young.exists() and other.exists()
    assert all(manifest_name(p.name) in {q.name for q in remote.iterdir()} for p in remote.glob("app-*.sql"))


@pytest.mark.parametrize("source", ["-x", "--gzip"])
def test_mongo_hostile_database_names_back_up_and_restore_as_themselves(
    ferretdb: object, tmp_path: Path, source: str
) -> None:
    import pymongo

    from tests.support.dbservers import FerretDbServer

    assert isinstance(ferretdb, FerretDbServer)  # its fixture skips, saying why, when the Go peers are missing
    target = "-t" + source.lstrip("-")
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        ferretdb.uri(source), serverSelectionTimeoutMS=10_000
    )
    try:
        client[source]["marker"].insert_one({"v": "from the hostile one"})
        settings = Settings.create(
            ferretdb.uri(source), remote=str(tmp_path / "remote"), name_template="hostile-{date}-{time}"
        )
        dbstash.backup(settings=settings)
        dbstash.restore(settings, target=ferretdb.uri(target))
        assert client[target]["marker"].find_one({}, {"_id": 0}) == {"v": "from the hostile one"}
    finally:
        for name in (source, target):
            client.drop_database(name)
        client.close()
