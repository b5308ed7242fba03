"""Many databases per job (issue 17): one object per database, the globals, restoring a whole run.

Real servers started per test (PostgreSQL, MariaDB, FerretDB with the shared-source mongo tools),
the real rclone into a local folder, the CLI as a user runs it (environment variables only).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dbstash
from dbstash import Settings
from tests.support.dbservers import FerretDbServer, MariaDbServer
from tests.support.receivers import HttpReceiver
from tests.support.servers import PgServer

pytestmark = pytest.mark.integration
DBSTASH = [sys.executable, "-m", "dbstash_cli"]
SUPERUSER_PW = "superuser-pw"  # tests.support.servers.PgServer's postgres password


def _run(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "LOG_FORMAT": "text", **env}
    return subprocess.run(DBSTASH + args, env=full, capture_output=True, text=True, timeout=timeout)


# -- PostgreSQL ----------------------------------------------------------------------------------------
def _su_env(pg: PgServer, database: str = "postgres") -> dict[str, str]:
    return {**pg.env(database), "PGUSER": "postgres", "PGPASSWORD": SUPERUSER_PW}


def su_sql(pg: PgServer, sql: str, database: str = "postgres") -> str:
    """Run *sql* as the superuser; unaligned tuples."""
    out = subprocess.run(
        [os.path.join(pg.bindir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
        input=sql + ";\n",  # on stdin: one statement at a time (CREATE DATABASE cannot share a transaction)
        env=_su_env(pg, database),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout.strip()


def dumpall(pg: PgServer) -> str:
    """The whole cluster as pg_dumpall writes it, less the per-run random ``\\restrict`` keys."""
    out = subprocess.run(
        [os.path.join(pg.bindir, "pg_dumpall")], env=_su_env(pg), capture_output=True, text=True, check=True
    ).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def seed_cluster(pg: PgServer) -> None:
    """Roles with passwords, a membership and grants; three databases besides app (scratch is excluded)."""
    su_sql(
        pg,
        "CREATE ROLE alice LOGIN PASSWORD 'alice-pw-1'; CREATE ROLE readers NOLOGIN; GRANT readers TO alice; "
        "CREATE DATABASE shop OWNER alice; CREATE DATABASE billing; CREATE DATABASE scratch; "
        "ALTER DATABASE billing SET work_mem = '8MB'",
    )
    su_sql(
        pg,
        "SET ROLE alice; CREATE TABLE items(id int PRIMARY KEY, name text); "
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 2000) g; "
        "GRANT SELECT ON items TO readers",
        "shop",
    )
    su_sql(
        pg,
        "CREATE TABLE invoices(id int PRIMARY KEY, amount numeric); "
        "INSERT INTO invoices SELECT g, g * 1.25 FROM generate_series(1, 500) g; "
        "CREATE TABLE big(id int, pad text); "
        "INSERT INTO big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 150000) g",
        "billing",
    )
    su_sql(pg, "CREATE TABLE notes(id int); INSERT INTO notes VALUES (1), (2)", "app")
    su_sql(pg, "CREATE TABLE junk(id int); INSERT INTO junk VALUES (1)", "scratch")


def pg_content(pg: PgServer, database: str) -> dict[str, tuple[int, str]]:
    """(rows, md5 of every row in order) per user table of *database*."""
    tables = su_sql(
        pg,
        "SELECT schemaname || '.' || tablename FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        database,
    ).split()
    found = {}
    for t in tables:
        row = su_sql(
            pg, f"SELECT count(*), md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {t} x", database
        )
        n, digest = row.split("|")
        found[t] = (int(n), digest)
    return found


def pg_job_env(pg: PgServer, remote: Path, **extra: str) -> dict[str, str]:
    return {
        "DB_URI": f"postgresql://postgres:{SUPERUSER_PW}@127.0.0.1:{pg.port}/",
        "RCLONE_REMOTE": str(remote),
        "BACKUP_SCHEDULE": "once",
        **extra,
    }


@pytest.fixture
def cluster(own_pg: PgServer) -> PgServer:
    seed_cluster(own_pg)
    return own_pg


def objects(remote: Path) -> list[str]:
    return sorted(os.listdir(remote)) if remote.exists() else []


def test_pg_all_one_object_each_then_drop_everything_and_restore_the_run(cluster: PgServer, tmp_path: Path) -> None:
    pg, remote = cluster, tmp_path / "remote"
    env = pg_job_env(pg, remote, DB_EXCLUDE="scratch")
    before = {db: pg_content(pg, db) for db in ("app", "billing", "shop")}
    cluster_before = dumpall(pg)

    done = _run(["backup", "--json"], env)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert [d["database"] for d in run["databases"]] == ["_globals", "app", "billing", "shop"]
    assert run["ok"] and "scratch" in run["excluded"] and "postgres" in run["excluded"]
    names = objects(remote)
    stamps = {re.search(r"\d{4}-\d{2}-\d{2}-\d{6}", n).group(0) for n in names}  # type: ignore[union-attr]
    assert len(stamps) == 1, "one run: every object carries the run's start time"
    for db in ("app", "billing", "shop"):
        assert sum(n.startswith(f"{db}-") and n.endswith(".dump") for n in names) == 1
        assert sum(n.startswith(f"{db}-") and n.endswith(".dump.dbstash-manifest.json") for n in names) == 1
    assert sum(n.startswith("_globals-") and n.endswith(".sql") for n in names) == 1
    assert not any(n.startswith(("scratch-", "postgres-", "template")) for n in names)

    # drop everything the backup holds: its databases and its roles
    su_sql(pg, "DROP DATABASE shop; DROP DATABASE billing; DROP DATABASE app; DROP ROLE alice; DROP ROLE readers")
    restored = _run(["restore", "--database", "all", "--json"], env)
    assert restored.returncode == 0, restored.stderr
    out = json.loads(restored.stdout)
    assert [r["database"] for r in out["restored"]] == ["_globals", "app", "billing", "shop"]
    assert all(r["checksum_verified"] for r in out["restored"])
    assert {db: pg_content(pg, db) for db in ("app", "billing", "shop")} == before
    assert dumpall(pg) == cluster_before, "owners, grants, database settings and role passwords all came back"
    # alice's password came back with her role
    login = subprocess.run(
        [os.path.join(pg.bindir, "psql"), "-X", "-A", "-t", "-c", "SELECT current_user"],
        env={**pg.env("shop"), "PGUSER": "alice", "PGPASSWORD": "alice-pw-1"},
        capture_output=True,
        text=True,
    )
    assert login.stdout.strip() == "alice", login.stderr


def test_pg_restore_one_database_alone_and_into_another_name(cluster: PgServer, tmp_path: Path) -> None:
    pg, remote = cluster, tmp_path / "remote"
    env = pg_job_env(pg, remote, DB_EXCLUDE="scratch")
    assert _run(["backup"], env).returncode == 0
    billing = pg_content(pg, "billing")
    shop = pg_content(pg, "shop")
    su_sql(pg, "DROP DATABASE billing")
    su_sql(pg, "INSERT INTO items VALUES (99999, 'after the backup')", "shop")
    done = _run(["restore", "--database", "billing"], env)
    assert done.returncode == 0, done.stderr
    assert pg_content(pg, "billing") == billing
    assert (
        su_sql(
            pg,
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE datname = 'billing'",
        )
        == "{work_mem=8MB}"
    ), "the database's own settings came back"
    assert pg_content(pg, "shop") != shop, "the other databases were not touched"

    # a database that holds data is refused without --force; with it, it is replaced
    refused = _run(["restore", "--database", "shop"], env)
    assert refused.returncode != 0 and "not empty" in refused.stderr
    forced = _run(["restore", "--database", "shop", "--force"], env)
    assert forced.returncode == 0, forced.stderr
    assert pg_content(pg, "shop") == shop

    # into another name: a scratch database of the test
    su_sql(pg, "CREATE DATABASE copy_of_shop")
    target = f"postgresql://postgres:{SUPERUSER_PW}@127.0.0.1:{pg.port}/copy_of_shop"
    copied = _run(["restore", "--database", "shop", "--target", target], env)
    assert copied.returncode == 0, copied.stderr
    assert pg_content(pg, "copy_of_shop") == shop

    # a job of several databases says which to restore
    vague = _run(["restore"], env)
    assert vague.returncode == 2 and "--database" in vague.stderr


def test_pg_globals_restore_into_a_server_where_the_roles_exist(cluster: PgServer, tmp_path: Path) -> None:
    pg, remote = cluster, tmp_path / "remote"
    env = pg_job_env(pg, remote, DB_NAME="shop")  # a one-name list with globals asked for
    env["DB_GLOBALS"] = "true"
    su_sql(pg, "CREATE ROLE auditor NOLOGIN; GRANT readers TO auditor")
    assert _run(["backup"], env).returncode == 0
    assert any(n.startswith("_globals-") for n in objects(remote))
    su_sql(pg, "ALTER ROLE alice PASSWORD 'alice-pw-2'; DROP ROLE auditor")
    done = _run(["restore", "--globals", "--json"], env)
    assert done.returncode == 0, done.stderr
    kept = json.loads(done.stdout)["kept"]
    assert "role alice" in kept and "role postgres" in kept and "role auditor" not in kept
    assert su_sql(pg, "SELECT rolname FROM pg_roles WHERE rolname = 'auditor'") == "auditor", "a missing role is back"
    assert su_sql(pg, "SELECT pg_has_role('auditor', 'readers', 'member')") == "t", "memberships are applied"
    login = subprocess.run(
        [os.path.join(pg.bindir, "psql"), "-X", "-A", "-t", "-c", "SELECT 1"],
        env={**pg.env("shop"), "PGUSER": "alice", "PGPASSWORD": "alice-pw-2"},
        capture_output=True,
        text=True,
    )
    assert login.returncode == 0, "an existing role keeps its current password: " + login.stderr


def test_pg_single_stream_all_restores_into_the_live_server_it_came_from(cluster: PgServer, tmp_path: Path) -> None:
    """The reported failure: restore --force of a pg_dumpall backup stopped at 'role "postgres" already exists'."""
    pg, remote = cluster, tmp_path / "remote"
    env = pg_job_env(pg, remote, DB_ALL_MODE="single")
    assert _run(["backup"], env).returncode == 0
    names = [n for n in objects(remote) if not n.endswith(".json")]
    assert len(names) == 1 and names[0].startswith("all-") and names[0].endswith(".sql")
    shop = pg_content(pg, "shop")
    su_sql(pg, "INSERT INTO items VALUES (99999, 'after the backup')", "shop")
    done = _run(["restore", "--force", "--json"], env)
    assert done.returncode == 0, done.stderr
    assert "role postgres" in json.loads(done.stdout)["kept"]
    assert pg_content(pg, "shop") == shop, "the database was replaced by the backup's"


def _kill_dump_of(pg: PgServer, database: str, stop: threading.Event, killed: list[str]) -> None:
    """Terminate pg_dump's session on *database* while its COPY streams (the server kills a dump mid-way)."""
    while not stop.is_set():
        hit = su_sql(
            pg,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND application_name = 'pg_dump' AND query LIKE 'COPY %'",
        )
        if hit:
            killed.append(hit)
            return
        time.sleep(0.005)


