"""MySQL and MariaDB: ``mysqldump`` / ``mariadb-dump`` to stdout, credentials in an in-memory option file.

(Over 400 lines on purpose: two engines of one family, and the dump splitter of directory mode.)
"""

from __future__ import annotations

import os
import re
import shutil
from typing import ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

import anyio

from dbstash.engines.base import (
    Connection,
    DumpCommand,
    DumpOptions,
    Engine,
    LineFilter,
    RestoreOptions,
    one_database,
    run_tool,
    tool_version,
)
from dbstash.errors import ConfigError, ToolNotFound
from dbstash.redact import redact_uri

#: URI query parameters accepted, as the ``[client]`` option each becomes (TLS, socket, charset).
#: Both spellings (``ssl-ca`` / ``ssl_ca``) are accepted; MySQL's and MariaDB's clients share these names.
CLIENT_OPTIONS = frozenset(
    {
        "ssl",
        "ssl-mode",
        "ssl-ca",
        "ssl-capath",
        "ssl-cert",
        "ssl-key",
        "ssl-cipher",
        "ssl-crl",
        "ssl-crlpath",
        "ssl-verify-server-cert",
        "tls-version",
        "socket",
        "protocol",
        "default-character-set",
        "compress",
    }
)


def option_value(value: str) -> str:
    """Quote *value* for a MySQL option file: double quotes, backslash escapes (both clients read these)."""
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


