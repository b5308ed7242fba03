"""Redis: ``redis-cli --rdb -`` streams the server's RDB snapshot to stdout; the password goes in ``REDISCLI_AUTH``."""

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
    RestoreOptions,
    one_database,
    path_arg,
    run_tool,
    tool_version,
)
from dbstash.errors import ConfigError, ToolNotFound
from dbstash.redact import redact_uri

#: URI query parameters -> redis-cli TLS flags (``rediss://`` turns TLS on).
TLS_PARAMS = {
    "cacert": "--cacert",
    "cacertdir": "--cacertdir",
    "cert": "--cert",
    "key": "--key",
    "sni": "--sni",
    "tls-ciphers": "--tls-ciphers",
    "tls-ciphersuites": "--tls-ciphersuites",
}
#: Valueless TLS flags.
TLS_SWITCHES = {"insecure": "--insecure"}


class RedisEngine(Engine):
    """Redis via ``redis-cli --rdb -``: the binary RDB snapshot, ``.rdb``.

    The RDB always holds the **whole instance** (every logical database): the ``/N`` of a URI is
    accepted but does not narrow it. The server writes the snapshot for a replica-style transfer,
    so it waits ``repl-diskless-sync-delay`` seconds (default 5) before it starts: set it to 0 on
    the server for faster backups. Restore: stop Redis, put the file in its ``dir`` as its
    ``dbfilename`` (``dump.rdb``), start it with ``appendonly no`` (or re-enable AOF afterwards).
    """

    key: ClassVar[str] = "redis"
    schemes: ClassVar[tuple[str, ...]] = ("redis", "rediss")
    default_port: ClassVar[int | None] = 6379

    def __init__(self, tool: str | None = None) -> None:
        self._tool = tool

    def parse_uri(self, uri: str, *, variable: str = "DB_URI") -> Connection:
        shown = redact_uri(uri)
        expected = "redis://:password@host:6379/0 or rediss://user:password@host:6380/0"
        try:
            parts = urlsplit(uri)
            port = str(parts.port) if parts.port is not None else None
        except ValueError:
            raise ConfigError(variable, expected, shown) from None
        scheme = parts.scheme.lower()
        if scheme not in self.schemes or not parts.hostname:
            raise ConfigError(variable, expected, shown)
        db = parts.path.lstrip("/")
        if db and not (db.isascii() and db.isdigit()):
            raise ConfigError(variable, f"{expected} (the database is a number)", shown)
        params: dict[str, str] = {"tls": "1"} if scheme == "rediss" else {}
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            if k not in TLS_PARAMS and k not in TLS_SWITCHES:
                allowed = ", ".join(sorted([*TLS_PARAMS, *TLS_SWITCHES]))
                raise ConfigError(variable, f"{expected} (query parameters: {allowed})", shown)
            params[k] = v
        return Connection(
            self.key,
            db or None,
            unquote(parts.hostname),
            port,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            params,
        )

    def from_parts(
        self,
        *,
        host: str | None,
        port: str | None,
        database: str | None,
        user: str | None,
        password: str | None,
    ) -> Connection:
        if one_database(database) is not None and not (str(database).isascii() and str(database).isdigit()):
            raise ConfigError("DB_NAME", "a Redis database number (the backup holds every database anyway)", database)
        return super().from_parts(host=host, port=port, database=database, user=user, password=password)

    def extension(self, options: DumpOptions, connection: Connection | None = None) -> str:
        return ".rdb"

    def database_label(self, connection: Connection) -> str:
        return "redis"  # the RDB is the whole instance, whatever /N the URI names

    def _argv(self, tool: str, connection: Connection, options: DumpOptions) -> tuple[str, ...]:
        argv = [tool, "-h", connection.host or "127.0.0.1", "-p", connection.port or str(self.default_port)]
        if connection.user:
            argv += ["--user", connection.user]
        params = dict(connection.params)
        if params.pop("tls", None):
            argv.append("--tls")
        for k, v in sorted(params.items()):
            argv += [TLS_SWITCHES[k]] if k in TLS_SWITCHES else [TLS_PARAMS[k], v]
        argv += ["--no-auth-warning", *options.extra_args, "--rdb", "-"]
        return tuple(argv)

    def _env(self, connection: Connection) -> dict[str, str]:
        return {"REDISCLI_AUTH": connection.password} if connection.password else {}

    def preview_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        tool = self._tool or shutil.which("redis-cli") or "redis-cli"
        return DumpCommand(self._argv(tool, connection, options), self._env(connection))

    async def dump_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        tool = self._tool or shutil.which("redis-cli")
        if not tool:
            raise ToolNotFound("redis-cli not found (install redis-tools or use a dbstash:redis-N image)")
        version = await anyio.to_thread.run_sync(tool_version, tool)
        return DumpCommand(self._argv(tool, connection, options), self._env(connection), tool_version=version)

    async def estimate_size(self, connection: Connection) -> int | None:
        """``used_memory`` of ``INFO memory``: an upper bound of the RDB (which is compact), one round trip."""
        tool = self._tool or shutil.which("redis-cli")
        if not tool:
            return None
        argv = [a for a in self._argv(tool, connection, DumpOptions()) if a not in ("--rdb", "-")]
        out = await run_tool(DumpCommand((*argv, "INFO", "memory"), self._env(connection)), timeout=30)
        found = re.search(r"^used_memory:(\d+)", out, re.MULTILINE)
        return int(found.group(1)) if found else None

    # -- restore -----------------------------------------------------------------------------------
    #: A Redis restore writes the RDB to a file the user names (``--target /data/dump.rdb``); loading
    #: it is a server restart (see the docs), not something a client can do.
    restores_to_file: ClassVar[bool] = True
    scratch_suffix: ClassVar[str] = ".rdb"
    backup_note: ClassVar[str | None] = (
        "the Redis RDB holds the whole instance (every database), whatever the URI's /N says"
    )

    def stopped_restore_note(self, options: RestoreOptions) -> str:
        return "nothing was kept: the RDB was being written to a temp file, now removed."

    def restore_command(self, target: Connection, head: bytes, options: RestoreOptions) -> DumpCommand | None:
        return None  # the stream is the file

    async def is_empty(self, target: Connection) -> bool | None:
        path = target.database or ""
        return not os.path.exists(path) or os.path.getsize(path) == 0

    async def table_counts(self, target: Connection) -> dict[str, int]:
        """Keys in the RDB file, read by ``redis-check-rdb`` (which also validates its checksum)."""
        tool = shutil.which("redis-check-rdb")
        if tool is None:
            return {}
        out = await run_tool(DumpCommand((tool, path_arg(target.database or "")), {}))
        found = re.search(r"(\d+) keys read", out)
        return {"keys": int(found.group(1))} if found else {}

    async def clear(self, target: Connection) -> None:
        if target.database and os.path.exists(target.database):
            os.unlink(target.database)