def test_pg_one_database_failing_mid_dump_leaves_the_others_committed(cluster: PgServer, tmp_path: Path) -> None:
    pg, remote = cluster, tmp_path / "remote"
    hook = HttpReceiver().start()
    try:
        env = pg_job_env(pg, remote, DB_EXCLUDE="scratch", NOTIFY_WEBHOOK_URL=hook.url("/hook"), NOTIFY_ON="always")
        stop, killed = threading.Event(), []  # type: ignore[var-annotated]
        watcher = threading.Thread(target=_kill_dump_of, args=(pg, "billing", stop, killed), daemon=True)
        watcher.start()
        try:
            done = _run(["backup", "--json"], env)
        finally:
            stop.set()
            watcher.join(10)
        assert killed, "the billing dump was killed while it streamed"
        assert done.returncode == 1, done.stderr
        run = json.loads(done.stdout)
        assert run["failed"] == ["billing"]
        assert {d["database"] for d in run["databases"] if d["ok"]} == {"_globals", "app", "shop"}
        names = objects(remote)
        assert not any("billing" in n for n in names), f"nothing of the failed database remains: {names}"
        for db in ("app", "shop", "_globals"):
            assert any(n.startswith(f"{db}-") and n.endswith(".dbstash-manifest.json") for n in names)
        events = [r.json() for r in hook.requests]
        final = events[-1]
        assert final["status"] == "failure" and "billing" in final["error"]
        by_db = {d["database"]: d["status"] for d in final["databases"]}
        assert by_db == {"_globals": "success", "app": "success", "billing": "failure", "shop": "success"}
    finally:
        hook.stop()


