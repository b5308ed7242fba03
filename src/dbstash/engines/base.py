"""The Engine seam: what dbstash knows about one kind of database, and the values engines hand back.

(Over 400 lines on purpose: the Engine seam and the values engines hand back, read together.)
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import anyio

from dbstash.errors import ConfigError, RestoreError, ToolNotFound
from dbstash.parts.process import ChildProcess, child_base_env
from dbstash.redact import GLOBAL_REDACTOR, redact_uri


def check_ports(connection: Connection, variable: str) -> None:
    """Raise [`ConfigError`][dbstash.ConfigError] naming *variable* unless every port of *connection* is 1-65535."""
    for port in (connection.port or "").split(","):
        if port and not ((port.isascii() and port.isdigit()) and 1 <= int(port) <= 65535):
            raise ConfigError(
                variable, "a URI whose port is a TCP port number from 1 to 65535", connection.display_uri()
            )


@dataclass(frozen=True, slots=True)
class Connection:
    """Where a database is and how to log in, parsed once from a URI or from ``DB_*`` parts.

    ``password`` never shows in ``repr``; `display_uri()` is safe to log.
    """

    engine: str
    database: str | None
    host: str | None = None
    port: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    params: Mapping[str, str] = field(default_factory=dict)

    def server(self) -> Connection:
        """A copy naming no database: the server itself (listing databases, globals, creating one)."""
        return Connection(self.engine, None, self.host, self.port, self.user, self.password, self.params)

    def with_password(self, password: str | None) -> Connection:
        """A copy with *password* set (used for ``DB_PASSWORD_FILE`` / ``password_file=``)."""
        return Connection(self.engine, self.database, self.host, self.port, self.user, password, self.params)

    def display_uri(self) -> str:
        """A URI for humans and logs: never contains the password."""
        auth = ""
        if self.user:
            auth = self.user + (":***" if self.password else "") + "@"
        elif self.password:
            auth = ":***@"
        hostport = self.host or ""
        if self.port:
            hostport += f":{self.port}"
        query = "&".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        db = self.database or ""
        if self.engine == "sqlite":
            return f"sqlite://{db}"
        return redact_uri(f"{self.engine}://{auth}{hostport}/{db}" + (f"?{query}" if query else ""))


@dataclass(frozen=True, slots=True)
class DumpOptions:
    """How to dump: the spec's ``BACKUP_COMPRESS`` and ``DUMP_EXTRA_ARGS``.

    *archive*: one database of a multi-database job; engines whose tool has a self-describing
    archive format use it (PostgreSQL's custom format keeps the database's own properties, so it
    restores as itself or into another name).
    """

    compress: bool = False
    extra_args: tuple[str, ...] = ()
    archive: bool = False


#: How an argv element refers to a secret file: ``--defaults-extra-file={secret:client.cnf}``.
_SECRET_REF = re.compile(r"\{secret:([A-Za-z0-9_.-]+)\}")


@dataclass(frozen=True, slots=True)
class DumpCommand:
    """A ready-to-run dump: argv (never a secret in it) and the extra environment (which may hold one).

    Tools that only take a password from a file (mysqldump's ``--defaults-extra-file``, mongodump's
    ``--config``) get it through *secret_files*: argv says ``{secret:NAME}`` and `materialize()`
    turns each into an anonymous in-memory file (``memfd``, mode 0600) passed to the child as
    ``/dev/fd/N``. The secret never touches the disk, argv or a path another process could open.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    tool_version: str | None = None
    secret_files: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    def display(self) -> str:
        """The command line as a shell would show it (safe: argv never holds secrets)."""
        return shlex.join(self.argv)

    def start(
        self,
        redact: Callable[[str], str],
        *,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.DEVNULL,
    ) -> ChildProcess:
        """Run this command as a child: scrubbed environment plus `env`, secret files as memfds
        (closed in dbstash once the child has them), stderr drained into a redacted tail."""
        with self.materialize() as (argv, pass_fds):
            return ChildProcess(
                argv,
                env={**child_base_env(), **self.resolved_env(pass_fds)},
                name=os.path.basename(self.argv[0]),
                redact=redact,
                stdin=stdin,
                stdout=stdout,
                pass_fds=pass_fds,
            )

    def resolved_env(self, pass_fds: tuple[int, ...]) -> dict[str, str]:
        """`env` with ``{secret:NAME}`` in values replaced as in argv (``PGPASSFILE={secret:pgpass}``).

        *pass_fds* is what `materialize()` gave, in the order of `secret_files`.
        """
        fds = dict(zip(self.secret_files, pass_fds, strict=True))
        return {k: _SECRET_REF.sub(lambda m: f"/dev/fd/{fds[m.group(1)]}", v) for k, v in self.env.items()}

    @contextlib.contextmanager
    def materialize(self) -> Iterator[tuple[list[str], tuple[int, ...]]]:
        """(argv with ``/dev/fd/N`` for each secret file, the fds to pass). The fds close when the block ends."""
        fds: dict[str, int] = {}
        try:
            for name, content in self.secret_files.items():
                fd = os.memfd_create(f"dbstash-{name}", os.MFD_CLOEXEC)  # pass_fds opens it to the dump only
                os.fchmod(fd, 0o600)  # tools ignore world-writable option files (memfds start 0777)
                os.write(fd, content)
                os.lseek(fd, 0, os.SEEK_SET)
                fds[name] = fd

            def sub(m: re.Match[str]) -> str:
                if m.group(1) not in fds:
                    raise KeyError(f"argv refers to an unknown secret file {m.group(1)!r}")
                return f"/dev/fd/{fds[m.group(1)]}"

            yield [_SECRET_REF.sub(sub, a) for a in self.argv], tuple(fds.values())
        finally:
            for fd in fds.values():
                os.close(fd)


