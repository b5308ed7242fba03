"""One adapter per engine so the engine tests are one suite parametrized over engines, not copies.

A case knows how to seed data, how to restore a dump with the engine's *native* tool into a fresh
target, and how to take a comparable snapshot of what a database holds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from abc import ABC, abstractmethod

from tests.support.dbservers import FerretDbServer, MariaDbServer, RedisServer

Snapshot = dict[str, list[str]]


class EngineCase(ABC):
    """What the shared engine tests need from one engine and its server."""

    key: str
    #: the dump program's process name (for kill tests and argv scans)
    tool: str
    #: extension with compression off / native
    plain_ext: str
    native_ext: str
    #: whether BACKUP_COMPRESS=true changes the dump for this engine
    has_native: bool = False

    @property
    @abstractmethod
    def password(self) -> str: ...

    @abstractmethod
    def uri(self, *, password: bool = True) -> str:
        """The URI of the seeded data (without the password when *password* is False)."""

    @abstractmethod
    def wrong_uri(self) -> str:
        """A URI with a wrong password."""

    @abstractmethod
    def seed(self) -> None:
        """Create varied data to back up."""

    @abstractmethod
    def seed_big(self) -> None:
        """Add ~40 MB, so that a dump throttled to a few MB/s can be interrupted mid-stream."""

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """What the seeded data looks like now."""

    @abstractmethod
    def restore(self, data: bytes, *, native_compressed: bool) -> Snapshot:
        """Restore *data* (the dump as stored, minus dbstash's own compression) natively; snapshot the result."""

    @abstractmethod
    def kill_server(self) -> None:
        """SIGKILL the server (the test's own server)."""

    @abstractmethod
    def fresh_target(self, directory: str) -> str:
        """An empty restore target for ``dbstash.restore(target=...)``: a URI, or a file path."""

    @abstractmethod
    def target_snapshot(self, target: str) -> Snapshot:
        """What a restore into *target* produced, comparable with :meth:`snapshot`."""

    def destroy(self) -> None:  # noqa: B027 - optional hook: most cases start nothing of their own
        """Stop and remove what the case started."""


class MariaDbCase(EngineCase):
    """MariaDB's server; the ``mysql`` key runs mysqldump, the ``mariadb`` key mariadb-dump (Debian ships both)."""

    tool = "mariadb-dump"
    plain_ext = ".sql"
    native_ext = ".sql"

    def __init__(self, server: MariaDbServer, key: str) -> None:
        self.server = server
        self.key = key
        self.tool = "mysqldump" if key == "mysql" else "mariadb-dump"
        self.database = f"shop_{uuid.uuid4().hex[:6]}"
        server.sql(f"CREATE DATABASE {self.database}")

    @property
    def password(self) -> str:
        return self.server.password

    def uri(self, *, password: bool = True) -> str:
        return self.server.uri(scheme=self.key, password=password, database=self.database)

    def wrong_uri(self) -> str:
        return f"{self.key}://app:wrong-pw-123@127.0.0.1:{self.server.port}/{self.database}"

    def seed(self) -> None:
        self.server.sql(
            "CREATE TABLE customers(id INT PRIMARY KEY, name VARCHAR(100), note TEXT, balance DECIMAL(12,2),"
            " born DATETIME, photo BLOB);"
            "INSERT INTO customers VALUES"
            " (1, 'Zoë O''Brien', 'quote \" backslash \\\\ tab \\t', 10.50, '1990-01-02 03:04:05', X'00FF10'),"
            " (2, 'Émile', NULL, -3.25, NULL, NULL),"
            " (3, '日本語', 'multi\\nline', 0, '2026-11-26 00:00:00', X'DEADBEEF');"
            "CREATE TABLE orders(id INT AUTO_INCREMENT PRIMARY KEY, customer INT, total INT,"
            " FOREIGN KEY (customer) REFERENCES customers(id));"
            "INSERT INTO orders(customer, total) SELECT 1 + seq % 3, seq FROM seq_1_to_2000;"
            "CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 1000;"
            "CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN 2 * x;"
            "CREATE TRIGGER orders_nonneg BEFORE INSERT ON orders FOR EACH ROW SET NEW.total = ABS(NEW.total);",
            self.database,
        )

    def seed_big(self) -> None:
        self.server.sql(
            "CREATE TABLE big AS SELECT seq AS id, REPEAT(MD5(seq), 9) AS pad FROM seq_1_to_150000", self.database
        )

    def snapshot(self, database: str | None = None) -> Snapshot:
        db = database or self.database
        snap = self.server.table_rows(db)
        snap["__routines"] = self.server.sql(
            f"SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='{db}'"
        ).splitlines()
        snap["__triggers"] = self.server.sql(
            f"SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='{db}'"
        ).splitlines()
        return snap

    def restore(self, data: bytes, *, native_compressed: bool) -> Snapshot:
        target = f"restore_{uuid.uuid4().hex[:6]}"
        self.server.sql(f"CREATE DATABASE {target}")
        self.server.load(data, target)
        return self.snapshot(target)

    def kill_server(self) -> None:
        self.server.stop(9)

    def fresh_target(self, directory: str) -> str:
        target = f"restore_{uuid.uuid4().hex[:6]}"
        self.server.sql(f"CREATE DATABASE {target}")
        return self.server.uri(scheme=self.key, database=target)

    def target_snapshot(self, target: str) -> Snapshot:
        return self.snapshot(target.rsplit("/", 1)[1])


class RedisCase(EngineCase):
    key = "redis"
    tool = "redis-cli"
    plain_ext = ".rdb"
    native_ext = ".rdb"

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.restored: list[RedisServer] = []

    @property
    def password(self) -> str:
        return self.server.password

    def uri(self, *, password: bool = True) -> str:
        return self.server.uri(password=password)

    def wrong_uri(self) -> str:
        return f"redis://:wrong-pw-123@127.0.0.1:{self.server.port}/0"

    def seed(self) -> None:
        s = self.server
        s.cli("SET", "greeting", 'héllo "wörld" \\ \n end')
        s.cli("-x", "SET", "binary", stdin=b"\x00\x01\xff")
        s.cli("HSET", "user:1", "name", "Zoë", "age", "42")
        s.cli("RPUSH", "queue", "a", "b", "c")
        s.cli("SADD", "tags", "x", "y")
        s.cli("ZADD", "scores", "1.5", "p1", "3", "p2")
        s.cli("-n", "3", "SET", "in-db-3", "other database")

    def seed_big(self) -> None:
        # ~40 MB of incompressible values through the mass-insert protocol
        lines = []
        for i in range(100_000):
            key, value = f"big:{i}", os.urandom(200).hex()
            lines.append(f"*3\r\n$3\r\nSET\r\n${len(key)}\r\n{key}\r\n${len(value)}\r\n{value}\r\n")
        self.server.cli("--pipe", stdin="".join(lines).encode())

    def snapshot(self) -> Snapshot:
        return {k: [v] for k, v in self.server.dump_all().items() if not k.startswith("0/big:")}

    def restore(self, data: bytes, *, native_compressed: bool) -> Snapshot:
        with tempfile.NamedTemporaryFile(suffix=".rdb") as fh:
            fh.write(data)
            fh.flush()
            restored = RedisServer.start(rdb=fh.name, password=self.server.password)
        self.restored.append(restored)
        return {k: [v] for k, v in restored.dump_all().items() if not k.startswith("0/big:")}

    def kill_server(self) -> None:
        self.server.stop(9)

    def fresh_target(self, directory: str) -> str:
        return os.path.join(directory, "restored.rdb")

    def target_snapshot(self, target: str) -> Snapshot:
        restored = RedisServer.start(rdb=target, password=self.server.password)
        self.restored.append(restored)
        return {k: [v] for k, v in restored.dump_all().items() if not k.startswith("0/big:")}

    def destroy(self) -> None:
        for server in self.restored:
            server.destroy()


class MongoCase(EngineCase):
    """FerretDB (SQLite backend) with the real mongodump/mongorestore; compared through pymongo."""

    key = "mongo"
    tool = "mongodump"
    plain_ext = ".archive"
    native_ext = ".archive.gz"
    has_native = True

    def __init__(self, server: FerretDbServer, ferretdb: str) -> None:
        self.server = server
        self.ferretdb = ferretdb
        self.database = f"shop_{uuid.uuid4().hex[:6]}"
        self.restored: list[FerretDbServer] = []

    @property
    def password(self) -> str:
        assert self.server.password is not None
        return self.server.password

    def uri(self, *, password: bool = True) -> str:
        return self.server.uri(self.database)

    def wrong_uri(self) -> str:
        return self.server.uri(self.database, password="wrong-pw-123")

    def _client(self, server: FerretDbServer | None = None) -> object:
        import pymongo

        s = server or self.server
        return pymongo.MongoClient(s.uri(""), serverSelectionTimeoutMS=10000)

    def seed(self) -> None:
        client = self._client()
        db = client[self.database]  # type: ignore[index]
        db.customers.insert_many([{"_id": i, "name": f"Zoë {i}", "tags": ["a", "b"], "n": i * 1.5} for i in range(300)])
        db.orders.insert_many([{"_id": i, "customer": i % 300, "total": i} for i in range(1000)])
        client.close()  # type: ignore[attr-defined]

    def seed_big(self) -> None:
        client = self._client()
        db = client[self.database]  # type: ignore[index]
        for start in range(0, 40_000, 5000):
            db.big.insert_many([{"_id": i, "pad": os.urandom(500).hex()} for i in range(start, start + 5000)])
        client.close()  # type: ignore[attr-defined]

    def snapshot(self, server: FerretDbServer | None = None) -> Snapshot:
        client = self._client(server)
        db = client[self.database]  # type: ignore[index]
        snap = {
            name: sorted(repr(sorted(doc.items())) for doc in db[name].find())
            for name in db.list_collection_names()
            if name != "big"
        }
        client.close()  # type: ignore[attr-defined]
        return snap

    def restore(self, data: bytes, *, native_compressed: bool) -> Snapshot:
        target = FerretDbServer.start(self.ferretdb)
        self.restored.append(target)
        argv = [shutil.which("mongorestore") or "mongorestore", f"--uri={target.uri('')}", "--archive"]
        if native_compressed:
            argv.append("--gzip")
        subprocess.run(argv, input=data, check=True, capture_output=True, timeout=300)
        return self.snapshot(target)

    def kill_server(self) -> None:
        self.server.stop(9)

    def fresh_target(self, directory: str) -> str:
        target = FerretDbServer.start(self.ferretdb)
        self.restored.append(target)
        return target.uri(self.database)

    def target_snapshot(self, target: str) -> Snapshot:
        port = int(target.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        server = next(s for s in self.restored if s.port == port)
        return self.snapshot(server)

    def destroy(self) -> None:
        for server in self.restored:
            server.destroy()