def test_pg_parallel_dumps_retention_per_database_and_list(cluster: PgServer, tmp_path: Path) -> None:
    pg, remote = cluster, tmp_path / "remote"
    env = pg_job_env(pg, remote, DB_EXCLUDE="scratch", DB_PARALLEL="3", RETENTION_MAX_FILES="1")
    first = _run(["backup"], env)
    assert first.returncode == 0, first.stderr
    time.sleep(1.1)  # a new second: new names
    second = _run(["backup", "--json"], env)
    assert second.returncode == 0, second.stderr
    run = json.loads(second.stdout)
    names = [n for n in objects(remote) if not n.endswith(".json")]
    assert len(names) == 4, f"one backup per series kept: {names}"
    assert {d["name"] for d in run["databases"]} == set(names), "the newest of each series is the one kept"
    deleted = [n for d in run["databases"] for n in d["deleted"]]
    assert len(deleted) == 4 and all(
        n.split("-")[0] == d.split("-")[0] for n, d in zip(sorted(deleted), sorted(names), strict=True)
    )
    listed = json.loads(_run(["list", "--json"], env).stdout)["backups"]
    assert sorted(b["database"] for b in listed) == ["_globals", "app", "billing", "shop"]
    pruned = json.loads(_run(["prune", "--dry-run", "--json"], env).stdout)
    assert len(pruned["backups"]) == 4 and all(b["action"] == "keep" for b in pruned["backups"])