@dataclass(frozen=True, slots=True)
class RestoreOptions:
    """How to restore: overwrite allowed, and what the backup holds (from its manifest)."""

    force: bool = False
    #: the database the backup was taken from (None when unknown or every database)
    source_database: str | None = None
    all_databases: bool = False
    #: the stored data is the tool's own gzip (mongodump --gzip: ``.archive.gz``, or ``*.bson.gz`` files)
    native_gzip: bool = False
    #: ``RESTORE_EXTRA_ARGS``: flags appended to the restore tool's command (``--noIndexRestore``)
    extra_args: tuple[str, ...] = ()
    #: recreate the database as it was backed up (a database of a multi-database job restored as
    #: itself: pg_restore --create, CREATE DATABASE for MySQL); with *force* an existing one is dropped first
    create: bool = False
    #: the backup is a job's globals (roles, users, grants, tablespaces), not a database
    globals_only: bool = False


def path_arg(path: str) -> str:
    """*path* as a positional argv word that no tool can take for an option (``-x`` becomes ``./-x``)."""
    return "./" + path if path.startswith("-") else path


#: ``DB_NAME`` values (and URI paths) that mean "every database" (spec: the --all-databases equivalent).
ALL_DATABASES = ("", "all")


def one_database(name: str | None) -> str | None:
    """*name*, or None when it asks for every database (empty or ``all``)."""
    return None if name is None or name.strip().lower() in ALL_DATABASES else name


class LineFilter:
    """Rewrites a plain-SQL restore stream line by line (a line never spans two calls).

    *kept*: what already existed on the target and was kept as it is (reported after the restore).
    """

    def __init__(self) -> None:
        self.kept: list[str] = []
        self._rest = b""

    def line(self, line: bytes) -> bytes:
        """One whole line (with its newline); returns what the tool gets instead."""
        return line

    def __call__(self, data: bytes) -> bytes:
        data = self._rest + data
        cut = data.rfind(b"\n") + 1
        self._rest = data[cut:]
        if not cut:
            return b""
        return b"".join(self.line(ln) for ln in data[:cut].splitlines(keepends=True))

    def flush(self) -> bytes:
        """The last line, if the stream did not end with a newline."""
        rest, self._rest = self._rest, b""
        return self.line(rest) if rest else b""


