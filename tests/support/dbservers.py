"""Throw-away MariaDB, Redis and FerretDB (MongoDB wire protocol) servers on loopback, for the engine tests.

Recipes from the field notes: each server keeps its data in a fresh temp dir, listens on 127.0.0.1
on a free port, has a password-protected user, and is stopped (and its files removed) by its fixture.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field

from tests.support.servers import free_port, wait_port

#: A password with every character an option file, a URI or a shell could trip over.
HARD_PASSWORD = 'p@ss w#rd"\\x;$'


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, wait: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _sql_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class MariaDbServer:
    """A running MariaDB with user ``app`` (password :data:`HARD_PASSWORD`) and database ``shop``."""

    root: str
    port: int
    password: str = HARD_PASSWORD
    user: str = "app"
    database: str = "shop"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def datadir(self) -> str:
        return os.path.join(self.root, "data")

    @property
    def socket(self) -> str:
        return os.path.join(self.root, "mysqld.sock")

    def uri(self, *, scheme: str = "mysql", password: bool = True, database: str | None = None) -> str:
        from urllib.parse import quote

        auth = f"{self.user}:{quote(self.password, safe='')}" if password else self.user
        db = self.database if database is None else database
        return f"{scheme}://{auth}@127.0.0.1:{self.port}/{db}"

    def _client(self) -> list[str]:
        return ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "--default-character-set=utf8mb4"]

    def sql(self, query: str, database: str | None = None) -> str:
        """Run *query* as root over the socket; tab-separated rows without headers."""
        argv = [*self._client(), "-N", "-B", "-e", query]
        if database:
            argv.append(database)
        out = subprocess.run(argv, capture_output=True, timeout=120, check=False)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.decode(errors="replace"))
        return out.stdout.decode(errors="backslashreplace").strip()  # BLOBs are bytes

    def load(self, sql_bytes: bytes, database: str) -> None:
        """Feed a dump to the ``mariadb`` client (the native restore)."""
        argv = [*self._client(), database]
        out = subprocess.run(argv, input=sql_bytes, capture_output=True, timeout=300, check=False)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.decode(errors="replace"))

    def table_rows(self, database: str) -> dict[str, list[str]]:
        """Every table's rows, sorted: what a restore must reproduce."""
        tables = self.sql("SHOW TABLES", database).splitlines()
        return {t: sorted(self.sql(f"SELECT * FROM `{t}`", database).splitlines()) for t in tables}

    @classmethod
    def start(cls) -> MariaDbServer:
        root = tempfile.mkdtemp(prefix="dbstash-mariadb-", dir="/tmp")
        os.chmod(root, 0o755)
        server = cls(root=root, port=free_port())
        mysql_user = "mysql" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        if os.geteuid() == 0:
            pw = pwd.getpwnam("mysql")
            os.chown(root, pw.pw_uid, pw.pw_gid)
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--user={mysql_user}",
                f"--datadir={server.datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        init = os.path.join(root, "init.sql")
        with open(init, "w") as fh:
            fh.write(
                f"CREATE USER 'app'@'%' IDENTIFIED BY {_sql_str(server.password)};\n"
                "GRANT ALL ON *.* TO 'app'@'%';\n"
                f"CREATE DATABASE {server.database};\n"
            )
        os.chmod(init, 0o644)
        log = open(os.path.join(root, "server.log"), "ab")
        server.proc = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--user={mysql_user}",
                f"--datadir={server.datadir}",
                f"--socket={server.socket}",
                f"--port={server.port}",
                "--bind-address=127.0.0.1",
                f"--init-file={init}",
                "--skip-log-bin",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=128M",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
                "--innodb-flush-log-at-trx-commit=0",
                f"--pid-file={os.path.join(root, 'mysqld.pid')}",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        wait_port(server.port, 60)
        deadline = time.monotonic() + 60
        while True:
            try:
                server.sql("SELECT 1")
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return server

    def stop(self, sig: int = signal.SIGTERM) -> None:
        _stop(self.proc, sig)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class RedisServer:
    """A running Redis with ``requirepass`` and no disk persistence of its own."""

    root: str
    port: int
    password: str = HARD_PASSWORD
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def uri(self, *, password: bool = True, db: int = 0) -> str:
        from urllib.parse import quote

        auth = f":{quote(self.password, safe='')}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def cli(self, *args: str, stdin: bytes | None = None) -> str:
        env = {**os.environ, "REDISCLI_AUTH": self.password}
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), "--no-auth-warning", *args],
            input=stdin,
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )
        if out.returncode != 0 or out.stdout.startswith(b"ERR") or out.stdout.startswith(b"NOAUTH"):
            raise RuntimeError((out.stderr or out.stdout).decode(errors="replace"))
        return out.stdout.decode(errors="replace").strip()

    def dump_all(self) -> dict[str, str]:
        """key -> DUMP-independent value view (type and contents), over every logical database."""
        found: dict[str, str] = {}
        for db in range(16):
            keys = self.cli("-n", str(db), "--scan").splitlines()
            for key in keys:
                kind = self.cli("-n", str(db), "TYPE", key)
                if kind == "string":
                    value = self.cli("-n", str(db), "GET", key)
                elif kind == "hash":
                    value = "\n".join(sorted(self.cli("-n", str(db), "HGETALL", key).splitlines()))
                elif kind == "list":
                    value = self.cli("-n", str(db), "LRANGE", key, "0", "-1")
                elif kind == "set":
                    value = "\n".join(sorted(self.cli("-n", str(db), "SMEMBERS", key).splitlines()))
                else:
                    value = self.cli("-n", str(db), "ZRANGE", key, "0", "-1", "WITHSCORES")
                found[f"{db}/{key}"] = f"{kind}:{value}"
        return found

    @classmethod
    def start(cls, *, rdb: str | None = None, password: str = HARD_PASSWORD) -> RedisServer:
        """A fresh server; with *rdb*, one that loads that RDB file at start (the native restore)."""
        root = tempfile.mkdtemp(prefix="dbstash-redis-", dir="/tmp")
        server = cls(root=root, port=free_port(), password=password)
        if rdb is not None:
            shutil.copyfile(rdb, os.path.join(root, "dump.rdb"))
        log = open(os.path.join(root, "server.log"), "ab")
        server.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(server.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                root,
                "--dbfilename",
                "dump.rdb",
                "--requirepass",
                password,
                "--repl-diskless-sync-delay",
                "0",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        wait_port(server.port, 30)
        deadline = time.monotonic() + 30
        while True:  # loading a big RDB answers LOADING for a while
            try:
                if server.cli("PING") == "PONG":
                    break
            except RuntimeError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not answer PING")
            time.sleep(0.05)
        return server

    def stop(self, sig: int = signal.SIGTERM) -> None:
        _stop(self.proc, sig)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class FerretDbServer:
    """FerretDB v1 with its SQLite backend: a MongoDB wire-protocol server for mongodump/mongorestore.

    With *auth* (the default) it runs FerretDB's real authentication (SCRAM) with one user created
    at start-up, so a wrong password fails as it would on MongoDB; without, it takes any login.
    """

    root: str
    port: int
    user: str | None = None
    password: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def uri(self, database: str = "shop", *, password: str | None = None) -> str:
        if self.user is None:
            return f"mongodb://127.0.0.1:{self.port}/{database}"
        pw = self.password if password is None else password
        return f"mongodb://{self.user}:{pw}@127.0.0.1:{self.port}/{database}?authSource=admin"

    @classmethod
    def start(cls, binary: str, *, auth: bool = True) -> FerretDbServer:
        root = tempfile.mkdtemp(prefix="dbstash-ferretdb-", dir="/tmp")
        server = cls(root=root, port=free_port())
        argv = [
            binary,
            "--handler=sqlite",
            f"--sqlite-url=file:{root}/",
            f"--state-dir={root}",
            f"--listen-addr=127.0.0.1:{server.port}",
            "--telemetry=disable",
            "--debug-addr=-",  # else every instance opens 127.0.0.1:8088 and the second one dies
        ]
        env = dict(os.environ)
        if auth:
            server.user, server.password = "root", "ferret-" + uuid.uuid4().hex[:12]
            argv.append("--test-enable-new-auth")
            # by environment, not argv: the suite's argv scans would (rightly) flag a password in any cmdline
            env.update(
                FERRETDB_SETUP_DATABASE="admin",
                FERRETDB_SETUP_USERNAME=server.user,
                FERRETDB_SETUP_PASSWORD=server.password,
            )
        log = open(os.path.join(root, "server.log"), "ab")
        server.proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=root, start_new_session=True, env=env)
        log.close()
        wait_port(server.port, 30)
        return server

    def stop(self, sig: int = signal.SIGTERM) -> None:
        _stop(self.proc, sig)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