def test_pg_dry_run_shows_every_database_command_and_touches_nothing(cluster: PgServer, tmp_path: Path) -> None:
    pg, remote = cluster, tmp_path / "remote"
    env = pg_job_env(pg, remote, DB_EXCLUDE="scratch", DRY_RUN="true")
    done = _run(["backup", "--json"], env)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    argv = {d["database"]: d["dump_argv"] for d in plan["databases"]}
    assert set(argv) == {"_globals", "app", "billing", "shop"}
    assert "--globals-only" in argv["_globals"]
    assert "--format=custom" in argv["shop"]
    assert SUPERUSER_PW not in done.stdout + done.stderr
    assert objects(remote) == []


def test_pg_library_returns_one_result_per_database(cluster: PgServer, tmp_path: Path) -> None:
    uri = f"postgresql://postgres:{SUPERUSER_PW}@127.0.0.1:{cluster.port}/"
    run = dbstash.backup_many(uri, remote=str(tmp_path / "r"), databases=["shop", "app"], include_globals=False)
    assert run.ok and [o.database for o in run.outcomes] == ["app", "shop"]
    assert all(o.result is not None and o.result.backup_id == run.backup_id for o in run.outcomes)
    with pytest.raises(dbstash.ConfigError) as err:
        dbstash.backup(settings=Settings.create(uri, remote=str(tmp_path / "r"), databases="all"))
    assert err.value.variable == "databases"


# -- MariaDB ---------------------------------------------------------------------------------------------
@pytest.fixture
def maria() -> Iterator[MariaDbServer]:
    server = MariaDbServer.start()
    server.sql(
        "CREATE USER 'admin'@'%' IDENTIFIED BY 'admin-pw'; GRANT ALL ON *.* TO 'admin'@'%' WITH GRANT OPTION; "
        "CREATE DATABASE crm; CREATE DATABASE stock; "
        "CREATE USER 'bob'@'%' IDENTIFIED BY 'bob-pw-1'; GRANT SELECT ON crm.* TO 'bob'@'%'"
    )
    server.sql(
        "CREATE TABLE people(id INT PRIMARY KEY, name VARCHAR(40)) ; "
        "INSERT INTO people SELECT seq, CONCAT('person ', seq) FROM seq_1_to_700",
        "crm",
    )
    server.sql(
        "CREATE TABLE parts(id INT PRIMARY KEY, qty INT); INSERT INTO parts SELECT seq, seq % 7 FROM seq_1_to_300",
        "stock",
    )
    yield server
    server.destroy()


def maria_content(server: MariaDbServer, database: str) -> dict[str, str]:
    """Rows and the server's extended checksum per table of *database*."""
    tables = server.sql("SHOW TABLES", database).split()
    return {
        t: server.sql(f"SELECT COUNT(*) FROM `{t}`", database)
        + " "
        + server.sql(f"CHECKSUM TABLE `{t}` EXTENDED", database).split()[-1]
        for t in tables
    }


def maria_env(server: MariaDbServer, remote: Path, **extra: str) -> dict[str, str]:
    return {
        "DB_URI": f"mariadb://admin:admin-pw@127.0.0.1:{server.port}/",
        "RCLONE_REMOTE": str(remote),
        "BACKUP_SCHEDULE": "once",
        **extra,
    }