class MysqlEngine(Engine):
    """MySQL via ``mysqldump`` (MariaDB's ``mariadb-dump`` works as well): plain SQL, ``.sql``.

    Defaults: ``--single-transaction`` (a consistent snapshot of InnoDB tables without locking),
    ``--routines --triggers --events``. ``DB_NAME`` empty or ``all`` dumps ``--all-databases``;
    otherwise the one database's tables, without ``CREATE DATABASE``, so it restores into any
    database name. User, password, host, port and TLS settings go in a ``[client]`` option file
    held in memory and passed as ``--defaults-extra-file=/dev/fd/N`` (it must be the first option).
    """

    key: ClassVar[str] = "mysql"
    schemes: ClassVar[tuple[str, ...]] = ("mysql",)
    default_port: ClassVar[int | None] = 3306
    stream_conflicting_flags: ClassVar[tuple[str, ...]] = ("--tab=", "-T")
    #: Dump programs in order of preference; the first on PATH is used.
    tools: ClassVar[tuple[str, ...]] = ("mysqldump", "mariadb-dump")

    def __init__(self, tool: str | None = None) -> None:
        """*tool*: path of the dump program; default: the first of `tools` on PATH."""
        self._tool = tool

    def parse_uri(self, uri: str, *, variable: str = "DB_URI") -> Connection:
        shown = redact_uri(uri)
        expected = f"{self.schemes[0]}://user:password@host:3306/dbname?ssl-mode=REQUIRED"
        try:
            parts = urlsplit(uri)
            port = str(parts.port) if parts.port is not None else None
        except ValueError:
            raise ConfigError(variable, expected, shown) from None
        if parts.scheme.lower() not in ("mysql", "mariadb"):  # the spec's mysql:// serves both
            raise ConfigError(variable, expected, shown)
        params: dict[str, str] = {}
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            name = k.replace("_", "-").lower()
            if name == "sslmode":
                name = "ssl-mode"
            if name not in CLIENT_OPTIONS:
                reason = f"query parameter {k!r} is not a client option dbstash passes (TLS, socket, charset)"
                raise ConfigError(variable, f"{expected} ({reason})", shown)
            params[name] = v
        database = unquote(parts.path.lstrip("/"))
        if "/" in database:
            raise ConfigError(variable, expected, shown)
        return Connection(
            self.key,
            one_database(database),
            unquote(parts.hostname) if parts.hostname else None,
            port,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password is not None else None,
            params,
        )

    def extension(self, options: DumpOptions, connection: Connection | None = None) -> str:
        return ".sql"

    def option_file(self, connection: Connection) -> bytes:
        """The ``[client]`` section for *connection* (holds the password: memfd only, never logged)."""
        lines = ["[client]"]
        if connection.user:
            lines.append(f"user={option_value(connection.user)}")
        if connection.password is not None:
            lines.append(f"password={option_value(connection.password)}")
        if connection.host:
            lines.append(f"host={option_value(connection.host)}")
        if connection.port:
            lines.append(f"port={connection.port}")
        # only options the dump program itself knows: a [client] option it does not know is fatal (rc 7),
        # which is why there is no connect-timeout here (BACKUP_TIMEOUT bounds a server that hangs)
        for k, v in sorted(connection.params.items()):
            lines.append(f"{k}={option_value(v)}" if v else k)
        return ("\n".join(lines) + "\n").encode()

    def _argv(self, tool: str, connection: Connection, options: DumpOptions) -> tuple[str, ...]:
        argv = [
            tool,
            "--defaults-extra-file={secret:client.cnf}",  # must be first: both clients insist
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            *options.extra_args,
        ]
        if connection.database:
            argv += ["--", connection.database]
        else:
            argv.append("--all-databases")
        return tuple(argv)

    def find_tool(self) -> str | None:
        """The dump program to run: the configured one, else the first of `tools` on PATH."""
        if self._tool:
            return self._tool
        for name in self.tools:
            found = shutil.which(name)
            if found:
                return found
        return None

    def preview_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        tool = self.find_tool() or self.tools[0]
        return DumpCommand(self._argv(tool, connection, options), {})

    async def dump_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        tool = self.find_tool()
        if not tool:
            names = " or ".join(self.tools)
            raise ToolNotFound(f"{names} not found (install the client tools or use a dbstash:{self.key}-N image)")
        version = await anyio.to_thread.run_sync(tool_version, tool)
        return DumpCommand(
            self._argv(tool, connection, options),
            {},
            tool_version=version,
            secret_files={"client.cnf": self.option_file(connection)},
        )

    def check_output_tail(self, tail: bytes, command: DumpCommand) -> str | None:
        # Both dumpers end with "-- Dump completed on ..." unless comments are switched off.
        if b"-- Dump completed" in tail or any(a in ("--skip-comments", "--compact") for a in command.argv):
            return None
        return f"the {self.key} dump does not end with its '-- Dump completed' line; it is incomplete"

    # -- directory and tar modes -----------------------------------------------------------------
    # --tab would make the *server* write the files on its own host (unreachable from a container of
    # ours); instead the one consistent --single-transaction stream is split into a file per table here.
    modes: ClassVar[tuple[str, ...]] = ("stream", "directory", "tar")
    splits_stream: ClassVar[bool] = True

    def split_stream(self, src_fd: int, outdir: str) -> None:
        split_mysql_dump(src_fd, outdir)

    async def files_command(self, connection: Connection, options: DumpOptions, outdir: str) -> DumpCommand:
        return await self.dump_command(connection, options)

    # -- restore ---------------------------------------------------------------------------------
    #: Client programs for restores, in order of preference.
    clients: ClassVar[tuple[str, ...]] = ("mysql", "mariadb")

    def _client(self, target: Connection, *args: str) -> DumpCommand:
        tool = next((found for name in self.clients if (found := shutil.which(name))), None)
        if tool is None:
            raise ToolNotFound(f"{' or '.join(self.clients)} client not found (install the client tools)")
        argv = (tool, "--defaults-extra-file={secret:client.cnf}", *args)
        return DumpCommand(argv, {}, secret_files={"client.cnf": self.option_file(target)})

    def stopped_restore_note(self, options: RestoreOptions) -> str:
        return (
            "the mysql client may already have applied part of the dump (table definitions commit at once): "
            "restore a sound backup into an empty database."
        )

    # -- many databases per job ---------------------------------------------------------------------
    lists_databases: ClassVar[bool] = True
    system_databases: ClassVar[tuple[str, ...]] = ("information_schema", "performance_schema", "sys", "mysql")

    async def list_databases(self, connection: Connection) -> list[str]:
        server = connection.server()
        # hex: a name is data (a newline or tab in it must not split it into phantom names)
        rows = await self._query(server, "SELECT HEX(SCHEMA_NAME) FROM information_schema.SCHEMATA")
        return sorted(bytes.fromhex(row[0]).decode() for row in rows)

    def globals_supported(self) -> str | None:
        tool = self.find_tool() or ""
        if "mariadb" in os.path.basename(tool):
            return None
        return "users and grants are exported by mariadb-dump --system=users (MariaDB); mysqldump has no such export"

    def _globals_argv(self, tool: str) -> tuple[str, ...]:
        # IF NOT EXISTS: a user or role that exists on the restore target is kept (see MysqlGlobalsFilter)
        return (tool, "--defaults-extra-file={secret:client.cnf}", "--system=users", "--insert-ignore")

    async def globals_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        """``mariadb-dump --system=users``: users, roles and their grants (MariaDB 10.2.37+, 10.5.10+)."""
        problem = self.globals_supported()
        tool = self.find_tool()
        if problem or tool is None:
            raise ToolNotFound(problem or "mariadb-dump not found")
        version = await anyio.to_thread.run_sync(tool_version, tool)
        server = connection.server()
        return DumpCommand(
            self._globals_argv(tool), {}, tool_version=version, secret_files={"client.cnf": self.option_file(server)}
        )

    def preview_globals_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        return DumpCommand(self._globals_argv(self.find_tool() or "mariadb-dump"), {})

    async def restore_filter(self, target: Connection, options: RestoreOptions) -> LineFilter | None:
        if not options.globals_only:
            return None
        server = target.server()
        rows = await self._query(server, "SELECT user, host FROM mysql.user")
        return MysqlGlobalsFilter({(r[0], r[1] if len(r) > 1 else "") for r in rows})

    async def estimate_size(self, connection: Connection) -> int | None:
        """Data and index bytes of the database's tables (every database's for ``--all-databases``)."""
        where = "WHERE TABLE_SCHEMA = DATABASE()" if connection.database else ""
        rows = await self._query(
            connection,
            f"SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES {where}",  # noqa: S608
        )
        return int(rows[0][0]) if rows and rows[0][0].isdigit() else None

    async def database_exists(self, target: Connection) -> bool | None:
        assert target.database is not None
        rows = await self._query(
            target.server(),
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA",
        )
        return any(r[0] == target.database for r in rows)

    async def prepare_restore(self, target: Connection, options: RestoreOptions) -> None:
        if not (options.create and target.database):
            return
        db = "`" + target.database.replace("`", "``") + "`"
        sql = (f"DROP DATABASE IF EXISTS {db}; " if options.force else "") + f"CREATE DATABASE IF NOT EXISTS {db}"
        server = target.server()
        await run_tool(self._client(server, "-e", sql))

    def atomic_restore(self, options: RestoreOptions) -> bool:
        return False

    def restore_command(self, target: Connection, head: bytes, options: RestoreOptions) -> DumpCommand:
        if options.all_databases or options.globals_only or target.database is None:
            return self._client(target)  # an --all-databases dump creates and selects each database itself
        return self._client(target, f"--database={target.database}")  # a name is never taken as an option

    def restore_files_command(self, target: Connection, folder: str, options: RestoreOptions) -> DumpCommand:
        return self.restore_command(target, b"", options)  # the files, in name order, on stdin

    async def _query(self, target: Connection, sql: str) -> list[list[str]]:
        out = await run_tool(
            self._client(target, "-N", "-B", "-e", sql, *([f"--database={target.database}"] if target.database else []))
        )
        return [line.split("\t") for line in out.splitlines() if line]

    async def is_empty(self, target: Connection) -> bool | None:
        if target.database is None:
            return None
        rows = await self._query(
            target, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        )
        return rows == [["0"]]

    async def table_counts(self, target: Connection) -> dict[str, int]:
        tables = await self._query(
            target,
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1",
        )
        if not tables:
            return {}
        quoted = ["`" + t[0].replace("`", "``") + "`" for t in tables]
        # identifiers from information_schema, backquoted; the label is the same text in a string literal
        union = " UNION ALL ".join(
            "SELECT '" + q[1:-1].replace("\\", "\\\\").replace("'", "''") + "', COUNT(*) FROM " + q  # noqa: S608
            for q in quoted
        )
        return {name: int(n) for name, n in await self._query(target, union)}

    async def clear(self, target: Connection) -> None:
        if not target.database:
            return
        db = "`" + target.database.replace("`", "``") + "`"
        await run_tool(self._client(target, "-e", f"DROP DATABASE {db}; CREATE DATABASE {db}"))


