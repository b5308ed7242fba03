"""The Engine seam: what dbstash knows about one kind of database, and the values engines hand back."""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from dbstash.errors import ConfigError
from dbstash.redact import redact_uri


@dataclass(frozen=True, slots=True)
class Connection:
    """Where a database is and how to log in, parsed once from a URI or from ``DB_*`` parts.

    ``password`` never shows in ``repr``; :meth:`display_uri` is safe to log.
    """

    engine: str
    database: str | None
    host: str | None = None
    port: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    params: Mapping[str, str] = field(default_factory=dict)

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
    """How to dump: the spec's ``BACKUP_COMPRESS`` and ``DUMP_EXTRA_ARGS``."""

    compress: bool = False
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DumpCommand:
    """A ready-to-run dump: argv (never a secret in it) and the extra environment (which may hold one)."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    tool_version: str | None = None

    def display(self) -> str:
        """The command line as a shell would show it (safe: argv never holds secrets)."""
        return shlex.join(self.argv)


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
        """Parse a connection URI; raise :class:`ConfigError` naming *variable* if malformed."""

    def from_parts(
        self,
        *,
        host: str | None,
        port: str | None,
        database: str | None,
        user: str | None,
        password: str | None,
    ) -> Connection:
        """Build a connection from the spec's individual ``DB_*`` variables."""
        if not host:
            raise ConfigError("DB_HOST", "a host name or address (or set DB_URI instead)", host)
        if port is not None and not port.isdigit():
            raise ConfigError("DB_PORT", "a TCP port number", port)
        return Connection(self.key, database or None, host, port, user or None, password or None)

    @abstractmethod
    def extension(self, options: DumpOptions) -> str:
        """The automatic file extension for these options (e.g. ``.sql``, ``.dump``)."""

    @abstractmethod
    async def dump_command(self, connection: Connection, options: DumpOptions) -> DumpCommand:
        """The command that writes a dump to stdout. May probe tools and the server (e.g. versions).

        Raises :class:`~dbstash.errors.DumpFailed` if the server cannot be reached for a probe,
        :class:`~dbstash.errors.ToolNotFound` if no usable tool is installed.
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

    def native_compression(self) -> bool:
        """Whether ``BACKUP_COMPRESS=true`` changes anything for this engine."""
        return False

    def check_output_tail(self, tail: bytes) -> str | None:
        """Inspect the last bytes of a dump whose tool exited 0; return why it is incomplete, or None.

        Some tools (the sqlite3 shell) report errors inside the dump and still exit 0.
        """
        return None

    def database_label(self, connection: Connection) -> str:
        """The value of the ``{db}`` template token."""
        return connection.database or "all"
