"""Many databases per job: which databases a job backs up (``DB_NAME`` list or ``all``, ``DB_EXCLUDE``)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from dbstash.errors import ConfigError

#: The ``{db}`` of a job's globals object (roles, users, grants): one series per job, beside the databases.
GLOBALS_LABEL = "_globals"
#: ``DB_ALL_MODE``: one object per database (default), or the tool's single whole-server stream.
ALL_MODES = ("separate", "single")


@dataclass(frozen=True, slots=True)
class DatabaseSelection:
    """The databases of a multi-database job, resolved against the server at the start of each run.

    Attributes:
        every: ``DB_NAME=all``: every database on the server, minus the engine's system databases
            and *exclude*.
        names: databases named explicitly (with *every*: system databases to add, e.g. ``all,postgres``).
        exclude: names or shell globs (``DB_EXCLUDE=test_*,scratch``) left out of *every*.
        include_globals: also back up the server's roles/users/grants as one object (``DB_GLOBALS``).
        parallel: how many databases are dumped at once (``DB_PARALLEL``); each holds one connection.

    Examples:
        >>> s = DatabaseSelection(every=True, exclude=("test_*",))
        >>> s.resolve(["app", "billing", "postgres", "template1", "test_x"], system=("postgres", "template1"))
        ['app', 'billing']
    """

    every: bool = True
    names: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    include_globals: bool = False
    parallel: int = 1

    def excluded(self, name: str, system: Sequence[str] = ()) -> bool:
        """Whether *name* is left out: excluded explicitly, or a system database not named."""
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude):
            return True
        return name in system and name not in self.names

    def resolve(self, available: Sequence[str], *, system: Sequence[str] = ()) -> list[str]:
        """The databases to back up, sorted: named ones in any case (a missing one then fails its own
        run), and with *every* each available database that is not excluded."""
        chosen = set(self.names)
        if self.every:
            chosen |= {name for name in available if not self.excluded(name, system)}
        return sorted(chosen)

    def describe(self) -> str:
        """For logs and dry runs: ``all except template1, postgres, test_*`` or ``app, billing``."""
        if not self.every:
            return ", ".join(self.names)
        extra = f" plus {', '.join(self.names)}" if self.names else ""
        return "every database" + extra + (f" except {', '.join(self.exclude)}" if self.exclude else "")


def parse_selection(
    value: str,
    *,
    exclude: str | Sequence[str] = (),
    include_globals: bool,
    parallel: int = 1,
    variable: str = "DB_NAME",
    exclude_variable: str = "DB_EXCLUDE",
) -> DatabaseSelection:
    """``app,billing`` / ``all`` / ``all,postgres`` plus exclusions into a selection (errors name the variable)."""
    items = [v.strip() for v in value.split(",")]
    every = any(v.lower() == "all" for v in items) or not value.strip()
    names = tuple(dict.fromkeys(v for v in items if v and v.lower() != "all"))
    if not every and not names:
        raise ConfigError(variable, "a database name, a comma-separated list of names, or all", value)
    for name in names:
        if _unusable(name):
            raise ConfigError(variable, f"database names usable in file names (not {GLOBALS_LABEL})", name)
    patterns = _patterns(exclude)
    clash = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if clash:
        raise ConfigError(exclude_variable, f"patterns that leave out none of the databases {variable} names", clash[0])
    if every and not names and not include_globals and "*" in patterns:
        raise ConfigError(
            exclude_variable,
            f"patterns that leave a database to back up (or {variable} names one, or DB_GLOBALS=true)",
            "*",
        )
    if parallel < 1:
        raise ConfigError("DB_PARALLEL", "a whole number of databases dumped at once, 1 or more", str(parallel))
    return DatabaseSelection(
        every=every, names=names, exclude=patterns, include_globals=include_globals, parallel=parallel
    )


def _unusable(name: str) -> bool:
    return "/" in name or "\\" in name or name in (".", "..") or name == GLOBALS_LABEL


def _patterns(exclude: str | Sequence[str]) -> tuple[str, ...]:
    """``DB_EXCLUDE``: names or globs separated by commas or spaces (or a list)."""
    if not isinstance(exclude, str):
        return tuple(exclude)
    return tuple(p.strip() for p in exclude.replace(" ", ",").split(",") if p.strip())
