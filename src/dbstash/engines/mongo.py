"""MongoDB: ``mongodump --archive`` to stdout; the connection string, password included, in an in-memory config."""

from __future__ import annotations

import json
import shutil
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import anyio

from dbstash.engines.base import (
    Connection,
    DumpCommand,
    DumpOptions,
    Engine,
    RestoreOptions,
    one_database,
    tool_version,
)
from dbstash.errors import ConfigError, RestoreError, ToolNotFound
from dbstash.redact import redact_uri

DEFAULT_AUTH_SOURCE = "admin"
#: A dead server must not hang a run (milliseconds, MongoDB URI options; the URI's own win).
DEFAULT_TIMEOUTS = {"connectTimeoutMS": "15000", "serverSelectionTimeoutMS": "15000"}


class MongoEngine(Engine):
    """MongoDB via ``mongodump --archive``: one archive stream, ``.archive`` (``.archive.gz`` with ``--gzip``).

    ``DB_NAME`` (or the URI's path) picks one database; empty or ``all`` dumps every database.
    The connection string, password included, reaches mongodump only through a YAML ``--config``
    file held in memory (``/dev/fd/N``, mode 0600): never argv, never the disk. ``authSource``
    comes from the URI, else ``DB_AUTH_SOURCE``, else ``admin``.
    """

    key: ClassVar[str] = "mongo"
    schemes: ClassVar[tuple[str, ...]] = ("mongodb", "mongodb+srv")
    default_port: ClassVar[int | None] = 27017
    stream_conflicting_flags: ClassVar[tuple[str, ...]] = ("--out=", "-o")

    def __init__(self, tool: str | None = None) -> None:
        self._tool = tool

    def parse_uri(self, uri: str, *, variable: str = "DB_URI") -> Connection:
        shown = redact_uri(uri)
        expected = "mongodb://user:password@host:27017/dbname?authSource=admin (or mongodb+srv://...)"
        try:
            parts = urlsplit(uri)
        except ValueError:
            raise ConfigError(variable, expected, shown) from None
        scheme = parts.scheme.lower()
        userinfo, _, hosts = parts.netloc.rpartition("@")
        if scheme not in self.schemes or not hosts:
            raise ConfigError(variable, expected, shown)
        user, password = None, None
        if userinfo:
            u, sep, p = userinfo.partition(":")
            user = unquote(u) or None
            password = unquote(p) if sep else None
        database = unquote(parts.path.lstrip("/"))
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if scheme == "mongodb+srv":
            params["_srv"] = "1"
        return Connection(
            self.key,
            one_database(database),
            hosts,
            None,
            user,
            password,
            params,
        )

    gzips_natively: ClassVar[bool] = True

    def with_auth_source(self, connection: Connection, auth_source: str | None) -> Connection:
        """*connection* with ``authSource`` set from ``DB_AUTH_SOURCE`` unless its URI already has one.

        Without a user there is no login, so no ``authSource`` either: with one, mongodump tries to
        authenticate with an empty user and fails.
        """
        if "authSource" in connection.params or connection.user is None:
            return connection
        params = {**connection.params, "authSource": auth_source or DEFAULT_AUTH_SOURCE}
        c = connection
        return Connection(c.engine, c.database, c.host, c.port, c.user, c.password, params)

    def connection_string(self, connection: Connection) -> str:
        """The URI mongodump gets (in its config file only: it holds the password)."""
        params = dict(connection.params)
        srv = params.pop("_srv", None)
        if connection.user or connection.password:
            params.setdefault("authSource", DEFAULT_AUTH_SOURCE)
        for k, v in DEFAULT_TIMEOUTS.items():
            params.setdefault(k, v)
        auth = ""
        if connection.user is not None:
            auth = quote(connection.user, safe="")
            if connection.password is not None:
                auth += ":" + quote(connection.password, safe="")
            auth += "@"
        hosts = connection.host or "127.0.0.1"
        if connection.port and "," not in hosts and ":" not in hosts.rsplit("]", 1)[-1]:
            hosts += f":{connection.port}"
        scheme = "mongodb+srv" if srv else "mongodb"
        return f"{scheme}://{auth}{hosts}/" + (f"?{urlencode(sorted(params.items()))}" if params else "")

    def extension(self, options: DumpOptions, connection: Connection | None = None) -> str:
        return ".archive.gz" if self._gzip(options) else ".archive"

    def native_compression(self, connection: Connection | None = None) -> bool:
        return True

    @staticmethod
    def _gzip(options: DumpOptions) -> bool:
        return options.compress or "--gzip" in options.extra_args

    def _argv(self, tool: str, connection: Connection, options: DumpOptions) -> tuple[str, ...]:
        argv = [tool, "--config={secret:mongodump.yaml}", "--archive"]
        if options.compress and "--gzip" not in options.extra_args:
            argv.append("--gzip")
        if connection.database:
            argv.append(f"--db={connection.database}")
        argv += options.extra_args
        return tuple(argv)

    def config_file(self, connection: Connection) -> bytes:
        """mongodump's YAML config: the URI (JSON strings are valid YAML and escape everything)."""
        return f"uri: {json.dumps(self.connection_string(connection))}\n".encode()

    def preview_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        tool = self._tool or shutil.which("mongodump") or "mongodump"
        return DumpCommand(self._argv(tool, connection, options), {})

    async def dump_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        tool = self._tool or shutil.which("mongodump")
        if not tool:
            raise ToolNotFound("mongodump not found (install mongodb-database-tools or use a dbstash:mongo-N image)")
        version = await anyio.to_thread.run_sync(tool_version, tool)
        return DumpCommand(
            self._argv(tool, connection, options),
            {},
            tool_version=version,
            secret_files={"mongodump.yaml": self.config_file(connection)},
        )

    # -- directory and tar modes ---------------------------------------------------------------------
    modes: ClassVar[tuple[str, ...]] = ("stream", "directory", "tar")

    async def files_command(self, connection: Connection, options: DumpOptions, outdir: str) -> DumpCommand:
        """mongodump's own layout: ``--out=DIR``, one BSON + metadata file per collection."""
        stream = await self.dump_command(connection, options)
        argv = [a for a in stream.argv if a != "--archive"] + [f"--out={outdir}"]
        return DumpCommand(tuple(argv), stream.env, stream.tool_version, stream.secret_files)

    # -- restore -----------------------------------------------------------------------------------
    def stopped_restore_note(self, options: RestoreOptions) -> str:
        return "mongorestore may already have inserted part of the documents."

    def restore_command(self, target: Connection, head: bytes, options: RestoreOptions) -> DumpCommand:
        tool = shutil.which("mongorestore")
        if not tool:
            raise ToolNotFound("mongorestore not found (install mongodb-database-tools)")
        argv = [tool, "--config={secret:mongorestore.yaml}", "--archive"]
        if options.native_gzip:
            argv.append("--gzip")
        if options.force:
            argv.append("--drop")
        src, dst = options.source_database, target.database
        if src and dst and src != dst:
            argv += [f"--nsFrom={_ns_literal(src)}.*", f"--nsTo={_ns_literal(dst)}.*"]
        return DumpCommand(tuple(argv), {}, secret_files={"mongorestore.yaml": self.config_file(target)})

    # -- many databases per job ---------------------------------------------------------------------
    lists_databases: ClassVar[bool] = True
    system_databases: ClassVar[tuple[str, ...]] = ("admin", "local", "config")

    async def list_databases(self, connection: Connection) -> list[str]:
        client = self._client(self.for_database(connection, ""))
        if client is None:
            raise ToolNotFound("listing MongoDB databases needs pymongo: pip install 'dbstash[mongo]'")

        def names() -> list[str]:
            with client:
                return sorted(str(n) for n in client.list_database_names())

        try:
            return await anyio.to_thread.run_sync(names)
        except Exception as exc:  # pymongo's errors: server selection timeout, auth failure
            raise RestoreError(f"cannot list the MongoDB databases: {type(exc).__name__}: {exc}") from None

    def for_database(self, connection: Connection, name: str) -> Connection:
        """One database of the server; the login stays where the job's URI logs in (``admin`` when it named
        no database), not the database being dumped."""
        c = connection
        params = dict(c.params)
        if c.user is not None:
            params.setdefault("authSource", DEFAULT_AUTH_SOURCE if c.database is None else c.database)
        return Connection(c.engine, name or None, c.host, c.port, c.user, c.password, params)

    # -- looking into a target (restore's emptiness check, verify's counts and clean-up) ------------------
    #: databases every server has: never counted as data, never dropped
    SYSTEM_DATABASES: ClassVar[tuple[str, ...]] = ("admin", "local", "config")

    def _client(self, target: Connection) -> Any:
        """A pymongo client for *target* (the ``dbstash[mongo]`` extra), or None without pymongo."""
        try:
            import pymongo  # noqa: PLC0415 - optional: only restore/verify of MongoDB need it
        except ImportError:
            return None
        return pymongo.MongoClient(self.connection_string(target))

    async def estimate_size(self, connection: Connection) -> int | None:
        """``dbStats`` ``dataSize`` (every non-system database's, summed, for a whole-server dump); None
        without pymongo (the ``dbstash[mongo]`` extra, in the images)."""
        client = self._client(connection)
        if client is None:
            return None

        def size() -> int:
            with client:
                return sum(
                    int(client[db].command("dbStats").get("dataSize", 0)) for db in self._databases(client, connection)
                )

        with anyio.fail_after(30):
            return await anyio.to_thread.run_sync(size, abandon_on_cancel=True)

    def _databases(self, client: Any, target: Connection) -> list[str]:
        if target.database:
            return [target.database]
        return [d for d in client.list_database_names() if d not in self.SYSTEM_DATABASES]

    async def is_empty(self, target: Connection) -> bool | None:
        client = self._client(target)
        if client is None:
            return None

        def check() -> bool:
            with client:
                return not any(client[db].list_collection_names() for db in self._databases(client, target))

        return await anyio.to_thread.run_sync(check)

    async def table_counts(self, target: Connection) -> dict[str, int]:
        client = self._client(target)
        if client is None:
            raise ToolNotFound("counting MongoDB documents needs pymongo: pip install 'dbstash[mongo]'")

        def count() -> dict[str, int]:
            with client:
                return {
                    f"{db}.{name}": int(client[db][name].count_documents({}))
                    for db in self._databases(client, target)
                    for name in sorted(client[db].list_collection_names())
                }

        return await anyio.to_thread.run_sync(count)

    async def clear(self, target: Connection) -> None:
        client = self._client(target)
        if client is None:
            raise ToolNotFound("dropping the MongoDB scratch database needs pymongo: pip install 'dbstash[mongo]'")

        def drop() -> None:
            with client:
                for db in self._databases(client, target):
                    client.drop_database(db)

        await anyio.to_thread.run_sync(drop)

    def restore_files_command(self, target: Connection, folder: str, options: RestoreOptions) -> DumpCommand:
        command = self.restore_command(target, b"", options)
        argv = [a for a in command.argv if a not in ("--archive", "--gzip")]
        if options.native_gzip:
            argv.append("--gzip")
        return DumpCommand((*argv, f"--dir={folder}"), command.env, secret_files=command.secret_files)


def _ns_literal(name: str) -> str:
    """A database name inside an ``--nsFrom``/``--nsTo`` pattern, as itself: ``*`` and ``\\`` escaped."""
    return name.replace("\\", "\\\\").replace("*", "\\*")
