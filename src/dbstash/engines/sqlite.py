"""SQLite: ``sqlite3 FILE .dump`` with a busy timeout, and a check that the dump really completed."""

from __future__ import annotations

import os
import re
import shutil
from typing import ClassVar

from dbstash.engines.base import Connection, DumpCommand, DumpOptions, Engine, RestoreOptions, path_arg
from dbstash.errors import ConfigError, ToolNotFound

#: How long sqlite3 waits for a writer's lock before giving up (milliseconds).
BUSY_TIMEOUT_MS = 30_000


class SqliteEngine(Engine):
    """SQLite files via the ``sqlite3`` shell's ``.dump`` (plain SQL, ``.sql``).

    URIs: ``sqlite:///abs/path.db`` (absolute), ``sqlite:relative/path.db``. The dump runs in one read
    transaction, so it is consistent under concurrent writers in WAL and rollback-journal mode. The
    shell reports errors such as ``database is locked`` *inside* its output and still exits 0, so a
    dump is accepted only when it ends with the closing ``COMMIT;`` that ``.dump`` writes last.
    """

    key: ClassVar[str] = "sqlite"
    schemes: ClassVar[tuple[str, ...]] = ("sqlite", "sqlite3")

    def __init__(self, sqlite3: str | None = None) -> None:
        self._sqlite3 = sqlite3

    def parse_uri(self, uri: str, *, variable: str = "DB_URI") -> Connection:
        expected = "sqlite:///absolute/path/to/file.db or sqlite:relative/path.db"
        scheme, sep, rest = uri.partition(":")
        if not sep or scheme.lower() not in self.schemes:
            raise ConfigError(variable, expected, uri)
        path = rest.split("?", 1)[0]
        if path.startswith("//"):
            path = path[2:]  # sqlite:///abs -> /abs ; sqlite://rel -> rel
        path = re.sub(r"^/+", "/", path)
        if not path or path.endswith("/"):
            raise ConfigError(variable, expected, uri)
        return Connection(self.key, path)

    def from_parts(
        self,
        *,
        host: str | None,
        port: str | None,
        database: str | None,
        user: str | None,
        password: str | None,
    ) -> Connection:
        if not database:
            raise ConfigError("DB_NAME", "the path of the SQLite database file", database)
        return Connection(self.key, database)

    def extension(self, options: DumpOptions, connection: Connection | None = None) -> str:
        return ".sql"

    def database_label(self, connection: Connection) -> str:
        base = os.path.basename(connection.database or "sqlite")
        stem, _ = os.path.splitext(base)
        return stem or base

    def preview_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        tool = self._sqlite3 or shutil.which("sqlite3") or "sqlite3"
        return DumpCommand(self._argv(tool, connection.database or "", options), {})

    def _argv(self, tool: str, path: str, options: DumpOptions) -> tuple[str, ...]:
        return (
            tool,
            "-bail",
            "-batch",
            "-cmd",
            f".timeout {BUSY_TIMEOUT_MS}",
            *options.extra_args,
            path_arg(path),
            ".dump",
        )

    async def dump_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        path = connection.database or ""
        # sqlite3 would silently create an empty database for a missing path and back that up
        if not os.path.isfile(path):
            raise ConfigError("uri", "the path of an existing SQLite database file", f"sqlite://{path}")
        tool = self._sqlite3 or shutil.which("sqlite3")
        if not tool:
            raise ToolNotFound("sqlite3 not found (install the sqlite3 package or use the dbstash:sqlite-3 image)")
        return DumpCommand(self._argv(tool, path, options), {}, tool_version=None)

    async def estimate_size(self, connection: Connection) -> int | None:
        """The database file's size: its ``.dump`` text is of the same order."""
        try:
            return os.path.getsize(connection.database or "")
        except OSError:
            return None

    def check_output_tail(self, tail: bytes, command: DumpCommand) -> str | None:
        end = tail.rstrip()
        if end.endswith(b"COMMIT;"):
            return None
        if b"ROLLBACK; -- due to errors" in tail:
            return "sqlite3 reported an error inside the dump (for example 'database is locked') and rolled back"
        return "the sqlite3 dump does not end with COMMIT; it is incomplete"

    # -- restore -----------------------------------------------------------------------------------
    restores_to_file: ClassVar[bool] = True

    def stopped_restore_note(self, options: RestoreOptions) -> str:
        return "nothing was kept: it was being restored into a temp file, now removed."

    def restore_command(self, target: Connection, head: bytes, options: RestoreOptions) -> DumpCommand:
        tool = self._sqlite3 or shutil.which("sqlite3")
        if not tool:
            raise ToolNotFound("sqlite3 not found (install the sqlite3 package)")
        return DumpCommand((tool, "-bail", "-batch", path_arg(target.database or "")), {})

    async def is_empty(self, target: Connection) -> bool | None:
        path = target.database or ""
        return not os.path.exists(path) or os.path.getsize(path) == 0

    async def table_counts(self, target: Connection) -> dict[str, int]:
        import sqlite3  # noqa: PLC0415 - only verify reads a database in-process

        con = sqlite3.connect(f"file:{target.database}?mode=ro", uri=True)
        try:
            names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")]
            counts = {}
            for n in names:  # identifiers from sqlite_master, double-quoted
                counts[n] = con.execute('SELECT count(*) FROM "' + n.replace('"', '""') + '"').fetchone()[0]  # noqa: S608
            return counts
        finally:
            con.close()

    async def clear(self, target: Connection) -> None:
        if target.database and os.path.exists(target.database):
            os.unlink(target.database)
