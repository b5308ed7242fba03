"""PostgreSQL: ``pg_dump`` to stdout, libpq settings through the environment, matching tool major version.

(Over 400 lines on purpose: one engine, one module, as for every engine: URI, dump, version choice, restore.)
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
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
)
from dbstash.errors import ConfigError, DumpFailed, ToolNotFound, ToolVersionMismatch
from dbstash.parts.process import child_base_env
from dbstash.redact import Redactor, redact_uri

# libpq connection parameters that have an environment variable: everything in a URI query goes
# through these, so argv carries nothing but flags. (sslpassword has none: it is refused.)
LIBPQ_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "channel_binding": "PGCHANNELBINDING",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "requiressl": "PGREQUIRESSL",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}
#: Used when the URI sets no connect_timeout: a dead server must not hang a run.
DEFAULT_CONNECT_TIMEOUT = "15"
#: Where distributions install several majors side by side (Debian, Alpine, RHEL/PGDG, pgserver-style trees).
DEFAULT_BIN_GLOBS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/libexec/postgresql*",
    "/usr/pgsql-*/bin",
)
PROBE_TIMEOUT = 60.0
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class PgTool:
    """One installed ``pg_dump`` with its major version."""

    pg_dump: str
    major: int
    version: str

    @property
    def bindir(self) -> str:
        return os.path.dirname(self.pg_dump)


def _parse_hosts(netloc_hosts: str, variable: str, shown: str) -> tuple[str | None, str | None]:
    """``h1:5432,[::1]:5433`` -> (``h1,::1``, ``5432,5433``) as libpq's PGHOST/PGPORT expect."""
    if not netloc_hosts:
        return None, None
    hosts, ports = [], []
    for item in netloc_hosts.split(","):
        m = re.fullmatch(r"\[(?P<v6>[0-9a-fA-F:.]+)\](?::(?P<p6>\d*))?|(?P<h>[^:\[\]]*)(?::(?P<p>\d*))?", item)
        if not m:
            raise ConfigError(variable, "postgresql://user:password@host:port/dbname", shown)
        hosts.append(unquote(m.group("v6") or m.group("h") or ""))
        ports.append(m.group("p6") or m.group("p") or "")
    port = ",".join(ports) if any(ports) else None
    return ",".join(hosts) or None, port