def test_mariadb_two_databases_and_users_round_trip(maria: MariaDbServer, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    env = maria_env(maria, remote, DB_EXCLUDE="shop")
    before = {db: maria_content(maria, db) for db in ("crm", "stock")}
    done = _run(["backup", "--json"], env)
    assert done.returncode == 0, done.stderr
    assert [d["database"] for d in json.loads(done.stdout)["databases"]] == ["_globals", "crm", "stock"]
    names = objects(remote)
    assert not any(n.startswith(("mysql-", "sys-", "information_schema", "performance_schema", "shop-")) for n in names)

    maria.sql("DROP DATABASE crm; DROP DATABASE stock; DROP USER 'bob'@'%'")
    restored = _run(["restore", "--database", "all"], env)
    assert restored.returncode == 0, restored.stderr
    assert {db: maria_content(maria, db) for db in ("crm", "stock")} == before
    assert "SELECT" in maria.sql("SHOW GRANTS FOR 'bob'@'%'"), "the user came back with its grants"
    bob = subprocess.run(
        [
            "mariadb",
            "--no-defaults",
            "-h127.0.0.1",
            f"-P{maria.port}",
            "-ubob",
            "-pbob-pw-1",
            "-N",
            "-e",
            "SELECT COUNT(*) FROM crm.people",
        ],
        capture_output=True,
        text=True,
    )
    assert bob.stdout.strip() == "700", bob.stderr

    # one database alone; the globals into a server where the users exist (their passwords are kept)
    maria.sql("DROP DATABASE stock; SET PASSWORD FOR 'bob'@'%' = PASSWORD('bob-pw-2')")
    assert _run(["restore", "--database", "stock"], env).returncode == 0
    assert maria_content(maria, "stock") == before["stock"]
    globals_ = _run(["restore", "--globals", "--json"], env)
    assert globals_.returncode == 0, globals_.stderr
    assert "user bob@%" in json.loads(globals_.stdout)["kept"]
    bob2 = subprocess.run(
        ["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{maria.port}", "-ubob", "-pbob-pw-2", "-N", "-e", "SELECT 1"],
        capture_output=True,
        text=True,
    )
    assert bob2.returncode == 0, "an existing user keeps its current password: " + bob2.stderr


# -- MongoDB ---------------------------------------------------------------------------------------------
@pytest.fixture
def ferret() -> Iterator[FerretDbServer]:
    from tests.conftest import mongo_peers

    binary, _ = mongo_peers()
    server = FerretDbServer.start(binary)
    yield server
    server.destroy()


def mongo_snapshot(server: FerretDbServer, database: str) -> dict[str, list[str]]:
    import pymongo

    client: Any = pymongo.MongoClient(server.uri(""), serverSelectionTimeoutMS=10000)
    with client:
        db = client[database]
        return {c: sorted(repr(sorted(d.items())) for d in db[c].find()) for c in sorted(db.list_collection_names())}


def test_mongo_all_databases_round_trip_and_one_alone(ferret: FerretDbServer, tmp_path: Path) -> None:
    import pymongo

    client: Any = pymongo.MongoClient(ferret.uri(""), serverSelectionTimeoutMS=10000)
    with client:
        client.crm.people.insert_many([{"_id": i, "name": f"Zoë {i}"} for i in range(400)])
        client.stock.parts.insert_many([{"_id": i, "qty": i % 9} for i in range(250)])
    before = {db: mongo_snapshot(ferret, db) for db in ("crm", "stock")}
    remote = tmp_path / "remote"
    env = {
        "DB_URI": f"mongodb://{ferret.user}:{ferret.password}@127.0.0.1:{ferret.port}/?authSource=admin",
        "RCLONE_REMOTE": str(remote),
        "BACKUP_SCHEDULE": "once",
    }
    done = _run(["backup", "--json"], env)
    assert done.returncode == 0, done.stderr
    assert [d["database"] for d in json.loads(done.stdout)["databases"]] == ["crm", "stock"]
    with pymongo.MongoClient(ferret.uri(""), serverSelectionTimeoutMS=10000) as client:
        client.drop_database("crm")
        client.drop_database("stock")
    restored = _run(["restore", "--database", "all"], env)
    assert restored.returncode == 0, restored.stderr
    assert {db: mongo_snapshot(ferret, db) for db in ("crm", "stock")} == before
    with pymongo.MongoClient(ferret.uri(""), serverSelectionTimeoutMS=10000) as client:
        client.drop_database("stock")
    assert _run(["restore", "--database", "stock"], env).returncode == 0
    assert mongo_snapshot(ferret, "stock") == before["stock"]


# -- the service, a non-superuser, the restore drill, SIGTERM ------------------------------------------------
def test_service_records_each_database_in_metrics_and_healthz(cluster: PgServer, tmp_path: Path) -> None:
    import anyio

    from dbstash.service import Service

    settings = Settings.from_env({**pg_job_env(cluster, tmp_path / "remote", DB_EXCLUDE="scratch"), "HEALTH_PORT": "0"})
    service = Service(settings, next_time=lambda now: now, max_runs=1)
    assert anyio.run(service.run) == 0
    metrics = service.metrics.render().decode()
    for db in ("_globals", "app", "billing", "shop"):
        assert f'dbstash_database_last_backup_size_bytes{{database="{db}"}}' in metrics
        assert f'dbstash_database_runs_total{{database="{db}",outcome="success"}} 1.0' in metrics
    health = service.state.to_dict()
    assert health["status"] == "ok" and set(health["databases"]) == {"_globals", "app", "billing", "shop"}


def test_a_non_superuser_gets_globals_without_role_passwords_and_is_told(own_pg: PgServer, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    su_sql(own_pg, "CREATE ROLE alice LOGIN PASSWORD 'alice-pw-1'")
    env = {"DB_URI": own_pg.uri(), "DB_GLOBALS": "true", "RCLONE_REMOTE": str(remote), "BACKUP_SCHEDULE": "once"}
    done = _run(["backup"], env)
    assert done.returncode == 0, done.stderr
    assert "not a superuser" in done.stderr and "--no-role-passwords" in done.stderr
    globals_ = next(remote.glob("_globals-*.sql")).read_text()
    assert "CREATE ROLE alice;" in globals_ and "SCRAM-SHA-256$" not in globals_, "roles without their passwords"


def test_verify_drills_every_database_of_the_run(cluster: PgServer, tmp_path: Path) -> None:
    pg, remote = cluster, tmp_path / "remote"
    su_sql(pg, "CREATE DATABASE drill")
    env = pg_job_env(
        pg,
        remote,
        DB_EXCLUDE="scratch,drill",
        VERIFY_TARGET_URI=f"postgresql://postgres:{SUPERUSER_PW}@127.0.0.1:{pg.port}/drill",
    )
    assert _run(["backup"], env).returncode == 0
    done = _run(["verify", "--json"], env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["globals_checked"] is True
    counts = {r["database"]: r["counts"] for r in out["verified"]}
    assert counts["shop"] == {"public.items": 2000} and counts["billing"]["public.invoices"] == 500
    assert su_sql(pg, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", "drill") == "0", "emptied after"
    # a tampered database backup fails its own line; the others are still drilled
    shop = next(remote.glob("shop-*.dump"))
    data = bytearray(shop.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shop.write_bytes(bytes(data))
    bad = _run(["verify", "--json"], env)
    assert bad.returncode == 1
    result = json.loads(bad.stdout)
    assert [d["database"] for d in result["failed"]] == ["shop"] and len(result["verified"]) == 2


def test_sigterm_during_a_run_commits_nothing_in_flight(cluster: PgServer, tmp_path: Path) -> None:
    pg, remote = cluster, tmp_path / "remote"
    su_sql(pg, "INSERT INTO big SELECT g, repeat(md5(g::text), 8) FROM generate_series(150001, 900000) g", "billing")
    env = pg_job_env(pg, remote, DB_EXCLUDE="scratch", RCLONE_EXTRA_ARGS="--bwlimit 2M")  # billing takes a while
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "LOG_FORMAT": "text", **env}
    proc = subprocess.Popen([*DBSTASH, "run"], env=full, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        active = su_sql(pg, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'billing' AND query LIKE 'COPY %'")
        if active != "0":
            break
        time.sleep(0.02)
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert time.monotonic() - t0 < 10
    names = objects(remote)
    assert not any(n.startswith("billing-") for n in names), f"nothing of the database in flight remains: {names}"
    assert not any(n.startswith(("shop-",)) for n in names), "databases after it never started"
    assert any(n.startswith("app-") and n.endswith(".json") for n in names), "the databases before it stand"