_USER = rb"`((?:[^`]|``)*)`@`((?:[^`]|``)*)`"
_CREATE_USER = re.compile(rb"^CREATE USER IF NOT EXISTS " + _USER)
#: the account a GRANT or SET DEFAULT ROLE line is about: `u`@`h` or 'u'@'h' after TO / FOR
_GRANTEE = re.compile(rb" (?:TO|FOR) (?:" + _USER + rb"|'((?:[^']|'')*)'@'((?:[^']|'')*)')")


def _name(raw: bytes, quote: bytes = b"`") -> str:
    return raw.replace(quote + quote, quote).decode()


class MysqlGlobalsFilter(LineFilter):
    """Keeps the accounts that exist on the restore target exactly as they are.

    mariadb-dump ``--insert-ignore`` writes ``CREATE USER IF NOT EXISTS``; but its ``GRANT ... TO
    user IDENTIFIED BY PASSWORD`` lines would reset an existing user's password to the backup's, and
    grants to the server's own accounts (root's ``GRANT PROXY``) need privileges a restoring admin
    rarely has. So every line about an account that exists (its CREATE, GRANTs and default role) is
    commented out; accounts the target lacks are created with their grants.
    """

    def __init__(self, users: set[tuple[str, str]]) -> None:
        super().__init__()
        self.users = users

    def line(self, line: bytes) -> bytes:
        if m := _CREATE_USER.match(line):
            user = (_name(m.group(1)), _name(m.group(2)))
            if user in self.users:
                self.kept.append(f"user {user[0]}@{user[1]}")
                return b"-- dbstash: account exists, kept as it is: " + line
        elif line.startswith((b"GRANT ", b"/*M!100005 ")) and (m := _GRANTEE.search(line)):
            if m.group(1) is not None:
                user = (_name(m.group(1)), _name(m.group(2)))
            else:
                user = (_name(m.group(3), b"'"), _name(m.group(4), b"'"))
            if user in self.users:
                return b"-- dbstash: grant to an existing account skipped\n"
        return line