class Engine(ABC):
    """Pure knowledge about one database engine. Subclasses live one per module under ``dbstash.engines``.

    The pipeline only calls the methods below, so adding an engine never touches the pipeline.
    """

    key: ClassVar[str]
    schemes: ClassVar[tuple[str, ...]]
    default_port: ClassVar[int | None] = None
    #: Flags that make the tool write files instead of stdout in stream mode (spec: conflict detection).
    stream_conflicting_flags: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def parse_uri(self, uri: str, *, variable: str = "DB_URI") -> Connection:
        """Parse a connection URI; raise [`ConfigError`][dbstash.ConfigError] naming *variable* if malformed."""

    def from_parts(
        self,
        *,
        host: str | None,
        port: str | None,
        database: str | None,
        user: str | None,
        password: str | None,
    ) -> Connection:
        """Build a connection from the spec's ``DB_*`` variables (``DB_NAME`` empty or ``all``: every database)."""
        if not host:
            raise ConfigError("DB_HOST", "a host name or address (or set DB_URI instead)", host)
        if port is not None and not ((port.isascii() and port.isdigit()) and 1 <= int(port) <= 65535):
            raise ConfigError("DB_PORT", "a TCP port number from 1 to 65535", port)
        return Connection(self.key, one_database(database), host, port, user or None, password or None)

    @abstractmethod
    def extension(self, options: DumpOptions, connection: Connection | None = None) -> str:
        """The automatic file extension for these options (e.g. ``.sql``, ``.dump``) and connection."""

    @abstractmethod
    async def dump_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        """The command that writes a dump to stdout. May probe tools and the server (e.g. versions).

        Raises [`DumpFailed`][dbstash.DumpFailed] if the server cannot be reached for a probe,
        [`ToolNotFound`][dbstash.ToolNotFound] if no usable tool is installed.
        """

    def preview_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        """The dump command as a dry run shows it: built without contacting the server or reading files."""
        raise NotImplementedError

    def stream_conflicts(self, extra_args: Sequence[str]) -> list[str]:
        """The flags in *extra_args* that would make the tool write to disk instead of stdout."""
        found = []
        for arg in extra_args:
            for flag in self.stream_conflicting_flags:
                if (flag.endswith("=") and arg.startswith(flag)) or arg == flag.rstrip("="):
                    found.append(arg)
                    break
        return found

    def native_compression(self, connection: Connection | None = None) -> bool:
        """Whether ``BACKUP_COMPRESS=true`` changes anything for this engine (and this connection)."""
        return False

    def check_output_tail(self, tail: bytes, command: DumpCommand) -> str | None:
        """Inspect the last bytes of a dump whose tool exited 0; return why it is incomplete, or None.

        Some tools (the sqlite3 shell) report errors inside the dump and still exit 0.
        """
        return None

    def database_label(self, connection: Connection) -> str:
        """The value of the ``{db}`` template token."""
        return connection.database or "all"

    # -- many databases per job ------------------------------------------------------------------
    #: The engine can list a server's databases and dump them one by one (``DB_NAME=all`` or a list).
    lists_databases: ClassVar[bool] = False
    #: Databases ``DB_NAME=all`` leaves out unless named (templates, the server's own catalogues).
    system_databases: ClassVar[tuple[str, ...]] = ()
    #: Databases that can never be dumped (PostgreSQL's template0 refuses connections): never listed.
    hidden_databases: ClassVar[tuple[str, ...]] = ()

    async def list_databases(self, connection: Connection) -> list[str]:
        """Every database on *connection*'s server (system ones included), sorted.

        Raises [`RestoreError`][dbstash.RestoreError] (a client tool failed) or
        [`ToolNotFound`][dbstash.ToolNotFound].
        """
        raise ToolNotFound(f"{self.key} cannot list databases")

    def for_database(self, connection: Connection, name: str) -> Connection:
        """*connection* (a server-level one) narrowed to the database *name*."""
        c = connection
        return Connection(c.engine, name, c.host, c.port, c.user, c.password, c.params)

    def globals_supported(self) -> str | None:
        """None when the engine can dump the server's globals (roles, users, grants); else why not."""
        return f"{self.key} has no globals dump in dbstash"

    async def globals_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        """The command that writes the server's globals (roles, users, grants, tablespaces) to stdout."""
        raise ToolNotFound(self.globals_supported() or f"{self.key} has no globals dump")

    def preview_globals_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        """The globals command as a dry run shows it (no server contact)."""
        raise ToolNotFound(self.globals_supported() or f"{self.key} has no globals dump")

    async def restore_filter(self, target: Connection, options: RestoreOptions) -> LineFilter | None:
        """A filter over the restored script's lines (plain SQL), or None. Engines use it so that a
        restore into a live server keeps what already exists (roles, users) instead of failing on it."""
        return None

    # -- directory and tar modes --------------------------------------------------------------------
    #: The spec's mode matrix: which ``BACKUP_MODE`` values this engine supports.
    modes: ClassVar[tuple[str, ...]] = ("stream",)

    #: The dump tool writes one stream that dbstash splits into files itself (MySQL: one file per table).
    splits_stream: ClassVar[bool] = False
    #: The tool's native compression is gzip inside its files (mongodump ``--gzip``: ``*.bson.gz``).
    gzips_natively: ClassVar[bool] = False
    #: What a backup of this engine holds that its URI may suggest otherwise, logged at each backup's start.
    backup_note: ClassVar[str | None] = None

    def split_stream(self, src_fd: int, outdir: str) -> None:
        """Split the one-stream dump read from *src_fd* into files in *outdir* (engines with `splits_stream`)."""
        raise NotImplementedError(f"{self.key} does not split its dump stream")

    def with_auth_source(self, connection: Connection, auth_source: str | None) -> Connection:
        """*connection* logging in against the database *auth_source* (``DB_AUTH_SOURCE``, or a job's
        own ``authSource`` for a restore target that has none); engines without one ignore it."""
        return connection

    def supported_modes(self, connection: Connection) -> tuple[str, ...]:
        """The modes this engine supports for *connection*."""
        return self.modes

    async def files_command(self, connection: Connection, options: DumpOptions, outdir: str) -> DumpCommand:
        """The command that writes a multi-file dump into the existing empty folder *outdir*."""
        raise ToolNotFound(f"{self.key} has no multi-file dump")

    # -- restore ------------------------------------------------------------------------------------
    #: The target is a file (SQLite, Redis): restored into a temp file beside it, renamed when verified.
    restores_to_file: ClassVar[bool] = False
    #: The suffix of the scratch file a drill restores into (engines that `restores_to_file`).
    scratch_suffix: ClassVar[str] = ".db"

    def atomic_restore(self, options: RestoreOptions) -> bool:
        """Whether a restore stopped before the end of its input leaves the target as it was (one
        transaction rolled back, or a temp file thrown away). When it does not, restore proves the
        stored bytes against the manifest in a first pass before the tool sees any of them."""
        return self.restores_to_file

    def stopped_restore_note(self, options: RestoreOptions) -> str:
        """Said plainly when a checksum mismatch stopped a restore before the end of its input."""
        return "the restore tool may already have applied part of the data."

    def restore_command(self, target: Connection, head: bytes, options: RestoreOptions) -> DumpCommand | None:
        """The command that restores a dump read from stdin into *target*; *head*: the dump's first bytes.

        None means the stream itself is the restored file (written to ``target.database``).
        """
        raise ToolNotFound(f"restoring {self.key} backups is not supported")

    def restore_files_command(self, target: Connection, folder: str, options: RestoreOptions) -> DumpCommand:
        """The command that restores a directory/tar-mode dump unpacked in *folder* into *target*."""
        raise ToolNotFound(f"restoring {self.key} directory backups is not supported")

    async def is_empty(self, target: Connection) -> bool | None:
        """Whether *target* holds no data (None: cannot tell)."""
        return None

    async def estimate_size(self, connection: Connection) -> int | None:
        """Roughly how many bytes a dump of *connection* holds (None: cannot tell). Asked only when an
        object store needs a chunk size and the job has no earlier backup to go by."""
        return None

    async def database_exists(self, target: Connection) -> bool | None:
        """Whether *target*'s database exists on its server (None: cannot tell, or created on first write)."""
        return None

    async def prepare_restore(self, target: Connection, options: RestoreOptions) -> None:  # noqa: B027 - optional
        """Run before the restore tool: e.g. drop the database to recreate (``create`` with ``force``)."""

    async def table_counts(self, target: Connection) -> dict[str, int]:
        """Rows per table (collection, keyspace) in *target*, for ``verify``."""
        return {}

    async def clear(self, target: Connection) -> None:  # noqa: B027 - optional: engines without one keep data
        """Drop everything in the scratch *target* after ``verify``."""