class PostgresEngine(Engine):
    """PostgreSQL via ``pg_dump``: plain SQL by default, custom format (``.dump``) with compression.

    Secrets go through ``PGPASSWORD`` in the child's environment and ``-w`` keeps ``pg_dump`` from
    ever waiting at a password prompt. When several majors are installed, the one matching the
    server is used (else the nearest newer one); none that fits is an error naming both versions.
    """

    key: ClassVar[str] = "pg"
    schemes: ClassVar[tuple[str, ...]] = ("postgresql", "postgres")
    default_port: ClassVar[int | None] = 5432
    stream_conflicting_flags: ClassVar[tuple[str, ...]] = ("--Fd", "-Fd", "--format=directory", "--file=", "-f")

    def __init__(self, bin_dirs: Sequence[str] | None = None, *, search_path: bool = True) -> None:
        """*bin_dirs*: directories holding ``pg_dump``/``psql``; default: the usual install places.

        *search_path*: also consider ``pg_dump`` found on ``PATH``.
        """
        self._bin_dirs = tuple(bin_dirs) if bin_dirs is not None else None
        self._search_path = search_path
        self._tools: list[PgTool] | None = None

    # -- configuration -------------------------------------------------------------------------
    def parse_uri(self, uri: str, *, variable: str = "DB_URI") -> Connection:
        shown = redact_uri(uri)
        expected = "postgresql://user:password@host:5432/dbname?sslmode=require"
        try:
            parts = urlsplit(uri)
        except ValueError:
            raise ConfigError(variable, expected, shown) from None
        if parts.scheme.lower() not in self.schemes:
            raise ConfigError(variable, expected, shown)
        userinfo, _, hostlist = parts.netloc.rpartition("@")
        user, password = None, None
        if userinfo:
            u, sep, p = userinfo.partition(":")
            user = unquote(u) or None
            password = unquote(p) if sep else None
        host, port = _parse_hosts(hostlist, variable, shown)
        if port is not None and not all((p.isascii() and p.isdigit()) for p in port.split(",") if p):
            raise ConfigError(variable, expected, shown)
        database = unquote(parts.path.lstrip("/")) or None
        params: dict[str, str] = {}
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            if k not in LIBPQ_ENV:
                reason = f"query parameter {k!r} is not a libpq setting dbstash can pass safely"
                raise ConfigError(variable, f"{expected} ({reason})", shown)
            if k == "password":
                password = v
            elif k == "user":
                user = v
            elif k == "dbname":
                database = v
            elif k == "host":
                host = v
            elif k == "port":
                port = v
            else:
                params[k] = v
        # no database, or "all": every database, through pg_dumpall
        return Connection(self.key, one_database(database), host, port, user, password, params)

    def extension(self, options: DumpOptions, connection: Connection | None = None) -> str:
        if connection is not None and connection.database is None:
            return ".sql"  # pg_dumpall writes plain SQL only
        fmt = self._format(options)
        return {"custom": ".dump", "tar": ".tar", "plain": ".sql", "directory": ""}[fmt]

    def native_compression(self, connection: Connection | None = None) -> bool:
        return connection is None or connection.database is not None  # pg_dumpall has no compression

    @staticmethod
    def _format(options: DumpOptions) -> str:
        """The effective ``--format``: an explicit one in DUMP_EXTRA_ARGS wins over BACKUP_COMPRESS."""
        names = {"p": "plain", "c": "custom", "t": "tar", "d": "directory"}
        args = list(options.extra_args)
        fmt = None
        for i, a in enumerate(args):
            value = None
            if a.startswith("--format="):
                value = a.split("=", 1)[1]
            elif a in ("-F", "--format") and i + 1 < len(args):
                value = args[i + 1]
            elif a.startswith("-F") and len(a) > 2:
                value = a[2:]
            elif a.startswith("--F") and len(a) == 4:
                value = a[3:]
            if value:
                fmt = names.get(value[0].lower(), value.lower())
        if fmt:
            return fmt
        return "custom" if options.compress or options.archive else "plain"

    def _format_args(self, options: DumpOptions) -> list[str]:
        explicit = any(a.startswith(("--format", "-F", "--F")) for a in options.extra_args)
        if explicit:
            return []
        if options.archive and not options.compress:  # custom format, uncompressed (BACKUP_COMPRESS decides)
            return ["--format=custom", "--compress=0"]
        return ["--format=custom"] if options.compress else ["--format=plain"]

    # -- environment and tools -----------------------------------------------------------------
    def libpq_env(self, connection: Connection) -> dict[str, str]:
        """The libpq environment for *connection* (holds the password: child env only, never logged)."""
        env = {LIBPQ_ENV[k]: v for k, v in connection.params.items()}
        if connection.host:
            env["PGHOST"] = connection.host
        if connection.port:
            env["PGPORT"] = connection.port
        if connection.user:
            env["PGUSER"] = connection.user
        if connection.database:
            env["PGDATABASE"] = connection.database
        if connection.password is not None:
            env["PGPASSWORD"] = connection.password
        env.setdefault("PGCONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)
        return env

    def installed_tools(self) -> list[PgTool]:
        """Every ``pg_dump`` found, newest major first (asked once per engine object: each costs a
        ``pg_dump --version``, and one run needs them for the dump, psql probes and the estimate)."""
        if self._tools is None:
            self._tools = self._find_tools()
        return list(self._tools)

    def _find_tools(self) -> list[PgTool]:
        candidates: list[str] = []
        dirs = self._bin_dirs
        if dirs is None:
            dirs = tuple(d for pattern in DEFAULT_BIN_GLOBS for d in sorted(glob.glob(pattern)))
        candidates += [os.path.join(d, "pg_dump") for d in dirs]
        if self._search_path:
            found = shutil.which("pg_dump")
            if found:
                candidates.append(found)
        tools: dict[str, PgTool] = {}
        for path in candidates:
            real = os.path.realpath(path)
            # Debian's /usr/bin/pg_dump is a Perl wrapper choosing among the versioned binaries that
            # are already candidates; asking it costs a Perl start-up per run.
            if real in tools or not os.access(path, os.X_OK) or os.path.basename(real) == "pg_wrapper":
                continue
            version = _tool_version(path)
            if version:
                major, text = version
                tools[real] = PgTool(path, major, text)
        return sorted(tools.values(), key=lambda t: t.major, reverse=True)

    @staticmethod
    def choose_tool(tools: Sequence[PgTool], server_major: int) -> PgTool:
        """The tool matching *server_major*, else the nearest newer; raise if only older ones exist."""
        exact = [t for t in tools if t.major == server_major]
        if exact:
            return exact[0]
        newer = sorted((t for t in tools if t.major > server_major), key=lambda t: t.major)
        if newer:
            return newer[0]
        have = ", ".join(sorted({str(t.major) for t in tools})) or "none"
        raise ToolVersionMismatch(
            f"PostgreSQL server is version {server_major} but the installed pg_dump is version {have}; "
            f"pg_dump must be {server_major} or newer (use the dbstash:pg-{server_major} image "
            f"or install postgresql-client-{server_major})"
        )

    async def server_major(self, connection: Connection, tool: PgTool) -> int:
        """Ask the server its version with ``psql`` from *tool*'s directory (or PATH)."""
        psql = os.path.join(tool.bindir, "psql")
        if not os.access(psql, os.X_OK):
            psql = shutil.which("psql") or ""
        if not psql:
            raise ToolNotFound("psql not found: dbstash needs it beside pg_dump to read the server version")
        env = {**child_base_env(), **self.libpq_env(connection)}
        redactor = Redactor([connection.password or ""])
        try:
            with anyio.fail_after(PROBE_TIMEOUT):
                proc = await anyio.run_process(
                    [psql, "-X", "-w", "-A", "-t", "-q", "-c", "SHOW server_version_num"],
                    env=env,
                    check=False,
                )
        except TimeoutError:
            raise DumpFailed(f"PostgreSQL server did not answer within {PROBE_TIMEOUT:.0f}s") from None
        if proc.returncode != 0:
            err = redactor(proc.stderr.decode(errors="replace").strip())
            raise DumpFailed("cannot connect to PostgreSQL", exit_status=proc.returncode, stderr_tail=err)
        text = proc.stdout.decode().strip()
        if not (text.isascii() and text.isdigit()):
            raise DumpFailed(f"unexpected server_version_num from PostgreSQL: {text[:80]!r}")
        num = int(text)
        return num // 10000 if num >= 100000 else num // 100

    async def dump_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        tools = await anyio.to_thread.run_sync(self.installed_tools)
        if not tools:
            raise ToolNotFound("pg_dump not found (install postgresql-client or use a dbstash:pg-N image)")
        if len({t.major for t in tools}) == 1:
            # One major installed: nothing to choose. If the server is newer, pg_dump itself refuses
            # with "server version mismatch; server version: X; pg_dump version: Y" (exit 1), naming
            # both; skipping the probe saves a psql start and a connection on every run.
            tool = tools[0]
        else:
            major = await self.server_major(connection, tools[0])
            tool = self.choose_tool(tools, major)
        return DumpCommand(self._argv(tool.pg_dump, connection, options), self.libpq_env(connection), tool.version)

    def _argv(self, pg_dump: str, connection: Connection, options: DumpOptions) -> tuple[str, ...]:
        if connection.database is None:  # every database and the roles: pg_dumpall, plain SQL only
            pg_dumpall = os.path.join(os.path.dirname(pg_dump), "pg_dumpall") if os.sep in pg_dump else "pg_dumpall"
            return (pg_dumpall, "--no-password", *options.extra_args)
        return (pg_dump, "--no-password", *self._format_args(options), *options.extra_args)

    # -- many databases per job ---------------------------------------------------------------------
    lists_databases: ClassVar[bool] = True
    system_databases: ClassVar[tuple[str, ...]] = ("template1", "postgres")
    hidden_databases: ClassVar[tuple[str, ...]] = ("template0",)

    def _server_conn(self, connection: Connection) -> Connection:
        """*connection* on the maintenance database (for server-level queries)."""
        return self.for_database(connection, "postgres") if connection.database is None else connection

    async def list_databases(self, connection: Connection) -> list[str]:
        # hex: a name is data (a newline in it must not split it into phantom names)
        out = await run_tool(
            self._psql(self._server_conn(connection)),
            stdin=b"SELECT encode(convert_to(datname, 'UTF8'), 'hex') FROM pg_database WHERE datallowconn ORDER BY 1;",
            timeout=PROBE_TIMEOUT,
        )
        names = (bytes.fromhex(line).decode() for line in out.split())
        return sorted(n for n in names if n not in self.hidden_databases)

    def globals_supported(self) -> str | None:
        return None

    async def estimate_size(self, connection: Connection) -> int | None:
        """``pg_database_size`` of the database (every database's, summed, for a whole-server dump)."""
        sql = (
            "SELECT pg_database_size(current_database());"
            if connection.database
            else "SELECT sum(pg_database_size(datname)) FROM pg_database WHERE datallowconn;"
        )
        out = await run_tool(self._psql(self._server_conn(connection)), stdin=sql.encode(), timeout=PROBE_TIMEOUT)
        return int(out.strip()) if out.strip().isdigit() else None

    async def is_superuser(self, connection: Connection) -> bool:
        """Whether the job's user is a superuser (pg_dumpall needs one to read role passwords)."""
        out = await run_tool(
            self._psql(self._server_conn(connection)),
            stdin=b"SELECT rolsuper FROM pg_roles WHERE rolname = current_user;",
            timeout=PROBE_TIMEOUT,
        )
        return out.strip() == "t"

    def _globals_argv(self, pg_dump: str, superuser: bool) -> tuple[str, ...]:
        pg_dumpall = os.path.join(os.path.dirname(pg_dump), "pg_dumpall") if os.sep in pg_dump else "pg_dumpall"
        return (pg_dumpall, "--no-password", "--globals-only", *(() if superuser else ("--no-role-passwords",)))

    async def globals_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        """``pg_dumpall --globals-only``: roles, memberships, role settings, tablespaces (plain SQL).

        A user that is not a superuser cannot read role passwords: ``--no-role-passwords`` then, said in the log.
        """
        server = self._server_conn(connection)
        plain = await self.dump_command(server, DumpOptions())
        superuser = await self.is_superuser(connection)
        if not superuser:
            from dbstash.logs import get_logger  # noqa: PLC0415

            get_logger("dbstash").warning(
                "%s is not a superuser: the globals are dumped with --no-role-passwords (roles restore without "
                "their passwords)",
                connection.user or "the job's user",
            )
        return DumpCommand(self._globals_argv(plain.argv[0], superuser), plain.env, plain.tool_version)

    def preview_globals_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        preview = self.preview_command(self._server_conn(connection), DumpOptions())
        return replace(preview, argv=self._globals_argv(preview.argv[0], True))

    async def restore_filter(self, target: Connection, options: RestoreOptions) -> LineFilter | None:
        if not (options.globals_only or options.all_databases):
            return None
        server = self.for_database(target, "postgres")
        out = await run_tool(
            self._psql(server),
            stdin=b"SELECT 'r', rolname FROM pg_roles UNION ALL SELECT 't', spcname FROM pg_tablespace "
            b"UNION ALL SELECT 'd', datname FROM pg_database;",
            timeout=PROBE_TIMEOUT,
        )
        found: dict[str, set[str]] = {"r": set(), "t": set(), "d": set()}
        for line in out.splitlines():
            kind, sep, name = line.partition("|")
            if sep:
                found[kind].add(name)
        return PgGlobalsFilter(found["r"], found["t"], found["d"], drop_databases=options.force)

    async def prepare_restore(self, target: Connection, options: RestoreOptions) -> None:
        if options.create and options.force and target.database:
            ident = '"' + target.database.replace('"', '""') + '"'
            server = self.for_database(target, "postgres")
            await run_tool(self._psql(server), stdin=f"DROP DATABASE IF EXISTS {ident} WITH (FORCE);".encode())

    async def database_exists(self, target: Connection) -> bool:
        """Whether *target*'s database exists on its server."""
        assert target.database is not None
        literal = "'" + target.database.replace("'", "''") + "'"
        out = await run_tool(
            self._psql(self.for_database(target, "postgres")),
            stdin=f"SELECT count(*) FROM pg_database WHERE datname = {literal};".encode(),  # noqa: S608 - quoted literal
            timeout=PROBE_TIMEOUT,
        )
        return out.strip() == "1"

    # -- directory and tar modes ---------------------------------------------------------------------
    modes: ClassVar[tuple[str, ...]] = ("stream", "directory", "tar")

    def supported_modes(self, connection: Connection) -> tuple[str, ...]:
        return self.modes if connection.database else ("stream",)  # pg_dumpall writes one SQL script

    async def files_command(self, connection: Connection, options: DumpOptions, outdir: str) -> DumpCommand:
        """``pg_dump --format=directory`` (``--jobs N`` in DUMP_EXTRA_ARGS dumps tables in parallel)."""
        plain = await self.dump_command(connection, DumpOptions(extra_args=options.extra_args))
        argv = (plain.argv[0], "--no-password", *options.extra_args, "--format=directory", f"--file={outdir}")
        return DumpCommand(argv, plain.env, plain.tool_version)

    # -- restore -----------------------------------------------------------------------------------
    def _client(self, name: str) -> str:
        """psql / pg_restore of the newest installed major (restoring needs a tool at least as new as the dump)."""
        tools = self.installed_tools()
        if tools:
            path = os.path.join(tools[0].bindir, name)
            if os.access(path, os.X_OK):
                return path
        found = shutil.which(name)
        if not found:
            raise ToolNotFound(f"{name} not found (install postgresql-client)")
        return found

    def atomic_restore(self, options: RestoreOptions) -> bool:
        # psql/pg_restore --single-transaction; pg_dumpall scripts, globals and CREATE DATABASE cannot be
        return not (options.all_databases or options.globals_only or options.create)

    def stopped_restore_note(self, options: RestoreOptions) -> str:
        if options.all_databases or options.globals_only:
            return "pg_dumpall scripts do not run in one transaction: part of them may already be applied."
        if options.create:
            return "pg_restore --create does not run in one transaction: part of the database may be restored."
        return "psql/pg_restore ran it in a single transaction, which was rolled back: nothing was applied."

    def restore_command(self, target: Connection, head: bytes, options: RestoreOptions) -> DumpCommand:
        env = self.libpq_env(target)
        if head.startswith(b"PGDMP") and options.create:
            # the database as it was backed up: CREATE DATABASE with its owner, encoding, locale, ACL and
            # settings from the archive, then its contents (owners kept: a restore of the whole server)
            env["PGDATABASE"] = "postgres"
            created = (self._client("pg_restore"), "--no-password", "--exit-on-error", "--create", "-d", "postgres")
            return DumpCommand(created, env)
        if head.startswith(b"PGDMP"):  # custom format: pg_restore, in one transaction
            argv = [self._client("pg_restore"), "--no-password", "--no-owner", "--exit-on-error"]
            argv += ["--single-transaction", "-d", dbname_conninfo(target.database or "postgres")]
            if options.force:
                argv += ["--clean", "--if-exists"]
            return DumpCommand(tuple(argv), env)
        psql = self._client("psql")
        if options.all_databases or options.globals_only or target.database is None:
            env["PGDATABASE"] = "postgres"  # pg_dumpall: CREATE DATABASE cannot run inside a transaction
            return DumpCommand((psql, "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1"), env)
        return DumpCommand((psql, "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction"), env)

    def restore_files_command(self, target: Connection, folder: str, options: RestoreOptions) -> DumpCommand:
        if options.create:  # as in restore_command: the database as it was, owners kept
            env = {**self.libpq_env(target), "PGDATABASE": "postgres"}
            created = (self._client("pg_restore"), "--no-password", "--exit-on-error", "--create", "-d", "postgres")
            return DumpCommand((*created, "--", folder), env)
        argv = [self._client("pg_restore"), "--no-password", "--no-owner", "--exit-on-error", "--single-transaction"]
        argv += ["-d", dbname_conninfo(target.database or "postgres")]
        if options.force:
            argv += ["--clean", "--if-exists"]
        return DumpCommand((*argv, "--", folder), self.libpq_env(target))

    def _psql(self, target: Connection) -> DumpCommand:
        argv = (self._client("psql"), "-X", "-q", "-A", "-t", "--no-password", "-v", "ON_ERROR_STOP=1")
        return DumpCommand(argv, self.libpq_env(target))

    async def is_empty(self, target: Connection) -> bool | None:
        if target.database is None:
            return None
        out = await run_tool(self._psql(target), stdin=_EMPTY_PROBE.encode())
        return out.strip() == "0"

    async def table_counts(self, target: Connection) -> dict[str, int]:
        # constant SQL (no input in it); psql's \\gexec runs each generated, identifier-quoted count query
        sql = (
            "SELECT format('SELECT %L, count(*) FROM %I.%I', n.nspname || '.' || c.relname, n.nspname, c.relname) "  # noqa: S608
            + _USER_RELATIONS
            + " AND c.relkind IN ('r', 'p') ORDER BY 1 \\gexec\n"
        )
        out = await run_tool(self._psql(target), stdin=sql.encode())
        counts = {}
        for line in out.splitlines():
            name, sep, n = line.rpartition("|")
            if sep:
                counts[name] = int(n)
        return counts

    async def clear(self, target: Connection) -> None:
        sql = (
            "SELECT format('DROP SCHEMA %I CASCADE', nspname) FROM pg_namespace "
            "WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%' \\gexec\n"
            "CREATE SCHEMA IF NOT EXISTS public;\n"
        )
        await run_tool(self._psql(target), stdin=sql.encode())

    def preview_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        tools = self.installed_tools()
        binary = tools[0].pg_dump if tools else "pg_dump"
        note = None
        if len({t.major for t in tools}) > 1:
            note = "majors " + ", ".join(str(t.major) for t in tools) + " installed: the run picks the server's"
        argv = self._argv(binary, connection, options)
        return DumpCommand(argv, self.libpq_env(connection), tool_version=note or (tools[0].version if tools else None))


def dbname_conninfo(name: str) -> str:
    """``-d`` for *name* as data: libpq reads a ``-d`` value holding ``=`` (or a URI) as connection
    options, so a database named ``host=elsewhere`` would connect elsewhere. A quoted ``dbname='...'``
    conninfo names the database and nothing else (host, port and user come from the environment)."""
    return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


_CREATE_ROLE = re.compile(rb'^CREATE ROLE ("(?:[^"]|"")+"|[^\s;"]+);\s*$')
_ALTER_ROLE_WITH = re.compile(rb'^ALTER ROLE ("(?:[^"]|"")+"|[^\s;"]+) WITH ')
_CREATE_TABLESPACE = re.compile(rb'^CREATE TABLESPACE ("(?:[^"]|"")+"|[^\s;"]+) ')
_CREATE_DATABASE = re.compile(rb'^CREATE DATABASE ("(?:[^"]|"")+"|[^\s;"]+)[ ;]')


def _ident(raw: bytes) -> str:
    """The name a (possibly quoted) SQL identifier from pg_dumpall stands for."""
    text = raw.decode()
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


class PgGlobalsFilter(LineFilter):
    """Makes pg_dumpall output (``--globals-only``, or a whole-server script) restorable into a live server.

    A role or tablespace that already exists is kept as it is: its ``CREATE`` and its ``ALTER ROLE ...
    WITH`` line (attributes and password) are commented out, so the running server's logins keep
    working; memberships, settings and grants from the backup are applied. With *drop_databases*
    (``--force``) each ``CREATE DATABASE`` of a database that exists is preceded by ``DROP DATABASE
    ... WITH (FORCE)``; without it such a database stops the restore (psql's error names it).
    """

    def __init__(self, roles: set[str], tablespaces: set[str], databases: set[str], *, drop_databases: bool) -> None:
        super().__init__()
        self.roles, self.tablespaces, self.databases = roles, tablespaces, databases
        self.drop_databases = drop_databases
        self.dropped: list[str] = []

    def line(self, line: bytes) -> bytes:
        if m := _CREATE_ROLE.match(line):
            if _ident(m.group(1)) in self.roles:
                self.kept.append("role " + _ident(m.group(1)))
                return b"-- dbstash: role exists, kept as it is: " + line
        elif (m := _ALTER_ROLE_WITH.match(line)) and _ident(m.group(1)) in self.roles:
            return b"-- dbstash: attributes of an existing role kept\n"  # the line holds its password hash
        elif (m := _CREATE_TABLESPACE.match(line)) and _ident(m.group(1)) in self.tablespaces:
            self.kept.append("tablespace " + _ident(m.group(1)))
            return b"-- dbstash: tablespace exists, kept as it is: " + line
        elif (m := _CREATE_DATABASE.match(line)) and self.drop_databases and _ident(m.group(1)) in self.databases:
            self.dropped.append(_ident(m.group(1)))
            return b"DROP DATABASE IF EXISTS " + m.group(1) + b" WITH (FORCE);\n" + line
        return line


_USER_RELATIONS = (
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
)


#: Anything a restore could collide with or a user could lose: relations, functions and procedures,
#: types (enums, domains), extensions, and schemas other than public. Constant SQL (no input in it).
_EMPTY_PROBE = """
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%')
     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%')
     + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
          AND t.typrelid = 0 AND t.typelem = 0)
     + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
     + (SELECT count(*) FROM pg_namespace
        WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND nspname NOT LIKE 'pg\\_%');
"""


def _tool_version(path: str) -> tuple[int, str] | None:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False, env=child_base_env()
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = _VERSION.search(out)
    if not m:
        return None
    return int(m.group(1)), out.strip()