class MariadbEngine(MysqlEngine):
    """MariaDB via ``mariadb-dump`` (``mysqldump`` if that is what is installed): as `MysqlEngine`."""

    key: ClassVar[str] = "mariadb"
    schemes: ClassVar[tuple[str, ...]] = ("mariadb",)
    tools: ClassVar[tuple[str, ...]] = ("mariadb-dump", "mysqldump")
    clients: ClassVar[tuple[str, ...]] = ("mariadb", "mysql")


#: Comment lines that open a section of a mysqldump stream, and the kind of file each starts.
_SECTIONS = (
    (b"-- Table structure for table ", "table"),
    (b"-- Temporary view structure for view ", "view"),
    (b"-- Temporary table structure for view ", "view"),
    (b"-- Current Database: ", "database"),
    (b"-- Dumping events for database ", "rest"),
    (b"-- Dumping routines for database ", "rest"),
    (b"-- Final view structure for view ", "rest"),
    (b"-- Dump completed", "rest"),
)
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _section(line: bytes) -> tuple[str, str] | None:
    """Whether a mysqldump comment line starts a new section: (kind, name)."""
    for prefix, kind in _SECTIONS:
        if line.startswith(prefix):
            name = line[len(prefix) :].strip().strip(b"`'").decode(errors="replace")
            return kind, _SAFE.sub("_", name)[:80]
    return None


def split_mysql_dump(src_fd: int, outdir: str) -> None:
    """Split one mysqldump stream into numbered files: ``0000-header.sql``, ``0001-table-customers.sql``, ...

    A new file starts at each section comment mysqldump writes (a table's structure, a view, the
    events/routines/final views of a database, the next database of ``--all-databases``); a table's
    data follows its structure, so every table lands whole in one file. The ``--`` line opening a
    comment block goes with the block. Feeding the files in name order to the ``mysql`` client
    replays the original stream byte for byte.
    """
    index = 0
    current = open(os.path.join(outdir, "0000-header.sql"), "wb")  # noqa: SIM115 - rotated below
    current_kind = "header"
    pending = b""
    try:
        with os.fdopen(os.dup(src_fd), "rb", buffering=1 << 20) as stream:
            for line in stream:
                if line == b"--\n":
                    current.write(pending)
                    pending = line
                    continue
                section = _section(line) if line.startswith(b"-- ") else None
                if section is not None and not (section[0] == "rest" and current_kind == "rest"):
                    index += 1
                    current.close()
                    kind, name = section
                    label = f"{kind}-{name}" if kind != "rest" else "rest"
                    current = open(os.path.join(outdir, f"{index:04d}-{label}.sql"), "wb")  # noqa: SIM115
                    current_kind = kind
                current.write(pending + line)
                pending = b""
        current.write(pending)
    finally:
        current.close()