def tool_version(path: str) -> str | None:
    """The first line of ``PATH --version`` (``None`` if it cannot say): recorded with each backup."""
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False, env=child_base_env()
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else None


async def run_tool(
    command: DumpCommand, *, stdin: bytes | None = None, stdin_paths: Sequence[str] = (), timeout: float = 300.0
) -> str:
    """Run a client command (secret files and environment as for a dump) and return its stdout.

    *stdin_paths*: files streamed, in order, to its stdin (never read whole into memory).
    Used by restore and verify (the restore tool, emptiness checks, row counts, clean-up), so it
    raises [`RestoreError`][dbstash.RestoreError] with the redacted stderr if it fails or times out.
    """
    name = os.path.basename(command.argv[0])
    try:
        with command.materialize() as (argv, fds), anyio.fail_after(timeout):
            env = {**child_base_env(), **command.resolved_env(fds)}
            if not stdin_paths:
                proc = await anyio.run_process(argv, input=stdin, env=env, check=False, pass_fds=fds)
                code, out, err_bytes = proc.returncode, proc.stdout, proc.stderr
            else:
                code, out, err_bytes = await _feed_files(argv, env, fds, stdin_paths)
    except TimeoutError:
        raise RestoreError(f"{name} did not finish within {timeout:.0f}s") from None
    except OSError as exc:
        raise ToolNotFound(f"cannot run {name}: {exc.strerror}") from None
    if code != 0:
        err = GLOBAL_REDACTOR(err_bytes.decode(errors="replace").strip())
        raise RestoreError(f"{name} exited with status {code}", stderr_tail=err)
    return str(out.decode(errors="replace"))


async def _feed_files(
    argv: Sequence[str], env: Mapping[str, str], fds: Sequence[int], paths: Sequence[str]
) -> tuple[int, bytes, bytes]:
    """Run *argv* with the files of *paths* streamed to its stdin; (status, stdout, stderr)."""
    async with await anyio.open_process(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        pass_fds=fds,
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        out, err = bytearray(), bytearray()

        async def drain(stream: anyio.abc.ByteReceiveStream, into: bytearray) -> None:
            async for chunk in stream:
                into.extend(chunk)

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, proc.stdout, out)
            tg.start_soon(drain, proc.stderr, err)
            try:
                for path in paths:
                    with open(path, "rb") as fh:
                        while chunk := fh.read(1 << 20):
                            await proc.stdin.send(chunk)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, BrokenPipeError):
                pass  # the tool stopped reading: its exit status says why
            await proc.stdin.aclose()
        code = await proc.wait()
    return code, bytes(out), bytes(err)
